import http2 from "node:http2";
import type http from "node:http";
import zlib from "node:zlib";
import { fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { Caller } from "../../auth/tokens.js";
import { NotFoundError, PermissionDeniedError, UnauthenticatedError } from "../../core/errors.js";
import type { Room } from "../../room/room.js";
import type { ServerDeps } from "../deps.js";
import { toConnectError } from "../errors.js";
import type { StreamLimiter } from "../stream-limiter.js";

/**
 * The part of a native gRPC call served straight on `node:http2` (the fast paths, see
 * grpc-h2/audio-stream.ts and grpc-h2/panel-stream.ts) that is the same for every method: compression and
 * deadline headers, authentication and room membership as the auth interceptor and room-routes
 * do them, splitting the request body into gRPC messages, the status trailers, cancellation, and
 * one log line per call. Clients cannot tell it from the connect-node handlers.
 */

/** Request encodings understood (as connect-node's defaults); responses are never compressed. */
export const ACCEPT_ENCODING = "gzip,br";
const GRPC_CONTENT_TYPE = /^application\/grpc(\+proto)?(;|$)/i;
const BEARER = /^Bearer ([A-Za-z0-9_\-.=]+)$/;
const TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
/** Largest delay setTimeout takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** After a call has ended, how long a peer that neither reads nor closes keeps its stream. */
const LINGER_MS = 10_000;

/** True for a native gRPC call (HTTP/2, binary protobuf) to `path`. */
export function isNativeGrpcCall(req: http.IncomingMessage | http2.Http2ServerRequest, path: string): req is http2.Http2ServerRequest {
  if (req.httpVersionMajor !== 2 || req.method !== "POST" || req.url !== path) return false;
  const type = req.headers["content-type"];
  return typeof type === "string" && GRPC_CONTENT_TYPE.test(type);
}

/** What every call of a fast path shares. */
export interface RawCallShared {
  deps: ServerDeps;
  limiter: StreamLimiter;
  maxMessageBytes: number;
  calls: Set<RawGrpcCall>;
}

/** A method served on `node:http2` directly; one per server. */
export interface FastPath {
  /** Serves one call; `req` must be a native gRPC call of the method (see isNativeGrpcCall). */
  handle(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void;
}

/**
 * Creates a fast path whose calls `newCall` makes. Calls in progress end with UNAVAILABLE when
 * `shutdownSignal` aborts, and calls arriving after it are refused with it.
 */
export function createFastPath(
  deps: ServerDeps,
  shutdownSignal: AbortSignal,
  limiter: StreamLimiter,
  newCall: (shared: RawCallShared, req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => RawGrpcCall,
): FastPath {
  const shared: RawCallShared = { deps, limiter, maxMessageBytes: deps.config.limits.maxMessageBytes, calls: new Set() };
  shutdownSignal.addEventListener(
    "abort",
    () => {
      const err = shutdownSignal.reason instanceof ConnectError ? shutdownSignal.reason : new ConnectError("server is shutting down", Code.Unavailable);
      for (const call of [...shared.calls]) call.fail(err);
    },
    { once: true },
  );
  return {
    handle(req, res) {
      const call = newCall(shared, req, res);
      if (shutdownSignal.aborted) {
        call.fail(new ConnectError("server is shutting down", Code.Unavailable));
        return;
      }
      call.start();
    },
  };
}

/** One call, from its headers to its trailers; subclasses handle its messages. */
export abstract class RawGrpcCall {
  protected readonly stream: http2.ServerHttp2Stream;
  protected readonly log: Logger;
  private readonly started = performance.now();
  protected finished = false;
  protected userId: string | undefined;
  protected roomId: string | undefined;
  protected room: Room | undefined;
  private timer: NodeJS.Timeout | undefined;
  private decompress: ((body: Buffer) => Buffer) | undefined;
  /** Bytes of a message that arrived split over chunks. */
  private parts: Buffer[] = [];
  private partBytes = 0;
  /** Bytes the held message needs in all (prefix included); 0 while its prefix is incomplete. */
  private partNeeded = 0;
  private linger: NodeJS.Timeout | undefined;
  private readonly onData = (chunk: Buffer) => this.receive(chunk);
  private readonly onEnd = () =>
    this.partBytes > 0 ? this.finish(new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument)) : this.requestEnded();
  private readonly onClose = () => this.closed();

  constructor(
    protected readonly shared: RawCallShared,
    private readonly req: http2.Http2ServerRequest,
    private readonly res: http2.Http2ServerResponse,
    private readonly method: string,
  ) {
    this.stream = res.stream;
    this.log = shared.deps.log;
    shared.calls.add(this);
    this.stream.on("close", this.onClose);
    // Stream errors (a reset from the client) end in "close"; listening keeps them from throwing.
    this.stream.on("error", () => {});
  }

  /** One gRPC message of the request at buf[off, end) (5-byte prefix included). */
  protected abstract message(buf: Buffer, off: number, end: number): void;
  /** The client ended its request side with every message whole. */
  protected abstract requestEnded(): void;
  /** Lets go of what the call holds; runs once, when it finishes or is cancelled. */
  protected abstract release(): void;

  start(): void {
    const headers = this.req.headers;
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
    void this.authenticate().then(
      () => {
        if (this.finished) return;
        // A request that already ended (no message at all) goes straight to its end.
        if (this.stream.readableEnded) return this.onEnd();
        this.stream.on("data", this.onData);
        this.stream.on("end", this.onEnd);
      },
      (err: unknown) => this.fail(err),
    );
  }

  /** The same rules as the auth interceptor plus `sessionOf` and `memberRoom` in room-routes. */
  private async authenticate(): Promise<void> {
    const header = this.req.headers.authorization;
    if (!header) throw new ConnectError("missing authorization header (Bearer token)", Code.Unauthenticated);
    const match = BEARER.exec(header);
    if (!match?.[1]) throw new ConnectError('authorization header must be "Bearer <token>"', Code.Unauthenticated);
    let caller: Caller;
    try {
      caller = await this.shared.deps.tokens.verify(match[1]);
    } catch (err) {
      if (err instanceof UnauthenticatedError) throw new ConnectError(err.message, Code.Unauthenticated);
      throw err;
    }
    this.userId = caller.userId;
    if (caller.kind !== "session") throw new PermissionDeniedError("room methods need the session token from JoinRoom");
    this.roomId = caller.roomId;
    const room = this.shared.deps.rooms.get(caller.roomId);
    if (!room) throw new NotFoundError("room not found; join it again");
    if (!room.has(caller.userId)) throw new PermissionDeniedError("you are not a member of this room; join it again");
    this.room = room;
  }

  /** Splits the request body into gRPC messages; a message split over chunks is joined once whole. */
  private receive(chunk: Buffer): void {
    let buf = chunk;
    if (this.partBytes > 0) {
      this.parts.push(chunk);
      this.partBytes += chunk.length;
      if (this.partNeeded === 0) {
        // Fewer than 5 bytes were held: the length prefix itself was split.
        if (this.partBytes < 5) return;
        const head = Buffer.concat(this.parts, this.partBytes);
        this.parts = [head];
        if (!this.expect(head)) return;
      }
      if (this.partBytes < this.partNeeded) return;
      buf = Buffer.concat(this.parts, this.partBytes);
      this.parts = [];
      this.partBytes = 0;
      this.partNeeded = 0;
    }
    let off = 0;
    try {
      while (buf.length - off >= 5) {
        const length = buf.readUInt32BE(off + 1);
        if (length > this.shared.maxMessageBytes) throw tooLarge(length, this.shared.maxMessageBytes);
        const end = off + 5 + length;
        if (end > buf.length) break;
        this.message(buf, off, end);
        if (this.finished) return;
        off = end;
      }
    } catch (err) {
      this.fail(err);
      return;
    }
    if (off < buf.length) {
      const rest = buf.subarray(off);
      this.parts = [rest];
      this.partBytes = rest.length;
      this.partNeeded = 0;
      if (rest.length >= 5) this.expect(rest);
    }
  }

  /** Notes how many bytes the message starting `head` needs; refuses one over the limit. */
  private expect(head: Buffer): boolean {
    const length = head.readUInt32BE(1);
    if (length > this.shared.maxMessageBytes) {
      this.fail(tooLarge(length, this.shared.maxMessageBytes));
      return false;
    }
    this.partNeeded = 5 + length;
    return true;
  }

  /** Decodes the message at buf[off, end) whole, decompressing it if flagged, with connect-node's codes. */
  protected decode<Desc extends DescMessage>(schema: Desc, buf: Buffer, off: number, end: number): MessageShape<Desc> {
    let body = buf.subarray(off + 5, end);
    if ((buf[off]! & 1) === 1) {
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

  /** Writes one whole gRPC message to the client; returns false when the call is over. */
  write(bytes: Uint8Array, done: () => void): boolean {
    if (this.finished) return false;
    if (!this.res.headersSent) this.sendHeaders();
    this.stream.write(bytes, done);
    return true;
  }

  /**
   * Writes one whole gRPC message without a completion callback; returns false when the stream's
   * buffer is full (wait for "drain") or the call is over.
   */
  protected send(bytes: Uint8Array): boolean {
    if (this.finished) return false;
    if (!this.res.headersSent) this.sendHeaders();
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
    this.res.writeHead(200, { "content-type": "application/grpc+proto", "grpc-accept-encoding": ACCEPT_ENCODING });
  }

  /** Sends the trailers (status OK when `err` is undefined) and lets go of the room. */
  protected finish(err: unknown): void {
    if (this.finished) return;
    this.finished = true;
    const mapped = err === undefined ? undefined : toConnectError(err, this.log);
    this.cleanup();
    this.logCall(mapped ? Code[mapped.code] : "OK", false);
    if (this.stream.destroyed || this.stream.closed) return;
    // Stop reading, but keep draining what the client still sends until it sees our status.
    this.stream.off("data", this.onData);
    this.stream.off("end", this.onEnd);
    this.stream.resume();
    if (!this.res.headersSent) this.sendHeaders();
    this.res.addTrailers(
      mapped ? { "grpc-status": String(mapped.code), "grpc-message": encodeGrpcMessage(mapped.rawMessage) } : { "grpc-status": "0" },
    );
    this.res.end();
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
    this.logCall("Canceled", true);
  }

  private cleanup(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.release();
    this.parts = [];
    this.partBytes = 0;
    this.partNeeded = 0;
  }

  private logCall(code: string, aborted: boolean): void {
    this.log.info(
      {
        method: this.method,
        code,
        durationMs: Math.round(performance.now() - this.started),
        ...(this.userId ? { userId: this.userId } : {}),
        ...(this.roomId ? { roomId: this.roomId } : {}),
        ...(aborted ? { aborted: true } : {}),
      },
      "rpc",
    );
  }
}

/**
 * Percent-encodes a status message as the gRPC spec says: only bytes outside printable ASCII,
 * and "%". (encodeURIComponent would also encode ",", ";" and others, which grpc-js, decoding
 * with decodeURI, then shows still encoded.)
 */
function encodeGrpcMessage(message: string): string {
  return message.replace(/[^\x20-\x24\x26-\x7e]/gu, (c) => {
    try {
      return encodeURIComponent(c);
    } catch {
      return "%EF%BF%BD";
    }
  });
}

function tooLarge(length: number, max: number): ConnectError {
  const size = Number.isNaN(length) ? "decompressed message size" : `message size ${length}`;
  return new ConnectError(`${size} is larger than configured readMaxBytes ${max}`, Code.ResourceExhausted);
}

/** `body` as one uncompressed gRPC message: flag byte, 4-byte length, the bytes. */
export function grpcFrame(body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = 0;
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
}
