import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { AudioStreamRequestSchema, AudioStreamResponseSchema } from "../../../gen/handshake/v1/room_service_pb.js";
import { encodeFrameMessage, GrpcMessageReader, grpcMessage, parseFrame, readVarint, varintSize, writeVarint, type ParsedFrame } from "../../../src/server/grpc-h2/wire.js";

/** The one copy of the hand-written gRPC framing, shared by the fast path and the bench. */
describe("grpc-h2 wire helpers", () => {
  it("encodes a frame message that protobuf-es reads as the request's frame and the response's peer_frame", () => {
    const pcm = new Uint8Array([1, 2, 3, 4]);
    const wire = encodeFrameMessage(300, pcm, 1_700_000_000_123_456);
    const request = fromBinary(AudioStreamRequestSchema, wire.subarray(5));
    const response = fromBinary(AudioStreamResponseSchema, wire.subarray(5));
    expect(request.message.case === "frame" && [request.message.value.seq, request.message.value.capturedAtUs]).toEqual([300n, 1_700_000_000_123_456n]);
    expect(response.message.case).toBe("peerFrame");
    const out: ParsedFrame = { seq: 0, capturedAtUs: 0, pcmLength: 0 };
    expect(parseFrame(wire, 5, wire.length, out)).toBe(true);
    expect(out).toMatchObject({ seq: 300, capturedAtUs: 1_700_000_000_123_456, pcmLength: 4 });
    expect([...wire.subarray(out.pcmStart!, out.pcmStart! + out.pcmLength)]).toEqual([1, 2, 3, 4]);
  });

  it("parses in place only what it can read exactly: other messages, repeated fields and huge varints go to the full decoder", () => {
    const out: ParsedFrame = { seq: 0, capturedAtUs: 0, pcmLength: 0 };
    const format = toBinary(AudioStreamRequestSchema, create(AudioStreamRequestSchema, { message: { case: "format", value: { sampleRateHz: 16000 } } }));
    expect(parseFrame(format, 0, format.length, out)).toBe(false);
    const big = toBinary(AudioStreamRequestSchema, create(AudioStreamRequestSchema, { message: { case: "frame", value: { seq: 2n ** 60n, pcm: new Uint8Array(2) } } }));
    expect(parseFrame(big, 0, big.length, out)).toBe(false);
    const twice = Buffer.from([0x12, 4, 0x08, 1, 0x08, 2]);
    expect(parseFrame(twice, 0, twice.length, out)).toBe(false);
    const buf = Buffer.alloc(10);
    const end = writeVarint(buf, 0, 2 ** 40 + 5);
    expect([end, varintSize(2 ** 40 + 5), readVarint(buf, 0, end)]).toEqual([6, 6, 2 ** 40 + 5]);
    expect(readVarint(buf, 0, 3)).toBe(-1);
  });

  it("splits a byte stream into messages however it is cut, and refuses a length over the limit before holding it", () => {
    const messages = [grpcMessage(new Uint8Array([9])), grpcMessage(new Uint8Array(300).fill(7)), grpcMessage(new Uint8Array(0))];
    const all = Buffer.concat(messages);
    for (const cut of [1, 3, 5, 6, 200, all.length]) {
      const seen: number[][] = [];
      const reader = new GrpcMessageReader((_buf, start, end, flags) => void seen.push([end - start, flags]));
      for (let off = 0; off < all.length; off += cut) reader.push(all.subarray(off, off + cut));
      expect({ cut, seen, pending: reader.pendingBytes }).toEqual({ cut, seen: [[1, 0], [300, 0], [0, 0]], pending: 0 });
    }
    const limited = new GrpcMessageReader(() => {}, 100, (length) => new RangeError(`too large: ${length}`));
    expect(() => limited.push(messages[1]!.subarray(0, 7))).toThrow("too large: 300");
    expect(limited.pendingBytes).toBe(0);
  });
});
