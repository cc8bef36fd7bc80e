import { create } from "@bufbuild/protobuf";
import type { DeviceTranscript } from "../../gen/handshake/v1/audio_pb.js";
import { WordTimingSchema } from "../../gen/handshake/v1/transcript_pb.js";
import type { RecognisedSpeech } from "./speech-engine.js";

/** Longest transcript text, in characters (Unicode code points), as the contract says. */
export const MAX_TRANSCRIPT_CHARS = 4000;
/** Most word timings one segment may carry; 4,000 characters hold fewer words than this. */
export const MAX_TRANSCRIPT_WORDS = 2000;

/**
 * A device transcript that breaks the contract. The message names the problem for the client;
 * the server maps this error, by name, to INVALID_ARGUMENT.
 */
export class TranscriptInputError extends Error {
  override readonly name = "TranscriptInputError";
}

/** Controls (line breaks included), line and paragraph separators, bidi embeddings, overrides and isolates. */
const FORGED_TEXT = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

function checkConfidence(value: number, what: string): void {
  if (!Number.isFinite(value) || value < 0 || value > 1) {
    throw new TranscriptInputError(`${what} confidence ${value} is outside [0, 1]`);
  }
}

/**
 * Validates a transcript segment recognised on the participant's device and turns it into the
 * form engines produce. Text is trimmed; 1–4,000 characters; end ≥ start; confidences in [0, 1].
 */
export function toRecognisedSpeech(transcript: DeviceTranscript): RecognisedSpeech {
  const text = transcript.text.trim();
  if (text.length === 0) throw new TranscriptInputError("transcript text is empty");
  // Count code points, not UTF-16 units, so emoji or CJK are not penalised twice.
  let chars = 0;
  for (const _ of text) if (++chars > MAX_TRANSCRIPT_CHARS) break;
  if (chars > MAX_TRANSCRIPT_CHARS) throw new TranscriptInputError(`transcript text is longer than ${MAX_TRANSCRIPT_CHARS} characters`);
  // Speech has no control characters or bidi overrides; text with them is forged, and it reaches contracts.
  if (FORGED_TEXT.test(text)) throw new TranscriptInputError("transcript text contains control characters or bidi overrides");
  if (transcript.endMs < transcript.startMs) {
    throw new TranscriptInputError(`transcript ends (${transcript.endMs} ms) before it starts (${transcript.startMs} ms)`);
  }
  checkConfidence(transcript.confidence, "transcript");
  if (transcript.words.length > MAX_TRANSCRIPT_WORDS) {
    throw new TranscriptInputError(`transcript has ${transcript.words.length} word timings; at most ${MAX_TRANSCRIPT_WORDS}`);
  }
  const words = transcript.words.map((w, i) => {
    const wordText = w.text.trim();
    if (wordText.length === 0) throw new TranscriptInputError(`word ${i} has no text`);
    if (FORGED_TEXT.test(wordText)) throw new TranscriptInputError(`word ${i} contains control characters or bidi overrides`);
    if (wordText.length > MAX_TRANSCRIPT_CHARS) throw new TranscriptInputError(`word ${i} is longer than ${MAX_TRANSCRIPT_CHARS} characters`);
    if (w.endMs < w.startMs) throw new TranscriptInputError(`word ${i} ends (${w.endMs} ms) before it starts (${w.startMs} ms)`);
    checkConfidence(w.confidence, `word ${i}`);
    return create(WordTimingSchema, { text: wordText, startMs: w.startMs, endMs: w.endMs, confidence: w.confidence });
  });
  return {
    text,
    isFinal: transcript.isFinal,
    startMs: transcript.startMs,
    endMs: transcript.endMs,
    words,
    confidence: transcript.confidence,
  };
}
