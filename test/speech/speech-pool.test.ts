import { describe, expect, it } from "vitest";
import type { SpeechError, SpeechEvents } from "../../src/speech/speech-engine.js";
import { boundSpeechEngines, SPEECH_BUSY_MESSAGE } from "../../src/speech/speech-pool.js";
import { createFakeSpeechFactory } from "../../src/speech/testing/fake-speech-engine.js";

/** Events that record errors only. */
function recorder(): SpeechEvents & { errors: SpeechError[] } {
  const errors: SpeechError[] = [];
  return { errors, onPartial: () => {}, onFinal: () => {}, onError: (e) => errors.push(e) };
}

describe("bounded speech engines (SPEECH_MAX_PROCESSES)", () => {
  it("makes at most `max` engines; the next participant is told speech is busy, and a stopped engine frees its slot", async () => {
    const fakes = createFakeSpeechFactory();
    const pool = boundSpeechEngines(fakes.factory, 2);
    const a = pool.factory({ roomId: "r1", userId: "a" }, recorder());
    pool.factory({ roomId: "r1", userId: "b" }, recorder());
    const third = recorder();
    const busy = pool.factory({ roomId: "r2", userId: "c" }, third);
    expect(fakes.engines).toHaveLength(2);
    expect(pool.live).toBe(2);
    // The busy engine takes audio without a process and says so once, after the factory returned.
    busy.write(Buffer.alloc(320));
    expect(third.errors).toEqual([]);
    await Promise.resolve();
    expect(third.errors).toEqual([{ code: "speech_busy", message: SPEECH_BUSY_MESSAGE, retryable: false }]);

    await a.stop();
    await a.stop();
    expect(pool.live).toBe(1);
    pool.factory({ roomId: "r2", userId: "d" }, recorder());
    expect(fakes.engines).toHaveLength(3);
    expect(fakes.engines[2]?.participant.userId).toBe("d");
  });

  it("passes audio, flush and mute through to the engine it wraps", () => {
    const fakes = createFakeSpeechFactory();
    const engine = boundSpeechEngines(fakes.factory, 1).factory({ roomId: "r", userId: "a" }, recorder());
    engine.write(Buffer.alloc(64));
    engine.flush();
    engine.setMuted(true);
    const fake = fakes.engines[0]!;
    expect([fake.bytesHeard, fake.flushes, fake.muted]).toEqual([64, 1, true]);
  });

  it("a factory that throws gives its slot back", () => {
    const pool = boundSpeechEngines(createFakeSpeechFactory({ unavailable: "no recogniser" }).factory, 1);
    expect(() => pool.factory({ roomId: "r", userId: "a" }, recorder())).toThrow("no recogniser");
    expect(pool.live).toBe(0);
  });
});
