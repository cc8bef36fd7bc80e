import { readFileSync } from "node:fs";
import { parseWav } from "../../clients/shared/wav.js";
import type { RecognisedSpeech, SpeechError, SpeechEvents } from "../../src/speech/speech-engine.js";

/** What an engine reported, with a way to await the next matching report. */
export interface SpeechRecorder extends SpeechEvents {
  partials: RecognisedSpeech[];
  finals: RecognisedSpeech[];
  errors: SpeechError[];
  /** Resolves once `check` holds (checked now and after every report); vitest's timeout bounds it. */
  until<T>(check: () => T | undefined | false): Promise<T>;
}

/** Records speech events; `until` lets a test await an event instead of sleeping. */
export function recordSpeech(): SpeechRecorder {
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...waiters]) w();
  };
  const rec: SpeechRecorder = {
    partials: [],
    finals: [],
    errors: [],
    onPartial: (s) => {
      rec.partials.push(s);
      notify();
    },
    onFinal: (s) => {
      rec.finals.push(s);
      notify();
    },
    onError: (e) => {
      rec.errors.push(e);
      notify();
    },
    until<T>(check: () => T | undefined | false): Promise<T> {
      return new Promise<T>((resolve) => {
        const attempt = (): void => {
          const v = check();
          if (v !== undefined && v !== false) {
            waiters.delete(attempt);
            resolve(v);
          }
        };
        waiters.add(attempt);
        attempt();
      });
    },
  };
  return rec;
}

/** PCM16LE 16 kHz (or the file's rate) of a committed fixture. */
export function fixture(name: string): { pcm: Buffer; sampleRateHz: number; durationMs: number } {
  const wav = parseWav(readFileSync(new URL(`../fixtures/audio/${name}.wav`, import.meta.url)));
  return { pcm: wav.pcm, sampleRateHz: wav.sampleRateHz, durationMs: wav.durationMs };
}

/** Digital silence, `ms` long at 16 kHz. */
export function silence(ms: number): Buffer {
  return Buffer.alloc(Math.round(ms * 16) * 2);
}

/** Splits PCM into frames of `frameMs` at 16 kHz (the room's typical 20 ms). */
export function frames(pcm: Buffer, frameMs = 20): Buffer[] {
  const size = frameMs * 32;
  const out: Buffer[] = [];
  for (let i = 0; i < pcm.length; i += size) out.push(pcm.subarray(i, i + size));
  return out;
}
