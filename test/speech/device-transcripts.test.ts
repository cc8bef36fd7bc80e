import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { DeviceTranscriptSchema } from "../../gen/handshake/v1/audio_pb.js";
import { TranscriptInputError, toRecognisedSpeech } from "../../src/speech/device-transcripts.js";

const transcript = (init: MessageInitShape<typeof DeviceTranscriptSchema>) =>
  create(DeviceTranscriptSchema, { text: "deal, let's shake on it", isFinal: true, startMs: 1000, endMs: 2500, confidence: 0.9, ...init });

describe("toRecognisedSpeech", () => {
  it("turns a valid device transcript into recognised speech, words included", () => {
    const speech = toRecognisedSpeech(
      transcript({
        text: "  deal  ",
        words: [{ text: "deal", startMs: 1000, endMs: 1400, confidence: 0.8 }],
      }),
    );
    expect(speech).toMatchObject({ text: "deal", isFinal: true, startMs: 1000, endMs: 2500 });
    expect(speech.confidence).toBeCloseTo(0.9, 5);
    expect(speech.words.map((w) => [w.text, w.startMs, w.endMs])).toEqual([["deal", 1000, 1400]]);
  });

  it("keeps partials as partials and allows a zero-length segment", () => {
    const speech = toRecognisedSpeech(transcript({ isFinal: false, startMs: 5, endMs: 5, confidence: 0 }));
    expect(speech.isFinal).toBe(false);
    expect(speech.endMs).toBe(5);
  });

  it("counts characters, not UTF-16 units: 4,000 emoji fit", () => {
    expect(toRecognisedSpeech(transcript({ text: "🤝".repeat(4000) })).text.length).toBe(8000);
    expect(() => toRecognisedSpeech(transcript({ text: "a".repeat(4001) }))).toThrow(/longer than 4000 characters/);
  });

  it.each([
    ["empty text", { text: "   " }, "transcript text is empty"],
    ["end before start", { startMs: 3000, endMs: 2000 }, "transcript ends (2000 ms) before it starts (3000 ms)"],
    ["confidence above 1", { confidence: 1.5 }, "transcript confidence 1.5 is outside [0, 1]"],
    ["negative confidence", { confidence: -0.25 }, "transcript confidence -0.25 is outside [0, 1]"],
    ["NaN confidence", { confidence: Number.NaN }, "transcript confidence NaN is outside [0, 1]"],
    ["a word without text", { words: [{ text: " ", startMs: 0, endMs: 1 }] }, "word 0 has no text"],
    ["a word ending before it starts", { words: [{ text: "a", startMs: 0, endMs: 1 }, { text: "b", startMs: 9, endMs: 8 }] }, "word 1 ends (8 ms) before it starts (9 ms)"],
    ["a word with a bad confidence", { words: [{ text: "a", startMs: 0, endMs: 1, confidence: 2 }] }, "word 0 confidence 2 is outside [0, 1]"],
  ] as const)("refuses %s with TranscriptInputError", (_what, init, message) => {
    let error: unknown;
    try {
      toRecognisedSpeech(transcript(init as MessageInitShape<typeof DeviceTranscriptSchema>));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TranscriptInputError);
    expect((error as Error).name).toBe("TranscriptInputError");
    expect((error as Error).message).toBe(message);
  });

  it("bounds the number of word timings", () => {
    const words = Array.from({ length: 2001 }, (_, i) => ({ text: "w", startMs: i, endMs: i }));
    expect(() => toRecognisedSpeech(transcript({ words }))).toThrow(/2001 word timings; at most 2000/);
  });
});
