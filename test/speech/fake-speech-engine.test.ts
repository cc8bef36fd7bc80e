import { describe, expect, it } from "vitest";
import { createFakeSpeechFactory } from "../../src/speech/testing/fake-speech-engine.js";
import { recordSpeech } from "../support/speech.js";

describe("createFakeSpeechFactory", () => {
  it("records what it is fed and emits scripted finals on flush", async () => {
    const fake = createFakeSpeechFactory({ finalsOnFlush: { alice: ["I can fix the boiler for 120 pounds", "deal"] } });
    const rec = recordSpeech();
    const engine = fake.factory({ roomId: "r", userId: "alice" }, rec);
    expect(fake.engineFor("alice")).toBe(engine);
    engine.write(Buffer.alloc(32000));
    engine.setMuted(true);
    engine.write(Buffer.alloc(640));
    engine.setMuted(false);
    engine.flush();
    expect(rec.finals[0]).toMatchObject({ text: "I can fix the boiler for 120 pounds", isFinal: true, endMs: 1020 });
    expect(rec.finals[0]!.words.map((w) => w.text)).toEqual(["I", "can", "fix", "the", "boiler", "for", "120", "pounds"]);
    engine.flush();
    engine.flush();
    expect(rec.finals.map((f) => f.text)).toEqual(["I can fix the boiler for 120 pounds", "deal"]);
    const fed = fake.engineFor("alice")!;
    expect([fed.bytesHeard, fed.bytesMuted, fed.flushes]).toEqual([32000, 640, 3]);
    fed.partial("hel");
    fed.error({ code: "x", message: "X.", retryable: true });
    expect(rec.partials[0]).toMatchObject({ text: "hel", isFinal: false });
    expect(rec.errors).toEqual([{ code: "x", message: "X.", retryable: true }]);
    await Promise.all([engine.stop(), engine.stop()]);
    fed.final("late");
    expect(rec.finals).toHaveLength(2);
    expect(fed.stopCalls).toBe(2);
  });

  it("can refuse to make an engine", () => {
    const fake = createFakeSpeechFactory({ unavailable: "local speech needs Debian packages pocketsphinx pocketsphinx-en-us" });
    expect(() => fake.factory({ roomId: "r", userId: "bob" }, recordSpeech())).toThrow(/pocketsphinx/);
  });
});
