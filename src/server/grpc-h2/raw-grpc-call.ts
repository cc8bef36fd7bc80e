import http2 from "node:http2";
import zlib from "node:zlib";
import { fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type ContextValues } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { encodeGrpcMessage, GrpcMessageReader } from "./wire.js";

/**
 * The part of a native gRPC call served straight on `node:http2` (the fast paths, see
 * routing.ts) that is the same for every method: compression and deadline headers, splitting the
 * request body into gRPC messages, the status trailers, cancellation, shutdown. Who may call, how
 * errors become statuses and what is logged are hooks (`FastPathOptions`), so this file knows no
 * room, token or user; the server fills them from call-scope.ts and interceptors.ts, the same
 * rules connect-node's interceptors apply. Clients cannot tell it from the connect-node handlers.
 */

/** Request encodings understood (as connect-node's defaults); responses are never compressed. */
export const ACCEPT_ENCODING = "gzip,br";
const TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
/** Largest delay setTimeout takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** After a call has ended, how long a peer that neither reads nor closes keeps its stream. */
const LINGER_MS = 10_000;

/** A call as its authorize hook sees it: before any message is read. */
export interface RawCallStart {
  /** `Service/Method`. */
  method: string;
  headers: http2.IncomingHttpHeaders;
  /** The call's context values, for the hooks to keep what they learn (the caller). */
  values: ContextValues;
}

/** A call as the ended hook sees it, once, when it finished or was cancelled. */
export interface RawCallEnd {
  method: string;
  values: ContextValues;
  /** The status it ended with; undefined for OK. */
  status: ConnectError | undefined;
  durationMs: number;
  /** Cancelled or reset by the client before the server ended it. */
  aborted: boolean;
}

/** The transport rules a fast path applies to each call, given by the server. */
export interface FastPathHooks<Scope> {
  /** Decides whether the call may go on; what it returns is the call's scope. Throwing ends the call with that error's status. */
  authorize(call: RawCallStart): Promise<Scope>;
  /** Turns whatever a call failed with into its status. */
  toStatus(err: unknown): ConnectError;
  /** Told once per call when it ends (the log line). */
  ended(call: RawCallEnd): void;
  /**
   * Runs `work` as part of the call (its trace span active), for messages that may feed a deal
   * (transcripts, the format header); never per audio frame, which stays off the tracing path.
   */
  within?<T>(values: ContextValues, work: () => T): T;
}

/** What one fast path needs: the hooks, the message size limit and the server's shutdown signal. */
export interface FastPathOptions<Scope> extends FastPathHooks<Scope> {
  maxMessageBytes: number;
  /** Calls in progress end with UNAVAILABLE when it aborts; later calls are refused with it. */
  shutdownSignal: AbortSignal;
}

/** What every call of one fast path shares. */
export interface RawCallShared<Scope> extends FastPathOptions<Scope> {
  /** `Service/Method` of the one method served. */
  method: string;
  calls: Set<RawGrpcCall<Scope>>;
}

/** A method served on `node:http2` directly; one per server. */
export interface FastPath {
  /** Serves one call on its raw stream; `headers` must be a native gRPC call of the method (see routing.ts). */
  handle(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void;
}

/** Creates a fast path for `method` (`Service/Method`) whose calls `newCall` makes. */
export function createFastPath<Scope>(
  method: string,
  options: FastPathOptions<Scope>,
  newCall: (shared: RawCallShared<Scope>, stream: http2.ServerHttp2Stream) => RawGrpcCall<Scope>,
): FastPath {
  const shared: RawCallShared<Scope> = { ...options, method, calls: new Set() };
  const { shutdownSignal } = options;
  shutdownSignal.addEventListener(
    "abort",
    () => {
      const err = shutdownSignal.reason instanceof ConnectError ? shutdownSignal.reason : new ConnectError("server is shutting down", Code.Unavailable);
      for (const call of [...shared.calls]) call.fail(err);
    },
    { once: true },
  );
  return {
    handle(stream, headers) {
      const call = newCall(shared, stream);
      if (shutdownSignal.aborted) {
        call.fail(new ConnectError("server is shutting down", Code.Unavailable));
        return;
      }
      call.start(headers);
    },
  };
}

/**
 * One call, from its headers to its trailers; subclasses handle its messages. `scope` is what the
 * authorize hook returned; messages are read only after it did.
 */
export abstract class RawGrpcCall<Scope> {
  protected readonly stream: http2.ServerHttp2Stream;
  /** The call's context values, shared with the hooks. */
  protected readonly values: ContextValues = createContextValues();
  private readonly started = performance.now();
  protected finished = false;
  /** Set once the authorize hook returned (a box, so any Scope, even undefined, fits). */
  private authorized: { scope: Scope } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private decompress: ((body: Buffer) => Buffer) | undefined;
  private readonly reader: GrpcMessageReader;
  private linger: NodeJS.Timeout | undefined;
  /** Response headers are out (kept here rather than asking the stream on every frame). */
  private headersSent = false;
  /** The status trailers, sent when the stream asks for them ("wantTrailers"). */
  private trailers: http2.OutgoingHttpHeaders = OK_TRAILERS;
  private readonly onData = (chunk: Buffer) => this.receive(chunk);
  private readonly onEnd = () =>
    this.reader.pendingBytes > 0 ? this.finish(new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument)) : this.requestEnded();
  private readonly onClose = () => this.closed();

