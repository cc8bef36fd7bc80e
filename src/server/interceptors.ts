import { Code, createContextKey, type ConnectError, type ContextValues, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { callerKey, type CallScopes, type MemberScope } from "./call-scope.js";
import { toConnectError } from "./errors.js";
import type { FastPathHooks } from "./grpc-h2/raw-grpc-call.js";
import type { ServerMetrics } from "./metrics.js";
import { startRpcSpan, type StageSpan } from "../core/tracing.js";

/**
 * The cross-cutting rules of every call: authentication and the per-call log line. connect-node
 * runs them as interceptors; the gRPC fast path (grpc-h2/) calls `authenticateCall` and `logCall`
 * from its hooks, so both paths keep one copy.
 */

/** Which implementation served a call: connect-node's handlers or the node:http2 fast path. */
export type ServedBy = "connect" | "grpc-h2";

/** Methods anyone may call without a token. */
const PUBLIC_METHODS = new Set([
  "handshake.v1.RoomService/JoinRoom",
  "grpc.health.v1.Health/Check",
  "grpc.health.v1.Health/Watch",
  "grpc.health.v1.Health/List",
  "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
  "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
]);

/** Authenticates a call of `method` (`Service/Method`) unless it is public; stores the caller in `values`. */
export async function authenticateCall(scopes: CallScopes, method: string, values: ContextValues, authorization: string | null | undefined): Promise<void> {
  if (PUBLIC_METHODS.has(method)) return;
  await scopes.authenticate(values, authorization);
}

/** What one served call's log line says. */
export interface CallRecord {
  path: ServedBy;
  /** `Service/Method`. */
  method: string;
  /** The call's context values (the caller, once authenticated). */
  values: ContextValues;
  /** How the call ended; undefined for OK. */
  status: ConnectError | undefined;
  durationMs: number;
  /** Ended by the client (cancel, reset) rather than by the server. */
  aborted: boolean;
}

/**
 * Calls a talking browser makes about 16 times a second: their OK lines go at debug (the metrics
 * still count each), a failed one at info like any other call.
 */
const FREQUENT_METHODS = new Set(["handshake.v1.RoomService/SendAudio"]);

/** The one log line per call: path, method, code, duration, user and room; never the payload. */
export function logCall(log: Logger, call: CallRecord): void {
  const level = call.status === undefined && FREQUENT_METHODS.has(call.method) ? "debug" : "info";
  if (!log.isLevelEnabled(level)) return;
  const caller = call.values.get(callerKey);
  log[level](
    {
      path: call.path,
      method: call.method,
      code: call.status ? Code[call.status.code] : "OK",
      durationMs: Math.round(call.durationMs),
      ...(caller ? { userId: caller.userId, ...(caller.kind === "session" ? { roomId: caller.roomId } : {}) } : {}),
      ...(call.aborted ? { aborted: true } : {}),
    },
    "rpc",
  );
}

/** Records a served call in the metrics (when on) beside its log line: the same record, both paths. */
function observeCall(metrics: ServerMetrics | undefined, call: CallRecord): void {
  metrics?.callEnded(call.path, call.method, call.status ? Code[call.status.code] : "OK", call.durationMs);
}

/** Ends a call's span with its gRPC status code; a failure is marked with the code's name only. */
function endRpcSpan(span: StageSpan, status: ConnectError | undefined): void {
  span.set({ "rpc.grpc.status_code": status?.code ?? 0 });
  span.end(status ? { name: Code[status.code] } : undefined);
}

/** Verifies `authorization: Bearer …` on every non-public method and stores the caller. */
export function createAuthInterceptor(scopes: CallScopes): Interceptor {
  return (next) => async (req) => {
    await authenticateCall(scopes, `${req.service.typeName}/${req.method.name}`, req.contextValues, req.header.get("authorization"));
    return next(req);
  };
}

/**
 * One log line per RPC served by connect-node, and domain errors mapped to codes (errors.ts);
 * with `metrics`, the same call counted and timed, and its stream counted while open.
 */
export function createLoggingInterceptor(log: Logger, metrics?: ServerMetrics): Interceptor {
  return (next) => (req) => {
    const method = `${req.service.typeName}/${req.method.name}`;
    // The call's span is active through its handler, so the stages it feeds can link to it and its log line names its trace.
    const span = startRpcSpan(method, "connect", (name) => req.header.get(name));
    return span.run(async () => {
      const started = performance.now();
      const closeStream = metrics && req.method.methodKind !== "unary" ? metrics.streamOpened("connect", method) : undefined;
      const done = (err: unknown): ConnectError | undefined => {
        closeStream?.();
        const status = err === undefined ? undefined : toConnectError(err, log);
        const aborted = req.signal.aborted && status?.code === Code.Canceled;
        const call: CallRecord = { path: "connect", method, values: req.contextValues, status, durationMs: performance.now() - started, aborted };
        logCall(log, call);
        observeCall(metrics, call);
        endRpcSpan(span, status);
        return status;
      };
      let res;
      try {
        res = await next(req);
      } catch (err) {
        throw done(err);
      }
      if (!res.stream) {
        done(undefined);
        return res;
      }
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          // connect-node reads the stream outside the call's context: its end is logged inside it again.
          try {
            yield* messages;
          } catch (err) {
            throw span.run(() => done(err));
          } finally {
            // A response that connect-node stops reading (return(), not throw) still closes its stream.
            closeStream?.();
          }
          span.run(() => done(undefined));
        })(),
      };
    });
  };
}

/** Marks a fast-path call whose stream the metrics counted as open (authorized), so its end closes it. */
const openStreamKey = createContextKey<(() => void) | undefined>(undefined, { description: "metrics stream slot" });
/** A fast-path call's span, from its authorization to its end. */
const rpcSpanKey = createContextKey<StageSpan | undefined>(undefined, { description: "rpc span" });

/**
 * The fast path's counterpart of the interceptors above, for room streams: the same
 * authentication, then the caller's member scope (call-scope.ts), the same error mapping and the
 * same log line, marked `path: "grpc-h2"`.
 */
export function createFastPathHooks(log: Logger, scopes: CallScopes, metrics?: ServerMetrics): FastPathHooks<MemberScope> {
  return {
    async authorize({ method, headers, values }) {
      values.set(rpcSpanKey, startRpcSpan(method, "grpc-h2", (name) => {
        const value = headers[name];
        return Array.isArray(value) ? value[0] : value;
      }));
      // Counted from here: a call refused before it (bad encoding, shutdown) never held a stream.
      if (metrics) values.set(openStreamKey, metrics.streamOpened("grpc-h2", method));
      await authenticateCall(scopes, method, values, headers.authorization);
      return scopes.placedMember(values);
    },
    toStatus: (err) => toConnectError(err, log),
    within: (values, work) => {
      const span = values.get(rpcSpanKey);
      return span ? span.run(work) : work();
    },
    ended: (end) => {
      end.values.get(openStreamKey)?.();
      const call: CallRecord = { path: "grpc-h2", ...end };
      const span = end.values.get(rpcSpanKey);
      if (span) {
        span.run(() => logCall(log, call));
        endRpcSpan(span, call.status);
      } else logCall(log, call);
      observeCall(metrics, call);
    },
  };
}
