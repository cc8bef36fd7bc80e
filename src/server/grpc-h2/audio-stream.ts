import type http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import type { AudioFormat, AudioFrame } from "../../../gen/handshake/v1/audio_pb.js";
import {
  AudioStreamRequestSchema,
  AudioStreamResponseSchema,
  type AudioStreamRequest,
  type AudioStreamResponse,
} from "../../../gen/handshake/v1/room_service_pb.js";
import { InvalidArgumentError, ResourceExhaustedError } from "../../core/errors.js";
import { audioFrameCounts } from "../../core/metrics.js";
import type { AudioSink } from "../../room/room.js";
import { applyAudioMessage } from "../audio-messages.js";
import { PEER_AUDIO_QUEUE_FRAMES } from "../audio-sink.js";
import type { CallScopes, MemberScope } from "../call-scope.js";
import type { AudioInput } from "../deps.js";
import { createFastPath, RawGrpcCall, type FastPath, type FastPathOptions, type RawCallShared } from "./raw-grpc-call.js";
import { grpcMessage, parseFrame, type ParsedFrame } from "./wire.js";

/**
 * AudioStream served straight on `node:http2` instead of through connect-node (why: routing.ts).
 * A `frame` message is parsed in place and its exact bytes are forwarded:
 * `AudioStreamRequest.frame` and `AudioStreamResponse.peer_frame` are both field 2, so the
 * request's gRPC message *is* the peer's response message. Everything else about the call (the
 * format header first, device transcripts, controls, status codes, deadlines, cancellation)
 * follows the connect-node handler in room-routes.ts; authentication, membership, the stream
 * limit and the log line are the server's hooks (call-scope.ts, interceptors.ts).
 */

const METHOD = "handshake.v1.RoomService/AudioStream";
/** Bytes queued per outgoing stream before it is ended, whatever the frame count. */
const AUDIO_QUEUE_BYTES = 1024 * 1024;

/** What an AudioStream call needs besides the hooks. */
export interface AudioStreamDeps {
  scopes: CallScopes;
  audio: AudioInput;
}

/**
 * A frame parsed in place from the wire: an `AudioFrame` to the room and its sinks, plus the
 * exact gRPC message it arrived in, which a native peer's sink writes out unchanged.
 * `seq`, `capturedAtUs` and `pcm` are made only when someone reads them (a relay to native
 * peers reads none of them).
 */
export class WireAudioFrame implements AudioFrame {
  readonly $typeName = "handshake.v1.AudioFrame" as const;
  private pcmView: Uint8Array | undefined;
  constructor(
    /** The whole gRPC message (5-byte prefix and an AudioStreamRequest holding only `frame`). */
    readonly wire: Buffer,
    private readonly pcmStart: number,
    private readonly pcmLength: number,
    private readonly seqNumber: number,
    private readonly capturedAtUsNumber: number,
  ) {}
  get pcm(): Uint8Array {
    this.pcmView ??= this.pcmLength === 0 ? EMPTY : this.wire.subarray(this.pcmStart, this.pcmStart + this.pcmLength);
    return this.pcmView;
  }
  get seq(): bigint {
    return BigInt(this.seqNumber);
  }
  get capturedAtUs(): bigint {
    return BigInt(this.capturedAtUsNumber);
  }
}

/** Creates the AudioStream fast path; `options.authorize` must return the caller's member scope. */
export function createAudioFastPath(options: FastPathOptions<MemberScope>, deps: AudioStreamDeps): FastPath {
  return createFastPath(METHOD, options, (shared, stream) => new AudioCall(shared, stream, deps));
}

/** The one parse result reused for every frame (the hot path allocates only the frame). */
const parsed: ParsedFrame = { seq: 0, capturedAtUs: 0, pcmLength: 0 };

/** One AudioStream call: the format header first, then frames, transcripts and controls. */
class AudioCall extends RawGrpcCall<MemberScope> {
  private formatSeen = false;
  private sink: FastAudioSink | undefined;
  private unregister: (() => void) | undefined;
  private closeStream: (() => void) | undefined;
  /** The caller's room and user id, kept from the scope at open, and where their frames go. */
  private room: MemberScope["room"] | undefined;
  private userId = "";
  private frameInput: ((frame: AudioFrame) => void) | undefined;

  constructor(
    shared: RawCallShared<MemberScope>,
    stream: http2.ServerHttp2Stream,
    private readonly deps: AudioStreamDeps,
  ) {
    super(shared, stream);
  }

