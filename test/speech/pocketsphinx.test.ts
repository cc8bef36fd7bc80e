import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { createResampler } from "../../src/audio/resampler.js";
import { createPocketSphinxEngine, detectPocketSphinx, type PocketSphinxEngine, type PocketSphinxOptions } from "../../src/speech/pocketsphinx.js";
import type { RecognisedSpeech } from "../../src/speech/speech-engine.js";
import { fixture, frames, recordSpeech, silence, type SpeechRecorder } from "../support/speech.js";

const participant = { roomId: "room-1", userId: "user-1" };
const engines: PocketSphinxEngine[] = [];

function start(options: PocketSphinxOptions = {}): { engine: PocketSphinxEngine; rec: SpeechRecorder } {
  const rec = recordSpeech();
  const engine = createPocketSphinxEngine(participant, rec, options);
  engines.push(engine);
  return { engine, rec };
}

function writeAll(engine: PocketSphinxEngine, pcm: Buffer): void {
  for (const f of frames(pcm)) engine.write(f);
}

/** Writes 20 ms frames on a wall-clock schedule, like a microphone. */
async function writeRealTime(engine: PocketSphinxEngine, pcm: Buffer): Promise<void> {
  const t0 = performance.now();
  let ms = 0;
  for (const f of frames(pcm)) {
    const wait = t0 + ms - performance.now();
    if (wait > 1) await sleep(wait);
    engine.write(f);
    ms += 20;
  }
}

const words = (s: RecognisedSpeech): string[] => s.words.map((w) => w.text);
const allText = (finals: RecognisedSpeech[]): string => finals.map((f) => f.text).join(" | ");

function expectWellFormed(s: RecognisedSpeech): void {
  expect(s.isFinal).toBe(true);
  expect(s.text).toBe(words(s).join(" "));
  expect(s.confidence).toBeGreaterThanOrEqual(0);
  expect(s.confidence).toBeLessThanOrEqual(1);
  expect(s.startMs).toBe(s.words[0]!.startMs);
  expect(s.endMs).toBe(s.words[s.words.length - 1]!.endMs);
  let previousEnd = 0;
  for (const w of s.words) {
    expect(w.text).not.toMatch(/^<|^\[|^\+|\(\d+\)$/);
    expect(w.endMs).toBeGreaterThanOrEqual(w.startMs);
    expect(w.startMs).toBeGreaterThanOrEqual(previousEnd - 10);
    expect(w.confidence).toBeGreaterThanOrEqual(0);
    expect(w.confidence).toBeLessThanOrEqual(1);
    previousEnd = w.endMs;
  }
}

afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.stop()));
});

describe("detectPocketSphinx", () => {
  it("finds the Debian packages installed on this machine", async () => {
    expect(await detectPocketSphinx()).toEqual({ available: true, missing: [], message: "PocketSphinx is installed" });
  });

  it("says which Debian package is missing when the binary is absent", async () => {
    const found = await detectPocketSphinx({ binary: "/nonexistent/pocketsphinx_continuous" });
    expect(found.available).toBe(false);
    expect(found.missing).toEqual(["pocketsphinx"]);
    expect(found.message).toContain("local speech needs Debian packages pocketsphinx pocketsphinx-en-us");
  });

  it("says so when the model is absent", async () => {
    const empty = await mkdtemp(join(tmpdir(), "no-model-"));
    try {
      const found = await detectPocketSphinx({ modelDir: empty });
      expect(found).toMatchObject({ available: false, missing: ["pocketsphinx-en-us"] });
    } finally {
      await rm(empty, { recursive: true });
    }
  });
});

