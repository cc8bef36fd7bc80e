import http2 from "node:http2";
import type http from "node:http";
import zlib from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { AudioFormat, AudioFrame } from "../../gen/handshake/v1/audio_pb.js";
import {
  AudioStreamRequestSchema,
  AudioStreamResponseSchema,
  type AudioStreamRequest,
  type AudioStreamResponse,
} from "../../gen/handshake/v1/room_service_pb.js";
import type { Caller } from "../auth/tokens.js";
import { InvalidArgumentError, NotFoundError, PermissionDeniedError, ResourceExhaustedError, UnauthenticatedError } from "../deal/errors.js";
import type { AudioSink, Room } from "../room/room.js";
import type { ServerDeps } from "./deps.js";
import { applyAudioMessage } from "./audio-messages.js";
import type { StreamLimiter } from "./stream-limiter.js";
import { toConnectError } from "./errors.js";

/**
 * AudioStream served straight on `node:http2` instead of through connect-node.
 *
 * Why: a relayed frame through connect-node's async-iterable pipeline costs ≈3.4× a plain byte
 * relay (async iterators, GC, protobuf decode and re-encode). Here a `frame` message is parsed
 * in place and its exact bytes are forwarded: `AudioStreamRequest.frame` and
 * `AudioStreamResponse.peer_frame` are both field 2, so the request's gRPC message *is* the
 * peer's response message. Everything else about the call (auth, membership, the format header
 * first, device transcripts, controls, status codes, deadlines, cancellation, per-user stream
 * limits, one log line per call) follows the connect-node handler in room-routes.ts.
 */

/** The one path served here. */
export const AUDIO_STREAM_PATH = "/handshake.v1.RoomService/AudioStream";
const METHOD = "handshake.v1.RoomService/AudioStream";
/** Peer frames queued per outgoing stream before it is ended (5 s of 20 ms frames), as in room-routes. */
const AUDIO_QUEUE_FRAMES = 250;
/** Bytes queued per outgoing stream before it is ended, whatever the frame count. */
const AUDIO_QUEUE_BYTES = 1024 * 1024;
/** After a call has ended, how long a peer that neither reads nor closes keeps its stream. */
const LINGER_MS = 10_000;
/** Request encodings understood (as connect-node's defaults); responses are never compressed. */
const ACCEPT_ENCODING = "gzip,br";
const GRPC_CONTENT_TYPE = /^application\/grpc(\+proto)?(;|$)/i;
const BEARER = /^Bearer ([A-Za-z0-9_\-.=]+)$/;
const TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
/** Largest delay setTimeout takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** True for a native gRPC AudioStream call (HTTP/2, binary protobuf): the calls the fast path serves. */
export function isAudioFastPathRequest(req: http.IncomingMessage | http2.Http2ServerRequest): req is http2.Http2ServerRequest {
  if (req.httpVersionMajor !== 2 || req.method !== "POST" || req.url !== AUDIO_STREAM_PATH) return false;
  const type = req.headers["content-type"];
  return typeof type === "string" && GRPC_CONTENT_TYPE.test(type);
}

/** The AudioStream handler on `node:http2`; one per server. */
export interface AudioFastPath {
  /** Serves one call; `req` must satisfy `isAudioFastPathRequest`. */
  handle(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void;
  /** Calls in progress (not yet ended by either side). */
  readonly openCalls: number;
}

/**
 * A frame parsed in place from the wire: an `AudioFrame` to the room and its sinks, plus the
 * exact gRPC message it arrived in, which a native peer's sink writes out unchanged.
 * `seq` and `capturedAtUs` become bigints only when someone reads them.
 */
export class WireAudioFrame implements AudioFrame {
  readonly $typeName = "handshake.v1.AudioFrame" as const;
  constructor(
    /** The whole gRPC message (5-byte prefix and an AudioStreamRequest holding only `frame`). */
    readonly wire: Uint8Array,
    readonly pcm: Uint8Array,
    private readonly seqNumber: number,
    private readonly capturedAtUsNumber: number,
  ) {}
  get seq(): bigint {
    return BigInt(this.seqNumber);
  }
  get capturedAtUs(): bigint {
    return BigInt(this.capturedAtUsNumber);
  }
}

/** Creates the fast path. Calls in progress end with UNAVAILABLE when `shutdownSignal` aborts. */
export function createAudioFastPath(deps: ServerDeps, shutdownSignal: AbortSignal, limiter: StreamLimiter): AudioFastPath {
  const calls = new Set<AudioCall>();
  const shared: Shared = {
    deps,
    limiter,
    maxMessageBytes: deps.config.limits.maxMessageBytes,
    calls,
  };
  shutdownSignal.addEventListener(
    "abort",
    () => {
      const err = shutdownSignal.reason instanceof ConnectError ? shutdownSignal.reason : new ConnectError("server is shutting down", Code.Unavailable);
      for (const call of [...calls]) call.fail(err);
    },
    { once: true },
  );
  return {
    handle(req, res) {
      const call = new AudioCall(shared, req, res);
      if (shutdownSignal.aborted) {
        call.fail(new ConnectError("server is shutting down", Code.Unavailable));
        return;
      }
      call.start();
    },
    get openCalls() {
      return calls.size;
    },
  };
}

interface Shared {
  deps: ServerDeps;
  limiter: StreamLimiter;
  maxMessageBytes: number;
  calls: Set<AudioCall>;
}

type Decompress = (body: Buffer) => Buffer;

/** One AudioStream call, from its headers to its trailers. */
class AudioCall {
  private readonly stream: http2.ServerHttp2Stream;
  private readonly log: Logger;
  private readonly started = performance.now();
  private finished = false;
  private userId: string | undefined;
  private roomId: string | undefined;
  private room: Room | undefined;
  private formatSeen = false;
  private sink: FastAudioSink | undefined;
  private unregister: (() => void) | undefined;
  private release: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private decompress: Decompress | undefined;
  /** Bytes of a message that arrived split over chunks. */
  private parts: Buffer[] = [];
  private partBytes = 0;
  /** Bytes the held message needs in all (prefix included); 0 while its prefix is incomplete. */
  private partNeeded = 0;
  private linger: NodeJS.Timeout | undefined;
  private readonly onData = (chunk: Buffer) => this.receive(chunk);
  private readonly onEnd = () =>
    this.finish(this.partBytes > 0 ? new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument) : undefined);
  private readonly onClose = () => this.closed();