  /** One gRPC message: the AudioStreamRequest at buf[start, end), flag byte `flags`. */
  protected message(buf: Buffer, start: number, end: number, flags: number): void {
    if ((flags & 1) === 0 && this.formatSeen && parseFrame(buf, start, end, parsed)) {
      // parseFrame read the number as below 2^53, so only the payload's length is left to check.
      this.deps.audio.checkPcmBytes(parsed.pcmLength);
      // A chunk that is exactly this message (the usual case: one DATA frame per frame) is forwarded as it is.
      const wire = start === 5 && end === buf.length ? buf : buf.subarray(start - 5, end);
      this.frameInput!(new WireAudioFrame(wire, parsed.pcmStart! - (start - 5), parsed.pcmLength, parsed.seq, parsed.capturedAtUs));
      return;
    }
    const room = this.room!;
    const request = this.decode(AudioStreamRequestSchema, buf, start, end, flags);
    const apply = () => (this.formatSeen ? applyAudioMessage(room, this.userId, request.message, this.deps.audio) : this.first(request.message));
    // Inside the call's span: a transcript may trigger a deal, whose trace links to this call.
    if (this.shared.within) this.shared.within(this.values, apply);
    else apply();
  }

  /** The client ended its side: the call ends with OK, as connect-node's handler does. */
  protected requestEnded(): void {
    this.finish(undefined);
  }

  /** The stream counts from its open, so calls that never send their format header are limited too. */
  protected override opened(): void {
    this.room = this.scope.room;
    this.userId = this.scope.userId;
    this.frameInput = this.room.audioInput(this.userId);
    this.closeStream = this.deps.scopes.openStream(this.scope);
  }

  /** The first message must be the format header; then the sink listens. */
  private first(message: AudioStreamRequest["message"]): void {
    if (message.case !== "format") throw new InvalidArgumentError("the first AudioStream message must be the format header");
    const scope = this.scope;
    scope.room.setAudioFormat(scope.userId, message.value);
    this.sink = new FastAudioSink(this);
    this.unregister = scope.room.addAudioSink(scope.userId, this.sink);
    this.formatSeen = true;
  }

  protected release(): void {
    this.sink?.close();
    this.unregister?.();
    this.unregister = undefined;
    this.closeStream?.();
    this.closeStream = undefined;
  }
}

/**
 * The peer audio of one fast-path call. Frames parsed in place go out as the exact bytes they
 * came in; others (from connect-path or browser peers) are encoded. A reader that falls more than
 * PEER_AUDIO_QUEUE_FRAMES behind loses its own stream with RESOURCE_EXHAUSTED, as with
 * QueuedAudioSink. Frames behind are counted from the bytes the stream still holds (nothing per
 * frame is kept for it: no completion callback, no counter): more than that many frames of the
 * size of the one being sent.
 */
class FastAudioSink implements AudioSink {
  private closedSink = false;
  private lastFormat: AudioFormat | undefined;

  constructor(private readonly call: RawGrpcCall<MemberScope>) {}

  push(frame: AudioFrame, format: AudioFormat | undefined): void {
    if (this.closedSink) return;
    if (format && format !== this.lastFormat) {
      this.lastFormat = format;
      this.send(encodeResponse({ case: "peerFormat", value: format }));
    }
    const bytes = frame instanceof WireAudioFrame ? frame.wire : encodeResponse({ case: "peerFrame", value: frame });
    if (this.call.queuedBytes > Math.min(AUDIO_QUEUE_BYTES, PEER_AUDIO_QUEUE_FRAMES * bytes.length)) {
      this.closedSink = true;
      audioFrameCounts.dropped++;
      this.call.fail(new ResourceExhaustedError(`audio stream fell more than ${PEER_AUDIO_QUEUE_FRAMES} frames behind`));
      return;
    }
    this.send(bytes);
  }

  close(): void {
    this.closedSink = true;
  }

  private send(bytes: Uint8Array): void {
    if (!this.call.write(bytes)) this.closedSink = true;
  }
}

/** An AudioStreamResponse as one gRPC message (uncompressed). */
function encodeResponse(message: AudioStreamResponse["message"]): Buffer {
  return grpcMessage(toBinary(AudioStreamResponseSchema, create(AudioStreamResponseSchema, { message })));
}

const EMPTY = new Uint8Array(0);
