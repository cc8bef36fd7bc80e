import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { AudioEncoding, AudioFormatSchema } from "../../gen/handshake/v1/audio_pb.js";
import { AudioFormatError } from "../../src/audio/audio-format.js";
import { createResampler, createSpeechPcmConverter } from "../../src/audio/resampler.js";

/** PCM16LE of a sine: `seconds` long at `rate`, peak `amplitude`. */
function sine(freqHz: number, rate: number, seconds: number, amplitude = 10000): Buffer {
  const n = Math.round(rate * seconds);
  const out = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) out.writeInt16LE(Math.round(amplitude * Math.sin((2 * Math.PI * freqHz * i) / rate)), i * 2);
  return out;
}

function samples(pcm: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i + 1 < pcm.length; i += 2) out.push(pcm.readInt16LE(i));
  return out;
}

/** Frequency from upward zero crossings over the middle of the signal (edges skipped). */
function frequency(xs: number[], rate: number): number {
  const from = Math.floor(xs.length * 0.1);
  const to = Math.floor(xs.length * 0.9);
  let first = -1;
  let last = -1;
  let crossings = 0;
  for (let i = from + 1; i < to; i++) {
    if (xs[i - 1]! < 0 && xs[i]! >= 0) {
      // Interpolated crossing instant.
      const t = i - 1 + -xs[i - 1]! / (xs[i]! - xs[i - 1]!);
      if (first < 0) first = t;
      else crossings++;
      last = t;
    }
  }
  return (crossings * rate) / (last - first);
}

function rms(xs: number[]): number {
  const from = Math.floor(xs.length * 0.1);
  const to = Math.floor(xs.length * 0.9);
  let sum = 0;
  for (let i = from; i < to; i++) sum += xs[i]! * xs[i]!;
  return Math.sqrt(sum / (to - from));
}

function oneShot(rate: number, pcm: Buffer): Buffer {
  const r = createResampler(rate, 16000);
  return Buffer.concat([r.process(pcm), r.flush()]);
}

describe("createResampler", () => {
  it("keeps a 1 kHz sine at 1 kHz and its level, 48 kHz → 16 kHz", () => {
    const out = samples(oneShot(48000, sine(1000, 48000, 1)));
    expect(out.length).toBe(16000);
    expect(frequency(out, 16000)).toBeCloseTo(1000, 0);
    expect(rms(out)).toBeGreaterThan((10000 / Math.SQRT2) * 0.98);
    expect(rms(out)).toBeLessThan((10000 / Math.SQRT2) * 1.02);
  });

  it.each([[8000], [24000], [44100], [48000]])("converts %i Hz to 16 kHz with the right length and pitch", (rate) => {
    const input = sine(440, rate, 0.5);
    const out = samples(oneShot(rate, input));
    expect(out.length).toBe(Math.ceil((input.length / 2) * (16000 / rate)));
    expect(Math.abs(frequency(out, 16000) - 440)).toBeLessThan(0.5);
    expect(rms(out) / (10000 / Math.SQRT2)).toBeGreaterThan(0.97);
  });

  it("filters what 16 kHz cannot hold instead of folding it back (12 kHz tone from 48 kHz)", () => {
    const out = samples(oneShot(48000, sine(12000, 48000, 0.5)));
    // Without the low-pass, 12 kHz would alias to 4 kHz at full level.
    expect(rms(out)).toBeLessThan((10000 / Math.SQRT2) * 0.01);
  });

  it("gives identical output however the stream is chunked (no clicks at chunk boundaries)", () => {
    for (const rate of [8000, 24000, 44100, 48000]) {
      const input = sine(700, rate, 0.3);
      const whole = oneShot(rate, input);
      const r = createResampler(rate, 16000);
      const parts: Buffer[] = [];
      const sizes = [1, 7, 441, 2, 160, 1000, 3, 960];
      let at = 0;
      for (let i = 0; at < input.length; i++) {
        const bytes = sizes[i % sizes.length]! * 2;
        parts.push(r.process(input.subarray(at, at + bytes)));
        at += bytes;
      }
      parts.push(r.flush());
      expect(Buffer.concat(parts).equals(whole), `${rate} Hz`).toBe(true);
    }
  });

  it("has no step at 20 ms frame boundaries: neighbouring samples differ no more than the sine's slope allows", () => {
    const rate = 44100;
    const input = sine(1000, rate, 0.2);
    const r = createResampler(rate, 16000);
    const parts: Buffer[] = [];
    for (let at = 0; at < input.length; at += 882 * 2) parts.push(r.process(input.subarray(at, at + 882 * 2)));
    const out = samples(Buffer.concat(parts));
    const maxStep = 10000 * 2 * Math.sin((Math.PI * 1000) / 16000) * 1.03;
    for (let i = 40; i < out.length; i++) expect(Math.abs(out[i]! - out[i - 1]!)).toBeLessThanOrEqual(maxStep);
  });

  it("reads input at odd byte offsets (protobuf bytes fields are views into a message)", () => {
    const input = sine(500, 48000, 0.1);
    const shifted = Buffer.alloc(input.length + 1);
    input.copy(shifted, 1);
    const view = new Uint8Array(shifted.buffer, shifted.byteOffset + 1, input.length);
    const a = createResampler(48000);
    const b = createResampler(48000);
    expect(a.process(view).equals(b.process(input))).toBe(true);
  });

  it("passes 16 kHz through without copying", () => {
    const r = createResampler(16000);
    const input = new Uint8Array(sine(300, 16000, 0.02));
    const out = r.process(input);
    expect(out.buffer).toBe(input.buffer);
    expect(out.byteOffset).toBe(input.byteOffset);
    expect(out.byteLength).toBe(input.byteLength);
    expect(r.flush().length).toBe(0);
  });

  it("refuses odd byte counts and impossible rates", () => {
    expect(() => createResampler(48000).process(new Uint8Array(3))).toThrow(AudioFormatError);
    expect(() => createResampler(0)).toThrow(AudioFormatError);
  });
});

describe("createSpeechPcmConverter", () => {
  it("checks the format and keeps one resampler per stream", () => {
    const convert = createSpeechPcmConverter(create(AudioFormatSchema, { encoding: AudioEncoding.PCM16LE, sampleRateHz: 48000, channels: 1 }));
    const input = sine(1000, 48000, 0.2);
    let total = 0;
    for (let at = 0; at < input.length; at += 1920) total += convert(input.subarray(at, at + 1920)).length;
    // All but the filter's few samples of look-ahead have come out.
    expect(total / 2).toBeGreaterThan(3200 - 20);
    expect(total / 2).toBeLessThanOrEqual(3200);
    expect(() => createSpeechPcmConverter(create(AudioFormatSchema, { encoding: AudioEncoding.PCM16LE, sampleRateHz: 22050, channels: 1 }))).toThrow(
      AudioFormatError,
    );
  });
});
