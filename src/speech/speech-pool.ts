import type { SpeechEngine, SpeechEngineFactory } from "./speech-engine.js";

/** What a participant beyond the pool is told on the panel. */
export const SPEECH_BUSY_MESSAGE = "speech busy: send on-device transcripts";

/** A bounded factory and how many of its engines are live, for tests and metrics. */
export interface BoundedSpeechFactory {
  factory: SpeechEngineFactory;
  /** Engines live now (a stopped engine counts until its process has exited). */
  readonly live: number;
}

/**
 * Caps the engines of `factory` alive at once at `max`: each local recogniser is its own process
 * (about 20 MB RSS, 11 MB of its own with the money language model; 90 MB with Debian's full one). A participant beyond the cap gets an engine
 * that takes no audio and reports `speech_busy` (not retried); their device transcripts still work.
 */
export function boundSpeechEngines(factory: SpeechEngineFactory, max: number): BoundedSpeechFactory {
  let live = 0;
  const bounded: SpeechEngineFactory = (participant, events) => {
    if (live >= max) return busyEngine(events.onError);
    live++;
    let engine: SpeechEngine;
    try {
      engine = factory(participant, events);
    } catch (err) {
      live--;
      throw err;
    }
    let stopped: Promise<void> | undefined;
    return {
      get name() {
        return engine.name;
      },
      write: (pcm) => engine.write(pcm),
      flush: () => engine.flush(),
      setMuted: (muted) => engine.setMuted(muted),
      // The slot is free once the process is gone, not when it was asked to go.
      stop: () => (stopped ??= engine.stop().finally(() => live--)),
    };
  };
  return {
    factory: bounded,
    get live() {
      return live;
    },
  };
}

/** An engine that only says it is busy, after the factory returned (as every engine reports). */
function busyEngine(onError: Parameters<SpeechEngineFactory>[1]["onError"]): SpeechEngine {
  queueMicrotask(() => onError({ code: "speech_busy", message: SPEECH_BUSY_MESSAGE, retryable: false }));
  return { name: "busy", write: () => {}, flush: () => {}, setMuted: () => {}, stop: async () => {} };
}