  constructor(
    protected readonly shared: RawCallShared<Scope>,
    stream: http2.ServerHttp2Stream,
  ) {
    this.stream = stream;
    const max = shared.maxMessageBytes;
    this.reader = new GrpcMessageReader(
      (buf, start, end, flags) => {
        this.message(buf, start, end, flags);
        return !this.finished;
      },
      max,
      (length) => tooLarge(length, max),
    );
    shared.calls.add(this);
    // Stream errors (a reset from the client) end in "close"; the server's dispatcher listens for them.
    this.stream.on("close", this.onClose);
  }

  /** One gRPC message of the request: its body at buf[start, end) and its flag byte. */
  protected abstract message(buf: Buffer, start: number, end: number, flags: number): void;
  /** The client ended its request side with every message whole. */
  protected abstract requestEnded(): void;
  /** Lets go of what the call holds; runs once, when it finishes or is cancelled. */
  protected abstract release(): void;

  /** The call is authorized and about to read its first message; what it throws ends the call (a limit, say). */
  protected opened(): void {}

  /** What the authorize hook returned; only read once messages flow. */
  protected get scope(): Scope {
    if (!this.authorized) throw new Error("the call is not authorized yet");
    return this.authorized.scope;
  }

  /** Reads the call's headers (not kept: a call can last as long as its room), authorizes it, then reads its messages. */
  start(headers: http2.IncomingHttpHeaders): void {
    const encoding = headers["grpc-encoding"];
    if (typeof encoding === "string" && encoding !== "identity") {
      // The encodings connect-node accepts, so clients see no difference.
      const max = this.shared.maxMessageBytes;
      if (encoding === "gzip") this.decompress = (b) => zlib.gunzipSync(b, { maxOutputLength: max });
      else if (encoding === "br") this.decompress = (b) => zlib.brotliDecompressSync(b, { maxOutputLength: max });
      else return this.fail(new ConnectError(`unknown compression "${encoding}": supported encodings are ${ACCEPT_ENCODING}`, Code.Unimplemented));
    }
    const timeout = headers["grpc-timeout"];
    if (typeof timeout === "string") {
      const match = TIMEOUT.exec(timeout);
      if (!match?.[1] || !match[2]) return this.fail(new ConnectError(`protocol error: invalid grpc timeout value: ${timeout}`, Code.InvalidArgument));
      const ms = Number(match[1]) * (TIMEOUT_UNIT_MS[match[2]] ?? 1);
      this.timer = setTimeout(() => this.fail(new ConnectError("the operation timed out", Code.DeadlineExceeded)), Math.min(ms, MAX_TIMER_MS));
    }
    void this.shared.authorize({ method: this.shared.method, headers, values: this.values }).then(
      (scope) => {
        if (this.finished) return;
        this.authorized = { scope };
        try {
          this.opened();
        } catch (err) {
          return this.fail(err);
        }
        // A request that already ended (no message at all) goes straight to its end.
        if (this.stream.readableEnded) return this.onEnd();
        this.stream.on("data", this.onData);
        this.stream.on("end", this.onEnd);
      },
      (err: unknown) => this.fail(err),
    );
  }

  /** Splits the request body into gRPC messages (wire.ts); an error ends the call with its status. */
  private receive(chunk: Buffer): void {
    try {
      this.reader.push(chunk);
    } catch (err) {
      this.fail(err);
    }
  }

