import { readFileSync, readdirSync, statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { WavFormatError, encodeWav, parseWav } from "../../clients/shared/wav.js";

const dir = new URL("../fixtures/audio/", import.meta.url);

function chunk(id: string, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.write(id, 0, "latin1");
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body, body.length % 2 ? Buffer.alloc(1) : Buffer.alloc(0)]);
}

function riff(...chunks: Buffer[]): Buffer {
  const body = Buffer.concat([Buffer.from("WAVE", "latin1"), ...chunks]);
  const head = Buffer.alloc(8);
  head.write("RIFF", 0, "latin1");
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body]);
}

function fmt(audioFormat: number, channels: number, rate: number, bits: number, extra?: Buffer): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(audioFormat, 0);
  b.writeUInt16LE(channels, 2);
  b.writeUInt32LE(rate, 4);
  b.writeUInt32LE((rate * channels * bits) / 8, 8);
  b.writeUInt16LE((channels * bits) / 8, 12);
  b.writeUInt16LE(bits, 14);
  return extra ? Buffer.concat([b, extra]) : b;
}

describe("parseWav", () => {
  it("reads the committed fixtures: 16-bit mono at 16 kHz, one at 48 kHz, all small", () => {
    const files = readdirSync(dir).filter((f) => f.endsWith(".wav"));
    expect(files.length).toBeGreaterThanOrEqual(4);
    let total = 0;
    for (const f of files) {
      const bytes = readFileSync(new URL(f, dir));
      total += statSync(new URL(f, dir)).size;
      const wav = parseWav(bytes);
      expect(wav.channels, f).toBe(1);
      expect(wav.bitsPerSample, f).toBe(16);
      expect(wav.sampleRateHz, f).toBe(f.includes("48k") ? 48000 : 16000);
      expect(wav.durationMs, f).toBeGreaterThan(1000);
      expect(wav.pcm.length, f).toBe((wav.durationMs / 1000) * wav.sampleRateHz * 2);
    }
    expect(total).toBeLessThan(2 * 1024 * 1024);
  });

  it("round-trips encodeWav without copying the PCM on parse", () => {
    const pcm = Buffer.from([1, 0, 255, 255, 0, 128]);
    const file = encodeWav(pcm, 24000);
    const wav = parseWav(file);
    expect(wav).toMatchObject({ sampleRateHz: 24000, channels: 1, bitsPerSample: 16, durationMs: 0.125 });
    expect(Buffer.from(wav.pcm).equals(pcm)).toBe(true);
    expect(wav.pcm.buffer).toBe(file.buffer);
  });

  it("skips LIST and odd-sized chunks, and accepts WAVE_FORMAT_EXTENSIBLE with a PCM sub-format", () => {
    const extensible = Buffer.alloc(24);
    extensible.writeUInt16LE(22, 0); // cbSize
    extensible.writeUInt16LE(16, 2); // valid bits
    extensible.writeUInt16LE(1, 8); // sub-format GUID starts with 0x0001 (PCM)
    const data = Buffer.from([10, 0, 20, 0]);
    const wav = parseWav(riff(chunk("LIST", Buffer.from("abc")), chunk("fmt ", fmt(0xfffe, 1, 8000, 16, extensible)), chunk("data", data)));
    expect(wav.sampleRateHz).toBe(8000);
    expect(wav.pcm.equals(data)).toBe(true);
  });

  it("keeps whole samples when the data size runs past the end (a streamed recording)", () => {
    const file = riff(chunk("fmt ", fmt(1, 1, 16000, 16)), chunk("data", Buffer.from([1, 0, 2, 0, 3])));
    file.writeUInt32LE(0xffffffff, file.length - 5 - 1 - 4); // data size field
    const wav = parseWav(file.subarray(0, file.length - 1));
    expect([...wav.pcm]).toEqual([1, 0, 2, 0]);
  });

  it("names what is wrong", () => {
    expect(() => parseWav(Buffer.from("not a wav file at all"))).toThrow(new WavFormatError("not a RIFF/WAVE file"));
    expect(() => parseWav(riff(chunk("data", Buffer.alloc(4)), chunk("fmt ", fmt(1, 1, 16000, 16))))).toThrow(/data chunk comes before its fmt/);
    expect(() => parseWav(riff(chunk("fmt ", fmt(3, 1, 16000, 32)), chunk("data", Buffer.alloc(8))))).toThrow(/format code 3 is not integer PCM/);
    expect(() => parseWav(riff(chunk("fmt ", fmt(1, 1, 16000, 16))))).toThrow(/no data chunk/);
  });
});