  constructor(
    private readonly shared: Shared,
    private readonly req: http2.Http2ServerRequest,
    private readonly res: http2.Http2ServerResponse,
  ) {
    this.stream = res.stream;
    this.log = shared.deps.log;
    shared.calls.add(this);
    this.stream.on("close", this.onClose);
    // Stream errors (a reset from the client) end in "close"; listening keeps them from throwing.
    this.stream.on("error", () => {});
  }

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
        // A request that already ended (no message at all) ends the call with OK, as connect-node does.
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

  /** One gRPC message at buf[off, end): 1 flag byte, 4 length bytes, the AudioStreamRequest. */
  private message(buf: Buffer, off: number, end: number): void {
    const room = this.room!;
    const userId = this.userId!;
    const compressed = (buf[off]! & 1) === 1;
    if (!compressed && this.formatSeen) {
      const frame = parseWireFrame(buf, off, end);
      if (frame) {
        this.shared.deps.audio.checkFrame(frame);
        room.audioFrame(userId, frame);
        return;
      }
    }
    let body = buf.subarray(off + 5, end);
    if (compressed) {
      if (!this.decompress) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
      try {
        body = this.decompress(body);
      } catch (err) {
        if (err instanceof RangeError) throw tooLarge(Number.NaN, this.shared.maxMessageBytes);
        throw new ConnectError(`decompress: ${(err as Error).message}`, Code.InvalidArgument);
      }
    }
    let request: AudioStreamRequest;
    try {
      request = fromBinary(AudioStreamRequestSchema, body);
    } catch (err) {
      // The code and wording connect-node uses for a message that does not parse.
      throw new ConnectError(`parse binary: ${err instanceof Error ? err.message : String(err)}`, Code.Internal);
    }
    if (!this.formatSeen) this.first(request.message);
    else this.handle(request.message);
  }

  /** The first message must be the format header; then the stream counts and the sink listens. */
  private first(message: AudioStreamRequest["message"]): void {
    if (message.case !== "format") throw new InvalidArgumentError("the first AudioStream message must be the format header");
    const room = this.room!;
    const userId = this.userId!;
    this.shared.deps.audio.checkFormat(message.value);
    room.setAudioFormat(userId, message.value);
    this.release = this.shared.limiter.acquire(userId);
    this.shared.deps.rooms.streamOpened(room, userId);
    this.sink = new FastAudioSink(this);
    this.unregister = room.addAudioSink(userId, this.sink);
    this.formatSeen = true;
  }

  /** Every later message, decoded whole (frames that did not take the in-place path land here too). */
  private handle(message: AudioStreamRequest["message"]): void {
    applyAudioMessage(this.room!, this.userId!, message, this.shared.deps.audio);
  }

  /** Writes one whole gRPC message to the client; returns false when the call is over. */
  write(bytes: Uint8Array, done: () => void): boolean {
    if (this.finished) return false;
    if (!this.res.headersSent) this.sendHeaders();
    this.stream.write(bytes, done);
    return true;
  }

  /** Bytes waiting in this stream's write buffer. */
  get queuedBytes(): number {
    return this.stream.writableLength;
  }

  /** Ends the call with the status of `err`. */
  fail(err: unknown): void {
    this.finish(err);
  }

  private sendHeaders(): void {
    this.res.writeHead(200, { "content-type": "application/grpc+proto", "grpc-accept-encoding": ACCEPT_ENCODING });
  }

