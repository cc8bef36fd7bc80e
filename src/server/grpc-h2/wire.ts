/**
 * The few bytes of gRPC and protobuf read and written by hand on the audio hot path: the 5-byte
 * gRPC message prefix, varints, and an audio frame message parsed in place. The one copy: the
 * fast path (src/server/grpc-h2) and the load generator (bench/) both use it, so it imports
 * nothing but the platform.
 */

/** Path of the AudioStream method. */
export const AUDIO_STREAM_PATH = "/handshake.v1.RoomService/AudioStream";
/** Path of the PanelStream method. */
export const PANEL_STREAM_PATH = "/handshake.v1.RoomService/PanelStream";

/** Wraps a protobuf message in a gRPC length-prefixed message (flag byte 0: uncompressed). */
export function grpcMessage(body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = 0;
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
}

/** Bytes a varint of `value` (a non-negative integer below 2^53) takes. */
export function varintSize(value: number): number {
  let n = 1;
  while (value >= 128) {
    value = Math.floor(value / 128);
    n++;
  }
  return n;
}

/** Writes `value` as a varint at buf[p]; returns the offset after it. */
export function writeVarint(buf: Buffer, p: number, value: number): number {
  while (value >= 128) {
    buf[p++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  buf[p++] = value;
  return p;
}

/** Where the last `readVarint` ended (a module variable, so reading allocates nothing). */
export let varintEnd = 0;

/**
 * Reads a varint at buf[p] below 2^53 as a number; -1 when it is cut off, longer than 8 bytes or
 * not exactly representable (negative int64s, huge values), so callers fall back to a full decoder.
 */
export function readVarint(buf: Uint8Array, p: number, end: number): number {
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

/**
 * One AudioStreamRequest{frame} as a gRPC message: field 2 holding an AudioFrame with `seq`,
 * `pcm` and `captured_at_us`. The response's `peer_frame` is field 2 as well, so the server can
 * forward these exact bytes to the peer.
 */
export function encodeFrameMessage(seq: number, pcm: Uint8Array, capturedAtUs: number): Buffer {
  const seqField = seq === 0 ? 0 : 1 + varintSize(seq);
  const pcmField = 1 + varintSize(pcm.length) + pcm.length;
  const timeField = 1 + varintSize(capturedAtUs);
  const frameLength = seqField + pcmField + timeField;
  const messageLength = 1 + varintSize(frameLength) + frameLength;
  const out = Buffer.allocUnsafe(5 + messageLength);
  out[0] = 0;
  out.writeUInt32BE(messageLength, 1);
  let p = 5;
  out[p++] = 0x12;
  p = writeVarint(out, p, frameLength);
  if (seq !== 0) {
    out[p++] = 0x08;
    p = writeVarint(out, p, seq);
  }
  out[p++] = 0x12;
  p = writeVarint(out, p, pcm.length);
  out.set(pcm, p);
  p += pcm.length;
  out[p++] = 0x18;
  writeVarint(out, p, capturedAtUs);
  return out;
}

/** What `parseFrame` found; callers reuse one object for every frame. */
export interface ParsedFrame {
  seq: number;
  capturedAtUs: number;
  pcmLength: number;
  /** Offset of the PCM bytes in the buffer parsed. */
  pcmStart?: number;
}

/**
 * Parses a message body at buf[start, end) that holds only field 2, an AudioFrame (the request's
 * `frame` or the response's `peer_frame`), with the frame's fields each at most once and none
 * unknown, into `out`. Returns false for anything else, so the caller decodes it in full and no
 * valid message is refused here.
 */
export function parseFrame(buf: Uint8Array, start: number, end: number, out: ParsedFrame): boolean {
  if (start >= end || buf[start] !== 0x12) return false;
  const frameLength = readVarint(buf, start + 1, end);
  if (frameLength < 0) return false;
  let p = varintEnd;
  if (p + frameLength !== end) return false;
  out.seq = 0;
  out.capturedAtUs = 0;
  out.pcmLength = 0;
  out.pcmStart = p;
  let seen = 0;
  while (p < end) {
    const tag = buf[p++];
    if (tag === 0x08 && (seen & 1) === 0) {
      out.seq = readVarint(buf, p, end);
      if (out.seq < 0) return false;
      seen |= 1;
    } else if (tag === 0x12 && (seen & 2) === 0) {
      const length = readVarint(buf, p, end);
      if (length < 0 || varintEnd + length > end) return false;
      out.pcmStart = varintEnd;
      out.pcmLength = length;
      varintEnd += length;
      seen |= 2;
    } else if (tag === 0x18 && (seen & 4) === 0) {
      out.capturedAtUs = readVarint(buf, p, end);
      if (out.capturedAtUs < 0) return false;
      seen |= 4;
    } else {
      return false;
    }
    p = varintEnd;
  }
  return true;
}

/**
 * What a reader calls with each whole message: its body at buf[start, end) and its flag byte
 * (bit 0: compressed). Returning false stops reading the rest of the chunk.
 */
export type GrpcMessageHandler = (buf: Buffer, start: number, end: number, flags: number) => boolean | void;

/**
 * Splits a stream of bytes into gRPC messages. A message split over chunks is held and joined
 * once, when it is whole; a length prefix over `maxBytes` throws `tooLarge(length)` before any of
 * that message is held.
 */
export class GrpcMessageReader {
  /** Bytes of a message that arrived split over chunks. */
  private parts: Buffer[] = [];
  private partBytes = 0;
  /** Bytes the held message needs in all (prefix included); 0 while its prefix is incomplete. */
  private partNeeded = 0;

  constructor(
    private readonly onMessage: GrpcMessageHandler,
    private readonly maxBytes = Number.MAX_SAFE_INTEGER,
    private readonly tooLarge: (length: number) => Error = (length) => new RangeError(`message size ${length} is larger than ${maxBytes}`),
  ) {}

  /** Bytes held of a message not yet whole (non-zero when the stream ends mid-message). */
  get pendingBytes(): number {
    return this.partBytes;
  }

  /** Forgets what is held. */
  clear(): void {
    this.parts = [];
    this.partBytes = 0;
    this.partNeeded = 0;
  }

  /** Reads one chunk, calling the handler with each message it completes. */
  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.partBytes > 0) {
      this.parts.push(chunk);
      this.partBytes += chunk.length;
      if (this.partNeeded === 0) {
        // Fewer than 5 bytes were held: the length prefix itself was split.
        if (this.partBytes < 5) return;
        const head = Buffer.concat(this.parts, this.partBytes);
        this.parts = [head];
        this.expect(head);
      }
      if (this.partBytes < this.partNeeded) return;
      buf = Buffer.concat(this.parts, this.partBytes);
      this.clear();
    }
    let off = 0;
    while (buf.length - off >= 5) {
      const length = buf.readUInt32BE(off + 1);
      if (length > this.maxBytes) throw this.tooLarge(length);
      const end = off + 5 + length;
      if (end > buf.length) break;
      if (this.onMessage(buf, off + 5, end, buf[off]!) === false) return;
      off = end;
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
  private expect(head: Buffer): void {
    const length = head.readUInt32BE(1);
    if (length > this.maxBytes) {
      this.clear();
      throw this.tooLarge(length);
    }
    this.partNeeded = 5 + length;
  }
}

/**
 * Percent-encodes a status message as the gRPC spec says: only bytes outside printable ASCII,
 * and "%". (encodeURIComponent would also encode ",", ";" and others, which grpc-js, decoding
 * with decodeURI, then shows still encoded.)
 */
export function encodeGrpcMessage(message: string): string {
  return message.replace(/[^\x20-\x24\x26-\x7e]/gu, (c) => {
    try {
      return encodeURIComponent(c);
    } catch {
      return "%EF%BF%BD";
    }
  });
}
