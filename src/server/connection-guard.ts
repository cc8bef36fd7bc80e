import { readFileSync } from "node:fs";
import type http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import { createContextKey } from "@connectrpc/connect";
import type { Logger } from "pino";
import { encodeGrpcMessage } from "./grpc-h2/wire.js";

/**
 * The front door's limits against denial of service: connections per address and in all (below
 * the file-descriptor limit), calls and Health/Watch calls open per address, and HTTP/2 rapid
 * reset (CVE-2023-44487) counted per connection and per address. nghttp2 1.57+ (in Node 20.8.1+)
 * already ends one session past its own reset budget (a burst of 1,000, then 33 a second) and
 * Node's `maxSessionRejectedStreams` ends one that keeps opening streams past the limit; what
 * neither does is add up an address's connections, so 20 connections each under the budget are
 * cut off here, and the address is refused new connections for a while.
 */

/** Connection and rate limits of the front door; each is a setting in src/config.ts and .env.example. */
export interface ConnectionLimits {
  /** Open connections in all; kept below the process's file-descriptor limit (`ulimit -n`). */
  maxConnections: number;
  maxConnectionsPerAddress: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS of every HTTP/2 connection. */
  maxStreamsPerConnection: number;
  /** Calls open at once from one address, over all its connections. */
  maxStreamsPerAddress: number;
  /** Open grpc.health.v1.Health/Watch calls per address. */
  maxHealthWatchesPerAddress: number;
  /** Client RST_STREAMs one HTTP/2 connection may send per second before GOAWAY ENHANCE_YOUR_CALM. */
  maxResetsPerConnectionPerSecond: number;
  /** The same over all connections of one address. */
  maxResetsPerAddressPerSecond: number;
  /** An address cut off for abuse is refused new connections this long. */
  abuseBanMs: number;
  /** A socket that has not shown its protocol (the whole HTTP/2 preface, or a first HTTP/1.1 byte) within this is closed; then HTTP/1.1's headers timeout or HTTP/2's idle timeout runs. */
  handshakeTimeoutMs: number;
  /** HTTP/1.1: the request's headers must arrive within this (Node's headersTimeout). */
  httpHeadersTimeoutMs: number;
  /** HTTP/1.1: the whole request must arrive within this (Node's requestTimeout). */
  httpRequestTimeoutMs: number;
  /** Rooms one address may create per minute (JoinRoom making a new room). */
  roomCreatesPerAddressPerMinute: number;
  /** Rooms one user may create per minute. */
  roomCreatesPerUserPerMinute: number;
}

/** The embedded defaults (src/config.ts reads each from the environment over these). */
export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = {
  maxConnections: 4_096,
  maxConnectionsPerAddress: 256,
  maxStreamsPerConnection: 100,
  maxStreamsPerAddress: 1_000,
  maxHealthWatchesPerAddress: 4,
  maxResetsPerConnectionPerSecond: 100,
  maxResetsPerAddressPerSecond: 400,
  abuseBanMs: 10_000,
  handshakeTimeoutMs: 10_000,
  httpHeadersTimeoutMs: 10_000,
  httpRequestTimeoutMs: 60_000,
  roomCreatesPerAddressPerMinute: 30,
  roomCreatesPerUserPerMinute: 10,
};

/** The client's network address of a connect-node call (empty in memory), for per-address limits in handlers. */
export const peerAddressKey = createContextKey<string>("", { description: "client address" });

/** Descriptors kept free for the store, logs, speech processes and outgoing calls. */
const RESERVED_DESCRIPTORS = 256;
/** Addresses banned at once at most (many addresses, e.g. IPv6, still cost bounded memory). */
const MAX_BANNED = 100_000;
/** Path of the public health stream, limited per address. */
const HEALTH_WATCH_PATH = "/grpc.health.v1.Health/Watch";

/** What one address holds now. */
interface AddressState {
  connections: number;
  calls: number;
  watches: number;
  sessions: Set<http2.ServerHttp2Session>;
  resetWindowStart: number;
  resets: number;
}

/** Counts of what the guard holds and has refused, for tests and metrics. */
export interface GuardStats {
  connections: number;
  addresses: number;
  refusedConnections: number;
  refusedCalls: number;
  cutOffSessions: number;
  bannedAddresses: number;
}

