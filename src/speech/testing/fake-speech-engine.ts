import { create } from "@bufbuild/protobuf";
import { WordTimingSchema } from "../../../gen/handshake/v1/transcript_pb.js";
import type { RecognisedSpeech, SpeechEngine, SpeechEngineFactory, SpeechError, SpeechEvents } from "../speech-engine.js";

/** A speech engine for tests of the room: records what it is fed and says what the test scripts. */
export interface FakeSpeechEngine extends SpeechEngine {
  readonly participant: { roomId: string; userId: string };
  /** PCM bytes written while not muted (what a real engine would have heard). */
  readonly bytesHeard: number;
  /** PCM bytes written while muted. */
  readonly bytesMuted: number;
  readonly flushes: number;
  readonly muted: boolean;
  readonly stopCalls: number;
  readonly stopped: boolean;
  /** Emits a partial now; times default to the audio heard so far. */
  partial(text: string, init?: Partial<RecognisedSpeech>): void;
  /** Emits a final now, with one word timing per word unless `init.words` is given. */
  final(text: string, init?: Partial<RecognisedSpeech>): void;
  error(error: SpeechError): void;
}

/** Scripted behaviour of the fakes a factory makes. */
export interface FakeSpeechOptions {
  /** Finals per user id, emitted one per `flush()` (in order) while any are left. */
  finalsOnFlush?: Record<string, string[]>;
  /** When set, the factory throws this (an engine that cannot be made). */
  unavailable?: string;
}

/** A factory of fakes plus the fakes it made, newest last. */
export interface FakeSpeechFactory {
  factory: SpeechEngineFactory;
  engines: FakeSpeechEngine[];
  /** The latest engine made for `userId`. */
  engineFor(userId: string): FakeSpeechEngine | undefined;
}

const BYTES_PER_MS = 32; // 16 kHz PCM16 mono

class Fake implements FakeSpeechEngine {
  readonly name = "fake";
  bytesHeard = 0;
  bytesMuted = 0;
  flushes = 0;
  muted = false;
  stopCalls = 0;
  stopped = false;

  constructor(
    readonly participant: { roomId: string; userId: string },
    private readonly events: SpeechEvents,
    private readonly script: string[],
  ) {}

  write(pcm: Buffer): void {
    if (this.stopped) return;
    if (this.muted) this.bytesMuted += pcm.byteLength;
    else this.bytesHeard += pcm.byteLength;
  }

  flush(): void {
    if (this.stopped) return;
    this.flushes++;
    const next = this.script.shift();
    if (next !== undefined) this.final(next);
  }

  setMuted(muted: boolean): void {
    this.muted = muted;
  }

  async stop(): Promise<void> {
    this.stopCalls++;
    this.stopped = true;
  }

  partial(text: string, init: Partial<RecognisedSpeech> = {}): void {
    if (!this.stopped) this.events.onPartial(this.speech(text, false, init));
  }

  final(text: string, init: Partial<RecognisedSpeech> = {}): void {
    if (!this.stopped) this.events.onFinal(this.speech(text, true, init));
  }

  error(error: SpeechError): void {
    if (!this.stopped) this.events.onError(error);
  }

  private speech(text: string, isFinal: boolean, init: Partial<RecognisedSpeech>): RecognisedSpeech {
    const endMs = init.endMs ?? Math.round((this.bytesHeard + this.bytesMuted) / BYTES_PER_MS);
    const startMs = init.startMs ?? Math.max(0, endMs - 300 * text.split(/\s+/).length);
    const parts = text.split(/\s+/).filter((w) => w !== "");
    const step = parts.length > 0 ? (endMs - startMs) / parts.length : 0;
    const words =
      init.words ??
      (isFinal ? parts.map((w, i) => create(WordTimingSchema, { text: w, startMs: Math.round(startMs + i * step), endMs: Math.round(startMs + (i + 1) * step), confidence: 0.9 })) : []);
    return { text, isFinal, startMs, endMs, words, confidence: init.confidence ?? (isFinal ? 0.9 : 0) };
  }
}

/** Makes a factory of fake speech engines for room and server tests (no process, no network). */
export function createFakeSpeechFactory(options: FakeSpeechOptions = {}): FakeSpeechFactory {
  const engines: FakeSpeechEngine[] = [];
  const scripts = new Map(Object.entries(options.finalsOnFlush ?? {}).map(([user, lines]) => [user, [...lines]]));
  return {
    engines,
    engineFor: (userId) => engines.filter((e) => e.participant.userId === userId).at(-1),
    factory: (participant, events) => {
      if (options.unavailable !== undefined) throw new Error(options.unavailable);
      let script = scripts.get(participant.userId);
      if (!script) {
        script = [];
        scripts.set(participant.userId, script);
      }
      const engine = new Fake(participant, events, script);
      engines.push(engine);
      return engine;
    },
  };
}
