import { createReadStream, readFileSync } from "node:fs";
import { stat } from "node:fs/promises";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { setMaxListeners } from "node:events";
import path from "node:path";
import { createRegistry } from "@bufbuild/protobuf";
import { Code, ConnectError, cors, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { file_grpc_health_v1_health, Health } from "../../gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection, ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ContractService, file_handshake_v1_contract_service } from "../../gen/handshake/v1/contract_service_pb.js";
import { file_handshake_v1_room_service, RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { file_handshake_v1_payments_service, PaymentsService } from "../../gen/handshake/v1/payments_service_pb.js";
import { registerPaymentRoutes } from "./payment-routes.js";
import { createCallScopes, type CallScopes } from "./call-scope.js";
import { registerContractRoutes } from "./contract-routes.js";
import type { ServerDeps } from "./deps.js";
import { createAudioFastPath } from "./grpc-h2/audio-stream.js";
import { createPanelFastPath } from "./grpc-h2/panel-stream.js";
import type { FastPath } from "./grpc-h2/raw-grpc-call.js";
import { isFastPathCall } from "./grpc-h2/routing.js";
import { AUDIO_STREAM_PATH, encodeGrpcMessage, PANEL_STREAM_PATH } from "./grpc-h2/wire.js";
import { createReadinessCheck, registerHealthRoutes, type ReadinessCheck } from "./health.js";
import { createAuthInterceptor, createFastPathHooks, createLoggingInterceptor } from "./interceptors.js";
import { registerReflectionRoutes } from "./reflection.js";
import { rawStreamContext } from "./raw-stream.js";
import { registerRoomRoutes } from "./room-routes.js";
import { decodedPath } from "./validate.js";
import { closeWhenIdle, DEFAULT_IDLE_CONNECTION_MS } from "./idle-sessions.js";
import { createConnectionGuard, DEFAULT_CONNECTION_LIMITS, peerAddressKey, type GuardStats } from "./connection-guard.js";

const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** Largest raw HTTP body accepted outside RPCs (webhooks). */
const MAX_RAW_BODY = 1024 * 1024;

/** A built server: not listening until `listen`. */
export interface HandshakeServer {
  /** Starts listening; resolves with the bound port (useful with port 0). */
  listen(port: number, host: string): Promise<number>;
  /**
   * Graceful stop: refuses new connections, ends open streams with a status, waits for calls to
   * finish (at most `graceMs`), then closes every connection. Safe to call twice.
   */
  close(graceMs?: number): Promise<void>;
  /** Aborted when shutdown begins; handlers' contexts see it. */
  readonly shutdownSignal: AbortSignal;
  /** What the front door holds and has refused (connection-guard.ts). */
  guardStats(): GuardStats;
}

/** The scope rules of a server built from `deps` (one stream limit for every path). */
export function createServerScopes(deps: ServerDeps): CallScopes {
  return createCallScopes({ tokens: deps.tokens, rooms: deps.rooms, maxStreamsPerUser: deps.config.limits.maxStreamsPerUser });
}

/**
 * Every connect-node service of the server, for `connectNodeAdapter` and for in-memory tests
 * (`createRouterTransport(createRoutes(…), { router: { interceptors: createInterceptors(…) } })`).
 */
export function createRoutes(deps: ServerDeps, scopes: CallScopes, shutdownSignal: AbortSignal): (router: ConnectRouter) => void {
  return (router) => {
    registerRoomRoutes(router, deps, scopes);
    registerContractRoutes(router, deps, scopes);
    registerPaymentRoutes(router, deps, scopes);
    registerHealthRoutes(router, shutdownSignal, createReadinessCheck(deps.store, shutdownSignal, deps.readinessProbes), deps.config.healthWatchIntervalMs);
    registerReflectionRoutes(
      router,
      createRegistry(file_handshake_v1_room_service, file_handshake_v1_contract_service, file_handshake_v1_payments_service, file_grpc_health_v1_health, file_grpc_reflection_v1_reflection),
      [RoomService.typeName, ContractService.typeName, PaymentsService.typeName, Health.typeName, ServerReflection.typeName],
    );
  };
}

/** The interceptors every connect-node call passes, outermost first: the log line (and error mapping), then authentication. */
export function createInterceptors(deps: ServerDeps, scopes: CallScopes): Interceptor[] {
  return [createLoggingInterceptor(deps.log, deps.metrics), createAuthInterceptor(scopes)];
}

/**
 * Builds the one server process: gRPC over cleartext HTTP/2 for native clients and Connect /
 * gRPC-Web over HTTP/1.1 for browsers, on one port, told apart by the HTTP/2 preface; with
 * `config.tls`, the same over TLS, told apart by ALPN (h2, http/1.1).
 */
export function buildServer(deps: ServerDeps, shutdown: AbortController = new AbortController()): HandshakeServer {
  const { log, config } = deps;
  const limits = config.connections ?? DEFAULT_CONNECTION_LIMITS;
  const guard = createConnectionGuard(limits, log);
  const scopes = createServerScopes(deps);
  const readiness = createReadinessCheck(deps.store, shutdown.signal, deps.readinessProbes);
  // Every call links its signal to the shutdown signal; hundreds of open streams are normal.
  setMaxListeners(0, shutdown.signal);
  const handler = connectNodeAdapter({
    routes: createRoutes(deps, scopes, shutdown.signal),
    interceptors: createInterceptors(deps, scopes),
    contextValues: (req) => {
      const values = rawStreamContext(req);
      values.set(peerAddressKey, req.socket?.remoteAddress ?? "");
      return values;
    },
    readMaxBytes: config.limits.maxMessageBytes,
    // Panel events (a contract's text is a few KB) go out at once, not after a zlib job on the
    // thread pool; only large answers such as contract listings are worth compressing.
    compressMinBytes: 16 * 1024,
    // An enum name this server does not know is INVALID_ARGUMENT, not a silent UNSPECIFIED
    // (protobuf-es ignores unknown fields and enum names together, so both are refused in JSON).
    jsonOptions: { ignoreUnknownFields: false },
    shutdownSignal: shutdown.signal,
    fallback: (req, res) => void serveHttp(req, res as never, deps, readiness),
  });

  // Native gRPC AudioStream and PanelStream calls skip connect-node (why: grpc-h2/routing.ts),
  // under the same rules: the hooks call call-scope.ts and interceptors.ts.
  const fastPathOptions = { ...createFastPathHooks(log, scopes, deps.metrics), maxMessageBytes: config.limits.maxMessageBytes, shutdownSignal: shutdown.signal };
  const fastPaths = new Map<string, FastPath>([
    [AUDIO_STREAM_PATH, createAudioFastPath(fastPathOptions, { scopes, audio: deps.audio })],
    [PANEL_STREAM_PATH, createPanelFastPath(fastPathOptions, { scopes, slowReaderGraceMs: config.rooms.slowReaderGraceMs })],
  ]);
  const fastPathNames = new Set(fastPaths.keys());
  // HTTP/1.1 responses in flight, so shutdown can close each connection as soon as it is idle.
  const h1InFlight = new Set<http.ServerResponse>();
  let onH1Idle: (() => void) | undefined;
  const withCors = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    if (res instanceof http.ServerResponse) {
      h1InFlight.add(res);
      res.once("close", () => {
        h1InFlight.delete(res);
        if (h1InFlight.size === 0) onH1Idle?.();
      });
    }
    // A stream the client already reset (HEADERS and RST_STREAM in one packet: rapid reset) costs
    // nothing more: no handler, no context, no log line.
    if ("stream" in req && (req.stream.closed || req.stream.destroyed)) return;
    // Calls and Health/Watch streams per address, over all of its connections.
    if (!guard.admitCall(req, res)) return;
    const origin = req.headers.origin;
    if (typeof origin === "string" && config.corsOrigins.includes(origin)) {
      res.setHeader("access-control-allow-origin", origin);
      res.setHeader("vary", "origin");
      res.setHeader("access-control-expose-headers", cors.exposedHeaders.join(", "));
      if (req.method === "OPTIONS") {
        res.setHeader("access-control-allow-methods", cors.allowedMethods.join(", "));
        res.setHeader("access-control-allow-headers", [...cors.allowedHeaders, "authorization"].join(", "));
        res.setHeader("access-control-max-age", "7200");
        res.writeHead(204);
        res.end();
        return;
      }
    }
    handler(req as never, res as never);
  };

  const h1 = http.createServer(
    {
      headersTimeout: limits.httpHeadersTimeoutMs,
      requestTimeout: limits.httpRequestTimeoutMs,
      // Node checks both timeouts on this interval, so a timeout fires at most this late.
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(limits.httpHeadersTimeoutMs / 4))),
    },
    withCors,
  );
  h1.keepAliveTimeout = 5_000;
  // maxSessionRejectedStreams (Node's default 100): a client that keeps opening streams past
  // maxConcurrentStreams is ended with ENHANCE_YOUR_CALM by Node itself.
  const h2 = http2.createServer({ maxSessionMemory: 64, settings: { maxConcurrentStreams: limits.maxStreamsPerConnection } }, withCors);
  // With a 'request' listener, Node's http2 server runs its compat handler on every stream, which
  // wraps it in an Http2ServerRequest and Response (~4 KB, and work on each frame) even when we
  // serve the raw stream. So its compat 'stream' listener is taken out and called, with the same
  // arguments, only for the streams the fast paths do not serve.
  const compatListeners = h2.listeners("stream");
  if (compatListeners.length !== 1) throw new Error(`expected Node's one compat 'stream' listener on the HTTP/2 server, found ${compatListeners.length}`);
  const compat = compatListeners[0]!;
  h2.removeListener("stream", compat as never);
  h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
    if (!isFastPathCall(headers, fastPathNames)) return void Reflect.apply(compat, h2, [stream, headers, flags, rawHeaders]);
    // A reset from the client ends in "close"; listening keeps the error from being thrown.
    stream.on("error", ignoreError);
    if (stream.closed || stream.destroyed) return;
    if (!guard.admitStream(stream, headers)) return;
    fastPaths.get(headers[":path"]!)!.handle(stream, headers);
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    guard.watchSession(session);
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    closeWhenIdle(session, config.limits.idleConnectionMs ?? DEFAULT_IDLE_CONNECTION_MS);
  });
  const sockets = new Set<net.Socket>();
  // TLS (TLS_CERT_FILE, TLS_KEY_FILE): the same front door and guard admit the TCP connection
  // first; after the TLS handshake, ALPN says which server takes it, as the preface does in clear.
  const secure = config.tls
    ? tls.createServer(
        {
          cert: readFileSync(config.tls.certFile),
          key: readFileSync(config.tls.keyFile),
          ALPNProtocols: ["h2", "http/1.1"],
          handshakeTimeout: limits.handshakeTimeoutMs,
        },
        (socket) => {
          socket.setNoDelay(true);
          if (socket.alpnProtocol === "h2") h2.emit("connection", socket);
          else h1.emit("connection", socket);
        },
      )
    : undefined;
  // A failed handshake (wrong protocol, timeout, a scanner) closes that connection only.
  secure?.on("tlsClientError", (_err, socket) => socket.destroy());

  // No Nagle: small RPC and event frames must leave at once, not wait for the previous ACK.
  const front = net.createServer({ noDelay: true }, (socket) => {
    socket.on("error", () => socket.destroy());
    if (!guard.admit(socket)) return;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    if (secure) return void secure.emit("connection", socket);
    // Half-open: a socket that never says which protocol it speaks holds a descriptor for nothing.
    const handshakeTimer = setTimeout(() => socket.destroy(), limits.handshakeTimeoutMs).unref();
    // "close" comes once: `on` spares the wrapper `once` keeps per socket for the connection's life.
    socket.on("close", () => clearTimeout(handshakeTimer));
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, HTTP2_PREFACE.length);
      const isH2 = head.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n));
      if (isH2 && head.length < HTTP2_PREFACE.length) return;
      // From here Node's own timers take over: headersTimeout/requestTimeout, or the idle session.
      clearTimeout(handshakeTimer);
      socket.off("data", onData);
      socket.pause();
      socket.unshift(head);
      if (isH2) {
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  });

  let closing: Promise<void> | undefined;
  return {
    shutdownSignal: shutdown.signal,
    guardStats: () => guard.stats(),
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        front.once("error", reject);
        front.listen(port, host, () => {
          front.off("error", reject);
          // The HTTP/1.1 server never listens itself (the front hands it sockets), and Node starts
          // its headersTimeout/requestTimeout checks on "listening": without this, slowloris wins.
          h1.emit("listening");
          resolve((front.address() as net.AddressInfo).port);
        });
      }),
    close(graceMs = 5_000) {
      closing ??= (async () => {
        shutdown.abort(new ConnectError("server is shutting down", Code.Unavailable));
        const stopped = new Promise<void>((resolve) => front.close(() => resolve()));
        for (const session of sessions) session.close();
        h1.closeIdleConnections();
        const h1Idle = new Promise<void>((resolve) => {
          onH1Idle = resolve;
          if (h1InFlight.size === 0) resolve();
        });
        const deadline = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
        const sessionsClosed = [...sessions].map((s) => new Promise((r) => s.once("close", r)));
        await Promise.race([Promise.all([h1Idle, ...sessionsClosed]), deadline]);
        h1.closeAllConnections();
        for (const session of sessions) session.destroy();
        for (const socket of sockets) socket.destroy();
        h1.close();
        h2.close();
        await stopped;
      })();
      return closing;
    },
  };
}

