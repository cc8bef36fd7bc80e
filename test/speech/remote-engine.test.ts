import { describe, expect, it } from "vitest";
import { SpeechEngineError } from "../../src/speech/remote-engine.js";
import { Timeline } from "../../src/speech/timeline.js";

describe("SpeechEngineError", () => {
  it("converts to the plain SpeechError the room shows", () => {
    const err = new SpeechEngineError("rate_limited", "Slow down.", true, { retryAfterMs: 2000 });
    expect(err.toSpeechError()).toEqual({ code: "rate_limited", message: "Slow down.", retryable: true });
    expect(err.retryAfterMs).toBe(2000);
    expect(err.name).toBe("SpeechEngineError");
  });
});

describe("Timeline", () => {
  it("maps engine stream positions to participant positions across gaps and insertions", () => {
    const t = new Timeline();
    t.heard(0, 100); // participant 0..100 at stream 0..100
    t.heard(100, 50); // contiguous: same run
    t.inserted(30); // padding at stream 150..180
    t.heard(400, 100); // participant jumped (muted) to 400, at stream 180..280
    expect(t.streamPosition).toBe(280);
    expect(t.toParticipant(0)).toBe(0);
    expect(t.toParticipant(120)).toBe(120);
    expect(t.toParticipant(165)).toBe(150); // inside padding: clamps to the audio before it
    expect(t.toParticipant(180)).toBe(400);
    expect(t.toParticipant(250)).toBe(470);
    t.reset();
    expect(t.streamPosition).toBe(0);
    t.heard(1000, 10);
    expect(t.toParticipant(5)).toBe(1005);
  });

  it("keeps a bounded number of runs", () => {
    const t = new Timeline(4);
    for (let i = 0; i < 10; i++) t.heard(i * 100, 10); // never contiguous
    expect(t.toParticipant(95)).toBe(905);
    // The oldest runs are forgotten: early positions map to the oldest run kept.
    expect(t.toParticipant(0)).toBe(600);
  });
});