  /** Sends the trailers (status OK when `err` is undefined) and lets go of the room. */
  private finish(err: unknown): void {
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
  private closed(): void {
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
    this.sink?.close();
    this.unregister?.();
    this.unregister = undefined;
    if (this.release) {
      this.release();
      this.release = undefined;
      this.shared.deps.rooms.streamClosed(this.room!, this.userId!);
    }
    this.parts = [];
    this.partBytes = 0;
    this.partNeeded = 0;
  }

  private logCall(code: string, aborted: boolean): void {
    this.log.info(
      {
        method: METHOD,
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
 * The peer audio of one fast-path call. Frames parsed in place go out as the exact bytes they
 * came in; others (from connect-path or browser peers) are encoded. A reader that falls more than
 * AUDIO_QUEUE_FRAMES behind loses its own stream with RESOURCE_EXHAUSTED, as with QueuedAudioSink.
 */
class FastAudioSink implements AudioSink {
  private pending = 0;
  private closedSink = false;
  private lastFormat: AudioFormat | undefined;
  private readonly written = () => {
    this.pending--;
  };

  constructor(private readonly call: AudioCall) {}

  push(frame: AudioFrame, format: AudioFormat | undefined): void {
    if (this.closedSink) return;
    if (format && format !== this.lastFormat) {
      this.lastFormat = format;
      this.send(encodeResponse({ case: "peerFormat", value: format }));
    }
    if (this.pending >= AUDIO_QUEUE_FRAMES || this.call.queuedBytes > AUDIO_QUEUE_BYTES) {
      this.closedSink = true;
      this.call.fail(new ResourceExhaustedError(`audio stream fell more than ${AUDIO_QUEUE_FRAMES} frames behind`));
      return;
    }
    this.send(frame instanceof WireAudioFrame ? frame.wire : encodeResponse({ case: "peerFrame", value: frame }));
  }

  close(): void {
    this.closedSink = true;
  }

  private send(bytes: Uint8Array): void {
    this.pending++;
    if (!this.call.write(bytes, this.written)) {
      this.pending--;
      this.closedSink = true;
    }
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

/** An AudioStreamResponse as one gRPC message (uncompressed). */
function encodeResponse(message: AudioStreamResponse["message"]): Buffer {
  const body = toBinary(AudioStreamResponseSchema, create(AudioStreamResponseSchema, { message }));
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = 0;
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
}

/**
 * Parses buf[off, end) as a gRPC message whose AudioStreamRequest holds only `frame`, with the
 * frame's fields each at most once and none unknown. Returns undefined for anything else (the
 * caller then decodes it whole), so no valid message is ever refused here.
 */
function parseWireFrame(buf: Buffer, off: number, end: number): WireAudioFrame | undefined {
  let p = off + 5;
  if (p >= end || buf[p] !== 0x12) return undefined;
  p++;
  const frameLength = readVarint(buf, p, end);
  if (frameLength < 0) return undefined;
  p = varintEnd;
  if (p + frameLength !== end) return undefined;
  let seq = 0;
  let capturedAtUs = 0;
  let pcmStart = -1;
  let pcmEnd = -1;
  let seen = 0;
  while (p < end) {
    const tag = buf[p++];
    if (tag === 0x08 && (seen & 1) === 0) {
      seq = readVarint(buf, p, end);
      if (seq < 0) return undefined;
      seen |= 1;
    } else if (tag === 0x12 && (seen & 2) === 0) {
      const length = readVarint(buf, p, end);
      if (length < 0 || varintEnd + length > end) return undefined;
      pcmStart = varintEnd;
      pcmEnd = varintEnd + length;
      varintEnd = pcmEnd;
      seen |= 2;
    } else if (tag === 0x18 && (seen & 4) === 0) {
      capturedAtUs = readVarint(buf, p, end);
      if (capturedAtUs < 0) return undefined;
      seen |= 4;
    } else {
      return undefined;
    }
    p = varintEnd;
  }
  const pcm = pcmStart < 0 ? EMPTY : buf.subarray(pcmStart, pcmEnd);
  return new WireAudioFrame(buf.subarray(off, end), pcm, seq, capturedAtUs);
}

const EMPTY = new Uint8Array(0);
/** Where the last varint read by readVarint ended (a module variable, so reading allocates nothing). */
let varintEnd = 0;

/**
 * Reads a varint at buf[p] below 2^53 as a number; -1 when it is cut off, longer than 8 bytes or
 * not exactly representable (negative int64s, huge values), which sends the message to the full decoder.
 */
function readVarint(buf: Buffer, p: number, end: number): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 8; i++) {
    if (p >= end) return -1;
    const byte = buf[p++]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      varintEnd = p;
      return value <= Number.MAX_SAFE_INTEGER ? value : -1;
    }
    scale *= 128;
  }
  return -1;
}