function ignoreError(): void {}

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".wasm": "application/wasm",
};

/**
 * Non-RPC HTTP: `/healthz` (the process answers), `/readyz` (503 with the reasons when not
 * ready), `/metrics` (when on), raw POST endpoints (webhooks) and the browser app's static files.
 */
async function serveHttp(
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
  deps: ServerDeps,
  readiness: ReadinessCheck,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://localhost");
  const send = (status: number, body: string, type = "text/plain; charset=utf-8") => {
    res.writeHead(status, { "content-type": type });
    res.end(body);
  };
  try {
    const pathname = decodedPath(url.pathname);
    if (pathname === undefined) return send(400, "bad request: malformed percent-encoding in the path");
    const isRead = req.method === "GET" || req.method === "HEAD";
    if (url.pathname === "/healthz" && isRead) return send(200, JSON.stringify({ status: "ok" }), "application/json");
    if (url.pathname === "/readyz" && isRead) {
      const state = await readiness();
      return send(state.ready ? 200 : 503, JSON.stringify({ status: state.ready ? "ready" : "not ready", reasons: state.reasons }), "application/json");
    }
    if (url.pathname === "/metrics" && deps.metrics && isRead) {
      const body = await deps.metrics.render();
      res.writeHead(200, { "content-type": deps.metrics.contentType, "cache-control": "no-store" });
      return void (req.method === "HEAD" ? res.end() : res.end(body));
    }
    const endpoint = deps.httpEndpoints.get(url.pathname);
    if (endpoint) {
      if (req.method !== "POST") return send(405, "method not allowed");
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of req as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_RAW_BODY) return send(413, "body too large");
        chunks.push(chunk);
      }
      const result = await endpoint(Buffer.concat(chunks), req.headers);
      return send(result.status, result.body, "application/json");
    }
    if (deps.webRoot && (req.method === "GET" || req.method === "HEAD")) {
      const relative = pathname === "/" ? "index.html" : pathname.replace(/^\/+/, "");
      const file = path.resolve(deps.webRoot, relative);
      if (file.startsWith(path.resolve(deps.webRoot) + path.sep)) {
        const info = await stat(file).catch(() => undefined);
        if (info?.isFile()) {
          res.writeHead(200, {
            "content-type": CONTENT_TYPES[path.extname(file)] ?? "application/octet-stream",
            "content-length": info.size,
          });
          if (req.method === "HEAD") return void res.end();
          createReadStream(file).pipe(res as NodeJS.WritableStream);
          return;
        }
      }
    }
    const contentType = req.headers["content-type"] ?? "";
    if (contentType.startsWith("application/grpc")) {
      // A trailers-only gRPC answer, so every gRPC client reads the exact status.
      res.writeHead(200, { "content-type": contentType, "grpc-status": "12", "grpc-message": encodeGrpcMessage(`unknown method ${url.pathname}`) });
      res.end();
      return;
    }
    send(404, "not found");
  } catch (err) {
    deps.log.error({ err, path: url.pathname }, "http handler failed");
    if (!res.headersSent) send(500, "internal error");
  }
}
