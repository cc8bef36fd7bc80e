import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { AudioEncoding, AudioFormatSchema, AudioFrameSchema } from "../../gen/handshake/v1/audio_pb.js";
import {
  AudioFormatError,
  MAX_FRAME_BYTES,
  SUPPORTED_SAMPLE_RATES_HZ,
  checkAudioFormat,
  checkAudioFrame,
  checkPcmFrame,
  pcmDurationMs,
} from "../../src/audio/audio-format.js";

const format = (init: { encoding?: AudioEncoding; sampleRateHz?: number; channels?: number }) =>
  create(AudioFormatSchema, { encoding: AudioEncoding.PCM16LE, sampleRateHz: 16000, channels: 1, ...init });

describe("checkAudioFormat", () => {
  it.each(SUPPORTED_SAMPLE_RATES_HZ.map((r) => [r]))("accepts PCM16LE mono at %i Hz", (rate) => {
    expect(checkAudioFormat(format({ sampleRateHz: rate }))).toEqual({ sampleRateHz: rate, channels: 1 });
  });

  it("refuses a missing header", () => {
    expect(() => checkAudioFormat(undefined)).toThrow(new AudioFormatError("audio format is missing"));
  });

  it("refuses an unspecified encoding", () => {
    expect(() => checkAudioFormat(format({ encoding: AudioEncoding.UNSPECIFIED }))).toThrow(/encoding 0 is not supported; only PCM16LE/);
  });

  it("refuses stereo and zero channels", () => {
    expect(() => checkAudioFormat(format({ channels: 2 }))).toThrow(/2 channels; only mono/);
    expect(() => checkAudioFormat(format({ channels: 0 }))).toThrow(/0 channels/);
  });

  it.each([[0], [22050], [16001], [96000]])("refuses %i Hz, listing the supported rates", (rate) => {
    const err = (() => {
      try {
        checkAudioFormat(format({ sampleRateHz: rate }));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(AudioFormatError);
    expect((err as Error).name).toBe("AudioFormatError");
    expect((err as Error).message).toBe(`sample rate ${rate} Hz is not supported; use one of 8000, 16000, 24000, 44100, 48000`);
  });
});

describe("checkPcmFrame / checkAudioFrame", () => {
  it("accepts even, non-empty frames up to 32,000 bytes", () => {
    expect(() => checkPcmFrame(new Uint8Array(2))).not.toThrow();
    expect(() => checkPcmFrame(new Uint8Array(MAX_FRAME_BYTES))).not.toThrow();
    expect(() => checkAudioFrame(create(AudioFrameSchema, { seq: 0n, pcm: new Uint8Array(640) }))).not.toThrow();
  });

  it("names each problem", () => {
    expect(() => checkPcmFrame(new Uint8Array(0))).toThrow(new AudioFormatError("frame is empty"));
    expect(() => checkPcmFrame(new Uint8Array(641))).toThrow(new AudioFormatError("frame has an odd byte count (641)"));
    expect(() => checkPcmFrame(new Uint8Array(32002))).toThrow(new AudioFormatError("frame has 32002 bytes; at most 32000 are allowed"));
    expect(() => checkAudioFrame(create(AudioFrameSchema, { pcm: new Uint8Array(3) }))).toThrow(AudioFormatError);
  });

  it("computes durations", () => {
    expect(pcmDurationMs(640, 16000)).toBe(20);
    expect(pcmDurationMs(96000, 48000)).toBe(1000);
  });
});