/** The front door's limits; one per server. */
export interface ConnectionGuard {
  /** The connection cap actually applied: MAX_CONNECTIONS, lowered to stay under the descriptor limit. */
  readonly maxConnections: number;
  /** Takes a new socket in, or destroys it (over a cap, or a banned address); true when taken. */
  admit(socket: net.Socket): boolean;
  /** Watches an HTTP/2 session for rapid reset, counted for it and for its socket's address. */
  watchSession(session: http2.ServerHttp2Session): void;
  /**
   * Admits one call against its address's open-call and Health/Watch limits; when refused, the
   * call has been answered with RESOURCE_EXHAUSTED and false is returned.
   */
  admitCall(req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): boolean;
  /** `admitCall` for a gRPC call served on its raw HTTP/2 stream (the fast path), with no compat request/response. */
  admitStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean;
  stats(): GuardStats;
}

/** The soft limit on open files of this process (what `ulimit -n` says), or undefined off Linux. */
export function fileDescriptorLimit(): number | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
    const value = Number(soft);
    return Number.isInteger(value) && value > 0 ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Creates the guard for one server with `limits`; `now` for tests. */
export function createConnectionGuard(limits: ConnectionLimits, log: Logger, now: () => number = Date.now): ConnectionGuard {
  const fdLimit = fileDescriptorLimit();
  const maxConnections = fdLimit === undefined ? limits.maxConnections : Math.max(16, Math.min(limits.maxConnections, fdLimit - RESERVED_DESCRIPTORS));
  if (maxConnections < limits.maxConnections) {
    log.warn({ maxConnections, configured: limits.maxConnections, fdLimit }, "MAX_CONNECTIONS lowered to stay under the file-descriptor limit");
  }
  const addresses = new Map<string, AddressState>();
  const banned = new Map<string, number>();
  let connections = 0;
  const counters = { refusedConnections: 0, refusedCalls: 0, cutOffSessions: 0 };

  const stateOf = (address: string): AddressState => {
    let state = addresses.get(address);
    if (!state) {
      state = { connections: 0, calls: 0, watches: 0, sessions: new Set(), resetWindowStart: 0, resets: 0 };
      addresses.set(address, state);
    }
    return state;
  };
  const forgetIfEmpty = (address: string, state: AddressState) => {
    if (state.connections === 0 && state.calls === 0 && state.watches === 0 && state.sessions.size === 0) addresses.delete(address);
  };
  /** One call against its address's limits, whichever way it is served; `onClose` registers its release. */
  const countCall = (address: string, watch: boolean, onClose: (release: () => void) => void, refuse: (message: string) => false): boolean => {
    const state = stateOf(address);
    if (state.calls >= limits.maxStreamsPerAddress) return refuse(`at most ${limits.maxStreamsPerAddress} calls open at once per address`);
    if (watch && state.watches >= limits.maxHealthWatchesPerAddress) return refuse(`at most ${limits.maxHealthWatchesPerAddress} Health/Watch calls per address`);
    state.calls++;
    if (watch) state.watches++;
    onClose(() => {
      state.calls--;
      if (watch) state.watches--;
      forgetIfEmpty(address, state);
    });
    return true;
  };
  const isBanned = (address: string): boolean => {
    const until = banned.get(address);
    if (until === undefined) return false;
    if (until > now()) return true;
    banned.delete(address);
    return false;
  };

  /** The address is refused new connections for ABUSE_BAN_MS; expired bans are swept as the list grows. */
  const ban = (address: string, reason: string) => {
    if (banned.size >= MAX_BANNED) for (const a of banned.keys()) isBanned(a);
    if (limits.abuseBanMs > 0 && banned.size < MAX_BANNED) banned.set(address, now() + limits.abuseBanMs);
    log.warn({ address, reason, banMs: limits.abuseBanMs }, "connection cut off for abuse");
  };
  /** GOAWAY ENHANCE_YOUR_CALM and the socket closed at once; the address waits out the ban. */
  const cut = new WeakSet<http2.ServerHttp2Session>();
  const cutOff = (session: http2.ServerHttp2Session, address: string, reason: string) => {
    if (session.destroyed || cut.has(session)) return;
    cut.add(session);
    counters.cutOffSessions++;
    ban(address, reason);
    // At once: every further chunk read from this socket would be more streams to set up and tear
    // down. The final GOAWAY carries ENHANCE_YOUR_CALM; the session's error goes to the server's
    // "sessionError", which nobody needs to hear.
    session.destroy(new Error(`cut off: ${reason}`), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  };

  return {
    maxConnections,

    admit(socket) {
      const address = socket.remoteAddress ?? "";
      const refuse = (reason: string) => {
        counters.refusedConnections++;
        log.debug({ address, reason }, "connection refused");
        socket.destroy();
        return false;
      };
      if (isBanned(address)) return refuse("address cut off for abuse");
      if (connections >= maxConnections) return refuse("connection limit");
      const state = stateOf(address);
      if (state.connections >= limits.maxConnectionsPerAddress) return refuse("connections per address");
      connections++;
      state.connections++;
      socket.once("close", () => {
        connections--;
        state.connections--;
        forgetIfEmpty(address, state);
      });
      return true;
    },

    watchSession(session) {
      const address = session.socket?.remoteAddress ?? "";
      const state = stateOf(address);
      state.sessions.add(session);
      let windowStart = 0;
      let resets = 0;
      // nghttp2 ended the session for a protocol violation (ERR_HTTP2_ERROR: streams past
      // maxConcurrentStreams more than maxSessionRejectedStreams times, a flood of invalid frames):
      // the address waits out a ban instead of reconnecting at once. Socket errors are not abuse.
      session.on("error", (err: NodeJS.ErrnoException) => {
        if (err.code !== "ERR_HTTP2_ERROR") return;
        counters.cutOffSessions++;
        ban(address, "protocol violation");
      });
      session.once("close", () => {
        state.sessions.delete(session);
        forgetIfEmpty(address, state);
      });
      session.on("stream", (stream: http2.ServerHttp2Stream) => {
        // 'aborted': the client reset the stream before its answer was complete (a cancel).
        stream.once("aborted", () => {
          const t = now();
          if (t - windowStart >= 1000) {
            windowStart = t;
            resets = 0;
          }
          if (t - state.resetWindowStart >= 1000) {
            state.resetWindowStart = t;
            state.resets = 0;
          }
          resets++;
          state.resets++;
          if (resets > limits.maxResetsPerConnectionPerSecond) cutOff(session, address, "rapid reset on one connection");
          else if (state.resets > limits.maxResetsPerAddressPerSecond) {
            for (const s of state.sessions) cutOff(s, address, "rapid reset over the address's connections");
          }
        });
      });
    },

    admitCall(req, res) {
      return countCall(
        req.socket?.remoteAddress ?? "",
        req.url === HEALTH_WATCH_PATH,
        (release) => res.once("close", release),
        (message) => refuseCall(req, res, message, counters),
      );
    },

    admitStream(stream, headers) {
      return countCall(
        stream.session?.socket?.remoteAddress ?? "",
        headers[":path"] === HEALTH_WATCH_PATH,
        // A stream closes once: `on` spares the wrapper `once` would keep for its life.
        (release) => stream.on("close", release),
        (message) => refuseStream(stream, headers, message, counters),
      );
    },

    stats() {
      for (const address of banned.keys()) isBanned(address);
      return { connections, addresses: addresses.size, ...counters, bannedAddresses: banned.size };
    },
  };
}

/** Answers a refused gRPC call on its raw HTTP/2 stream with a trailers-only RESOURCE_EXHAUSTED. */
function refuseStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, message: string, counters: { refusedCalls: number }): false {
  counters.refusedCalls++;
  if (!stream.destroyed) {
    stream.respond(
      { ":status": 200, "content-type": headers["content-type"] ?? "application/grpc", "grpc-status": "8", "grpc-message": encodeGrpcMessage(message), "retry-after": "1" },
      { endStream: true },
    );
  }
  return false;
}

/** Answers a refused call with RESOURCE_EXHAUSTED in the protocol it came in (gRPC trailers-only, or Connect JSON with 429). */
function refuseCall(
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
  message: string,
  counters: { refusedCalls: number },
): false {
  counters.refusedCalls++;
  const contentType = req.headers["content-type"] ?? "";
  // The body is not read: the connection (HTTP/1.1) is closed after the answer.
  if (contentType.startsWith("application/grpc")) {
    res.writeHead(200, { "content-type": contentType, "grpc-status": "8", "grpc-message": encodeGrpcMessage(message), "retry-after": "1" });
  } else {
    res.writeHead(429, { "content-type": "application/json", "retry-after": "1", ...("stream" in req ? {} : { connection: "close" }) });
  }
  if (contentType.startsWith("application/grpc")) res.end();
  else res.end(JSON.stringify({ code: "resource_exhausted", message }));
  return false;
}