describe("PocketSphinx engine", () => {
  it("recognises a dialogue streamed faster than real time: amounts and the trigger word", async () => {
    const { engine, rec } = start({ maxQueuedBytes: 16 * 1024 * 1024 });
    const offer = fixture("provider-offer-16k");
    const deal = fixture("client-deal-16k");
    writeAll(engine, silence(500));
    writeAll(engine, offer.pcm);
    writeAll(engine, silence(1000));
    writeAll(engine, deal.pcm);
    engine.flush();
    const [first, second] = await rec.until(() => rec.finals.length >= 2 && rec.finals);
    expect(words(first!)).toEqual(expect.arrayContaining(["hundred", "twenty", "pounds"]));
    expect(words(second!)).toContain("deal");
    for (const f of rec.finals) expectWellFormed(f);
    // Timings are on the participant's timeline: "deal" lies inside the deal line.
    const dealAt = 500 + offer.durationMs + 1000;
    const dealWord = second!.words.find((w) => w.text === "deal")!;
    expect(dealWord.startMs).toBeGreaterThanOrEqual(dealAt);
    expect(dealWord.endMs).toBeLessThanOrEqual(dealAt + deal.durationMs);
    expect(first!.startMs).toBeGreaterThanOrEqual(500);
    expect(first!.endMs).toBeLessThanOrEqual(500 + offer.durationMs);
    expect(rec.errors).toEqual([]);
    expect(engine.droppedBytes).toBe(0);
  });

  it("ends an utterance on silence when fed in real time (no flush)", async () => {
    const { engine, rec } = start();
    await writeRealTime(engine, Buffer.concat([silence(200), fixture("client-handshake-16k").pcm, silence(900)]));
    // The pause after "Handshake." is longer than the end-of-utterance silence: two finals.
    const finals = await rec.until(() => rec.finals.some((f) => words(f).includes("pounds")) && rec.finals);
    expect(finals.flatMap(words)).toEqual(expect.arrayContaining(["handshake", "hundred", "twenty", "pounds"]));
    for (const f of finals) expectWellFormed(f);
  });

  it("flush commits the current utterance while the engine keeps running", async () => {
    const { engine, rec } = start();
    writeAll(engine, fixture("provider-offer-16k").pcm);
    engine.flush();
    const final = await rec.until(() => rec.finals[0]);
    expect(words(final)).toEqual(expect.arrayContaining(["boiler", "hundred", "twenty", "pounds"]));
    // Still listening after the flush.
    writeAll(engine, fixture("client-deal-16k").pcm);
    engine.flush();
    const next = await rec.until(() => rec.finals[1]);
    expect(words(next)).toContain("deal");
    expect(next.startMs).toBeGreaterThanOrEqual(final.endMs);
  });

  it("still runs on Debian's full language model when asked (SPEECH_LANGUAGE_MODEL=debian)", async () => {
    const { engine, rec } = start({ languageModel: "debian" });
    writeAll(engine, fixture("provider-offer-16k").pcm);
    engine.flush();
    const final = await rec.until(() => rec.finals[0]);
    expect(words(final)).toEqual(expect.arrayContaining(["boiler", "hundred", "twenty", "pounds"]));
  });

  it("recognises 48 kHz audio after the resampler", async () => {
    const { engine, rec } = start();
    const line = fixture("provider-parts-48k");
    expect(line.sampleRateHz).toBe(48000);
    const resampler = createResampler(48000, 16000);
    // 20 ms frames at 48 kHz, as a client would send them.
    for (let at = 0; at < line.pcm.length; at += 1920) engine.write(resampler.process(line.pcm.subarray(at, at + 1920)));
    engine.write(resampler.flush());
    engine.flush();
    const final = await rec.until(() => rec.finals[0]);
    expect(words(final)).toEqual(expect.arrayContaining(["forty", "pounds", "parts"]));
  });

  it("hears nothing while muted, yet keeps the participant's clock", async () => {
    const { engine, rec } = start();
    const deal = fixture("client-deal-16k");
    engine.setMuted(true);
    writeAll(engine, deal.pcm);
    engine.setMuted(false);
    writeAll(engine, silence(300));
    writeAll(engine, fixture("provider-offer-16k").pcm);
    engine.flush();
    const final = await rec.until(() => rec.finals[0]);
    expect(words(final)).toEqual(expect.arrayContaining(["hundred", "twenty", "pounds"]));
    expect(words(final)).not.toContain("shake");
    expect(final.startMs).toBeGreaterThanOrEqual(deal.durationMs + 300);
    await engine.stop();
    expect(allText(rec.finals)).not.toMatch(/shake/);
  });

  it("muting commits what was said before the mute", async () => {
    const { engine, rec } = start();
    writeAll(engine, fixture("client-deal-16k").pcm);
    engine.setMuted(true);
    const final = await rec.until(() => rec.finals[0]);
    expect(words(final)).toContain("deal");
  });

  it("stop lets the recogniser finish the last utterance, then goes quiet; safe twice", async () => {
    const { engine, rec } = start();
    writeAll(engine, fixture("client-deal-16k").pcm);
    await Promise.all([engine.stop(), engine.stop()]);
    expect(allText(rec.finals)).toContain("deal");
    const count = rec.finals.length;
    writeAll(engine, fixture("client-deal-16k").pcm);
    engine.flush();
    await engine.stop();
    expect(rec.finals.length).toBe(count);
    expect(rec.errors).toEqual([]);
  });

  it("never blocks the writer: past the queue bound audio is dropped and counted", () => {
    const { engine } = start({ maxQueuedBytes: 32_000 });
    // 60 s of audio in one synchronous burst; the recogniser cannot take it that fast.
    const second = Buffer.alloc(32000);
    for (let i = 0; i < second.length; i += 2) second.writeInt16LE(i % 64 < 32 ? 3000 : -3000, i);
    for (let i = 0; i < 60; i++) writeAll(engine, second);
    expect(engine.droppedBytes).toBeGreaterThan(0);
    expect(engine.droppedWrites).toBeGreaterThan(0);
  });

  it("reports a missing binary with the Debian packages to install, and does not retry", async () => {
    const { engine, rec } = start({ binary: "/nonexistent/pocketsphinx_continuous" });
    const error = await rec.until(() => rec.errors[0]);
    expect(error).toEqual({
      code: "engine_unavailable",
      message: expect.stringContaining("local speech needs Debian packages pocketsphinx pocketsphinx-en-us"),
      retryable: false,
    });
    writeAll(engine, fixture("client-deal-16k").pcm);
    engine.flush();
    await engine.stop();
    expect(rec.errors).toHaveLength(1);
  });

  it("restarts a recogniser that dies, then gives up after maxRestarts", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fake-sphinx-"));
    const binary = join(dir, "pocketsphinx_continuous");
    await writeFile(binary, "#!/bin/sh\necho 'FATAL: broken model' >&2\nexit 3\n");
    await chmod(binary, 0o755);
    try {
      const { rec } = start({ binary, maxRestarts: 2 });
      await rec.until(() => rec.errors.some((e) => !e.retryable));
      expect(rec.errors.map((e) => [e.code, e.retryable])).toEqual([
        ["engine_restarting", true],
        ["engine_restarting", true],
        ["engine_failed", false],
      ]);
    } finally {
      await rm(dir, { recursive: true });
    }
  });
});

describe("PocketSphinx engine without a model", () => {
  it("reports the missing model package after the factory returns", async () => {
    const empty = await mkdtemp(join(tmpdir(), "no-model-"));
    try {
      const rec = recordSpeech();
      const engine = createPocketSphinxEngine(participant, rec, { modelDir: empty });
      expect(rec.errors).toEqual([]);
      const error = await rec.until(() => rec.errors[0]);
      expect(error).toMatchObject({ code: "engine_unavailable", retryable: false });
      expect(error.message).toContain("pocketsphinx-en-us");
      await engine.stop();
    } finally {
      await rm(empty, { recursive: true });
    }
  });
});
