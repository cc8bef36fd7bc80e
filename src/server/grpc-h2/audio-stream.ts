import type http2 from "node:http2";
import type http from "node:http";
import { create, toBinary } from "@bufbuild/protobuf";
import type { AudioFormat, AudioFrame } from "../../../gen/handshake/v1/audio_pb.js";
import {
  AudioStreamRequestSchema,
  AudioStreamResponseSchema,
  type AudioStreamRequest,
  type AudioStreamResponse,
} from "../../../gen/handshake/v1/room_service_pb.js";
import { InvalidArgumentError, ResourceExhaustedError } from "../../core/errors.js";
import type { AudioSink } from "../../room/room.js";
import type { ServerDeps } from "../deps.js";
import { applyAudioMessage } from "../audio-messages.js";
import { createFastPath, grpcFrame, isNativeGrpcCall, RawGrpcCall, type FastPath, type RawCallShared } from "./raw-grpc-call.js";
import type { StreamLimiter } from "../stream-limiter.js";

/**
 * AudioStream served straight on `node:http2` instead of through connect-node.
 *
 * Why: a relayed frame through connect-node's async-iterable pipeline costs ≈3.4× a plain byte
 * relay (async iterators, GC, protobuf decode and re-encode). Here a `frame` message is parsed
 * in place and its exact bytes are forwarded: `AudioStreamRequest.frame` and
 * `AudioStreamResponse.peer_frame` are both field 2, so the request's gRPC message *is* the
 * peer's response message. Everything else about the call (auth, membership, the format header
 * first, device transcripts, controls, status codes, deadlines, cancellation, per-user stream
 * limits, one log line per call) follows the connect-node handler in room-routes.ts; what all
 * fast paths share is in raw-grpc-call.ts.
 */

/** The one path served here. */
export const AUDIO_STREAM_PATH = "/handshake.v1.RoomService/AudioStream";
const METHOD = "handshake.v1.RoomService/AudioStream";
/** Peer frames queued per outgoing stream before it is ended (5 s of 20 ms frames), as in room-routes. */
const AUDIO_QUEUE_FRAMES = 250;
/** Bytes queued per outgoing stream before it is ended, whatever the frame count. */
const AUDIO_QUEUE_BYTES = 1024 * 1024;

/** True for a native gRPC AudioStream call (HTTP/2, binary protobuf): the calls the fast path serves. */
export function isAudioFastPathRequest(req: http.IncomingMessage | http2.Http2ServerRequest): req is http2.Http2ServerRequest {
  return isNativeGrpcCall(req, AUDIO_STREAM_PATH);
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

/** Creates the AudioStream fast path. */
export function createAudioFastPath(deps: ServerDeps, shutdownSignal: AbortSignal, limiter: StreamLimiter): FastPath {
  return createFastPath(deps, shutdownSignal, limiter, (shared, req, res) => new AudioCall(shared, req, res));
}

/** One AudioStream call: the format header first, then frames, transcripts and controls. */
class AudioCall extends RawGrpcCall {
  private formatSeen = false;
  private sink: FastAudioSink | undefined;
  private unregister: (() => void) | undefined;
  private releaseSlot: (() => void) | undefined;

  constructor(shared: RawCallShared, req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) {
    super(shared, req, res, METHOD);
  }

  /** One gRPC message at buf[off, end): 1 flag byte, 4 length bytes, the AudioStreamRequest. */
  protected message(buf: Buffer, off: number, end: number): void {
    const room = this.room!;
    const userId = this.userId!;
    if ((buf[off]! & 1) === 0 && this.formatSeen) {
      const frame = parseWireFrame(buf, off, end);
      if (frame) {
        this.shared.deps.audio.checkFrame(frame);
        room.audioFrame(userId, frame);
        return;
      }
    }
    const request = this.decode(AudioStreamRequestSchema, buf, off, end);
    if (!this.formatSeen) this.first(request.message);
    else applyAudioMessage(room, userId, request.message, this.shared.deps.audio);
  }

  /** The client ended its side: the call ends with OK, as connect-node's handler does. */
  protected requestEnded(): void {
    this.finish(undefined);
  }

  /** The first message must be the format header; then the stream counts and the sink listens. */
  private first(message: AudioStreamRequest["message"]): void {
    if (message.case !== "format") throw new InvalidArgumentError("the first AudioStream message must be the format header");
    const room = this.room!;
    const userId = this.userId!;
    this.shared.deps.audio.checkFormat(message.value);
    room.setAudioFormat(userId, message.value);
    this.releaseSlot = this.shared.limiter.acquire(userId);
    this.shared.deps.rooms.streamOpened(room, userId);
    this.sink = new FastAudioSink(this);
    this.unregister = room.addAudioSink(userId, this.sink);
    this.formatSeen = true;
  }

  protected release(): void {
    this.sink?.close();
    this.unregister?.();
    this.unregister = undefined;
    if (this.releaseSlot) {
      this.releaseSlot();
      this.releaseSlot = undefined;
      this.shared.deps.rooms.streamClosed(this.room!, this.userId!);
    }
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

  constructor(private readonly call: RawGrpcCall) {}

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

/** An AudioStreamResponse as one gRPC message (uncompressed). */
function encodeResponse(message: AudioStreamResponse["message"]): Buffer {
  return grpcFrame(toBinary(AudioStreamResponseSchema, create(AudioStreamResponseSchema, { message })));
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