  /** Decodes the message body at buf[start, end) whole, decompressing it if flagged, with connect-node's codes. */
  protected decode<Desc extends DescMessage>(schema: Desc, buf: Buffer, start: number, end: number, flags: number): MessageShape<Desc> {
    let body = buf.subarray(start, end);
    if ((flags & 1) === 1) {
      if (!this.decompress) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
      try {
        body = this.decompress(body);
      } catch (err) {
        if (err instanceof RangeError) throw tooLarge(Number.NaN, this.shared.maxMessageBytes);
        throw new ConnectError(`decompress: ${(err as Error).message}`, Code.InvalidArgument);
      }
    }
    try {
      return fromBinary(schema, body);
    } catch (err) {
      // The code and wording connect-node uses for a message that does not parse.
      throw new ConnectError(`parse binary: ${err instanceof Error ? err.message : String(err)}`, Code.Internal);
    }
  }

  /**
   * Writes one whole gRPC message to the client whatever the stream holds already (the caller
   * limits that with `queuedBytes`); returns false when the call is over.
   */
  write(bytes: Uint8Array): boolean {
    if (this.finished) return false;
    if (!this.headersSent) this.sendHeaders();
    this.stream.write(bytes);
    return true;
  }

  /**
   * Writes one whole gRPC message without a completion callback; returns false when the stream's
   * buffer is full (wait for "drain") or the call is over.
   */
  protected send(bytes: Uint8Array): boolean {
    if (this.finished) return false;
    if (!this.headersSent) this.sendHeaders();
    return this.stream.write(bytes);
  }

  /** Bytes waiting in this stream's write buffer. */
  get queuedBytes(): number {
    return this.stream.writableLength;
  }

  /** Ends the call with the status of `err` (OK when undefined). */
  fail(err: unknown): void {
    this.finish(err);
  }

  /** Resets the stream (RST_STREAM ENHANCE_YOUR_CALM), for a reader whose writes no longer drain. */
  protected reset(): void {
    if (!this.stream.destroyed) this.stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  private sendHeaders(): void {
    this.headersSent = true;
    if (this.stream.destroyed) return;
    // waitForTrailers: the stream stays open after end() until the status trailers are sent.
    this.stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    // Emitted once per stream; `on` spares the wrapper `once` would keep for the call's life.
    this.stream.on("wantTrailers", () => this.stream.sendTrailers(this.trailers));
  }

  /** Sends the trailers (status OK when `err` is undefined) and lets go of what the call holds. */
  protected finish(err: unknown): void {
    if (this.finished) return;
    this.finished = true;
    const mapped = err === undefined ? undefined : this.shared.toStatus(err);
    this.cleanup();
    this.report(mapped, false);
    if (this.stream.destroyed || this.stream.closed) return;
    // Stop reading, but keep draining what the client still sends until it sees our status.
    this.stream.off("data", this.onData);
    this.stream.off("end", this.onEnd);
    this.stream.resume();
    if (!this.headersSent) this.sendHeaders();
    if (mapped) this.trailers = { "grpc-status": String(mapped.code), "grpc-message": encodeGrpcMessage(mapped.rawMessage), ...statusDetails(mapped) };
    this.stream.end();
    // A client that neither reads what is queued nor closes loses the stream after a while.
    this.linger = setTimeout(() => {
      if (!this.stream.closed) this.stream.close(http2.constants.NGHTTP2_CANCEL);
    }, LINGER_MS).unref();
  }

  /** The stream closed: normally after finish, or cancelled or reset by the client before it. */
  protected closed(): void {
    this.shared.calls.delete(this);
    if (this.linger) clearTimeout(this.linger);
    if (this.finished) return;
    this.finished = true;
    this.cleanup();
    this.report(new ConnectError("the client cancelled the call", Code.Canceled), true);
  }

  private cleanup(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.release();
    this.reader.clear();
  }

  private report(status: ConnectError | undefined, aborted: boolean): void {
    this.shared.ended({ method: this.shared.method, values: this.values, status, durationMs: performance.now() - this.started, aborted });
  }
}

const RESPONSE_HEADERS: http2.OutgoingHttpHeaders = { ":status": 200, "content-type": "application/grpc+proto", "grpc-accept-encoding": ACCEPT_ENCODING };
const OK_TRAILERS: http2.OutgoingHttpHeaders = { "grpc-status": "0" };

/** The error's google.rpc details as connect-node sends them (grpc-status-details-bin), when it has any. */
function statusDetails(err: ConnectError): Record<string, string> {
  if (err.details.length === 0) return {};
  const trailer = new Headers();
  setTrailerStatus(trailer, err);
  const bin = trailer.get("grpc-status-details-bin");
  return bin ? { "grpc-status-details-bin": bin } : {};
}

function tooLarge(length: number, max: number): ConnectError {
  const size = Number.isNaN(length) ? "decompressed message size" : `message size ${length}`;
  return new ConnectError(`${size} is larger than configured readMaxBytes ${max}`, Code.ResourceExhausted);
}
