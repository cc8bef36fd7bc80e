import type { DeviceTranscript } from "../../gen/handshake/v1/audio_pb.js";

/**
 * A recognised utterance or part of one, before the room numbers and broadcasts it: the fields of
 * the wire's DeviceTranscript, so server speech and device speech are one shape.
 */
export type RecognisedSpeech = Pick<DeviceTranscript, "text" | "isFinal" | "startMs" | "endMs" | "words" | "confidence">;

/** A failure the room shows on the panel; `retryable` says whether the engine keeps trying. */
export interface SpeechError {
  code: string;
  message: string;
  retryable: boolean;
}

/** Listeners a speech engine calls. */
export interface SpeechEvents {
  onPartial(speech: RecognisedSpeech): void;
  onFinal(speech: RecognisedSpeech): void;
  onError(error: SpeechError): void;
}

/**
 * Speech to text for one participant. Takes PCM16LE mono at 16 kHz (the audio stage resamples),
 * emits partials and finals. One instance per participant; `stop` is safe to call twice.
 */
export interface SpeechEngine {
  readonly name: string;
  /** Feeds 16 kHz PCM16LE mono; never blocks the caller (the relay must not wait on speech). */
  write(pcm: Buffer): void;
  /** Commits the current utterance now. */
  flush(): void;
  /** Mute: keep the connection alive but send no audio (keepalive where the vendor needs it). */
  setMuted(muted: boolean): void;
  stop(): Promise<void>;
}

/** Makes a speech engine for a participant, or says why none is available. */
export type SpeechEngineFactory = (participant: { roomId: string; userId: string }, events: SpeechEvents) => SpeechEngine;
