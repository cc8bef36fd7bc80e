/**
 * The few bytes of gRPC and protobuf the load generator writes and reads by hand, so that the
 * generator costs as little CPU per frame as possible (it shares the machine with the server).
 * Messages other than audio frames are encoded with protobuf-es; they are not on the hot path.
 */

/** Path of the AudioStream method. */
export const AUDIO_STREAM_PATH = "/handshake.v1.RoomService/AudioStream";

/** Wraps a protobuf message in a gRPC length-prefixed message (uncompressed). */
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

/** Where the last `readVarint` ended. */
export let varintEnd = 0;

/** Reads a varint at buf[p] as a number (exact below 2^53); -1 when cut off. */
export function readVarint(buf: Uint8Array, p: number, end: number): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (p >= end) return -1;
    const byte = buf[p++]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      varintEnd = p;
      return value;
    }
    scale *= 128;
  }
  return -1;
}

/**
 * One AudioStreamRequest{frame} as a gRPC message: field 2 holding an AudioFrame with `seq`,
 * `pcm` and `captured_at_us` (the send time, which the receiving peer subtracts from its clock).
 * The response's `peer_frame` is field 2 as well, so the same bytes come back from the server.
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

/** What `parseFrame` found; one object reused for every frame. */
export interface ParsedFrame {
  seq: number;
  capturedAtUs: number;
  pcmLength: number;
}

/**
 * Reads an AudioStreamResponse body at buf[start, end) into `out` when it is a `peer_frame`;
 * returns false for anything else (the peer's format).
 */
export function parseFrame(buf: Uint8Array, start: number, end: number, out: ParsedFrame): boolean {
  if (buf[start] !== 0x12) return false;
  const frameLength = readVarint(buf, start + 1, end);
  if (frameLength < 0) return false;
  let p = varintEnd;
  const stop = Math.min(end, p + frameLength);
  out.seq = 0;
  out.capturedAtUs = 0;
  out.pcmLength = 0;
  while (p < stop) {
    const tag = buf[p++];
    if (tag === 0x08) out.seq = readVarint(buf, p, stop);
    else if (tag === 0x18) out.capturedAtUs = readVarint(buf, p, stop);
    else if (tag === 0x12) {
      out.pcmLength = readVarint(buf, p, stop);
      varintEnd += out.pcmLength;
    } else return false;
    p = varintEnd;
  }
  return true;
}

/**
 * Splits a stream of bytes into gRPC messages and calls `onMessage(buf, start, end)` with each
 * message's body; a message split over chunks is joined once it is whole.
 */
export class GrpcMessageReader {
  private held: Buffer | undefined;

  constructor(private readonly onMessage: (buf: Buffer, start: number, end: number) => void) {}

  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.held) {
      buf = Buffer.concat([this.held, chunk]);
      this.held = undefined;
    }
    let off = 0;
    while (buf.length - off >= 5) {
      const end = off + 5 + buf.readUInt32BE(off + 1);
      if (end > buf.length) break;
      this.onMessage(buf, off + 5, end);
      off = end;
    }
    if (off < buf.length) this.held = buf.subarray(off);
  }
}

/** Microseconds on this process's clock (Unix epoch based, sub-millisecond). */
export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}
