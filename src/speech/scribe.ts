import { create } from "@bufbuild/protobuf";
import { WebSocket } from "ws";
import { WordTimingSchema, type WordTiming } from "../../gen/handshake/v1/transcript_pb.js";
import { SPEECH_SAMPLE_RATE_HZ } from "../audio/audio-format.js";
import { isRetryableStatus } from "../core/retry.js";
import { RemoteSpeechEngine, SpeechEngineError, type RemoteEngineOptions } from "./remote-engine.js";
import type { SpeechEngine, SpeechEngineFactory, SpeechEvents } from "./speech-engine.js";
import { Timeline } from "./timeline.js";

/** Settings of the ElevenLabs Scribe v2 realtime engine. */
export interface ScribeOptions extends RemoteEngineOptions {
  /** ElevenLabs API key, sent as the `xi-api-key` header; never logged. */
  apiKey: string;
  /** WebSocket origin. Default wss://api.elevenlabs.io (tests point it at a local server). */
  baseUrl?: string;
  /** ISO 639-1/3 language hint; unset lets Scribe detect it. */
  language?: string;
  /** Words to bias recognition towards (the trigger keyword, say); at most 50, each ≤ 20 chars. */
  keyterms?: readonly string[];
  /** Silence that makes Scribe's VAD commit, in seconds (0.3–3). Unset keeps the vendor default. */
  vadSilenceThresholdSecs?: number;
  /** Audio kept until Scribe commits it, replayed after a reconnect. Default 30 s. */
  maxReplayMs?: number;
  /** With no audio sent for this long (muted, silent client), a short silent chunk is sent. Default 5 s. */
  keepaliveIntervalMs?: number;
  /** WebSocket opening handshake timeout. Default 10 s. */
  connectTimeoutMs?: number;
  /** How long `stop` waits for the last commit's transcript. Default 2 s. */
  stopTimeoutMs?: number;
  /** Audio is dropped while more than this waits in the socket. Default 1 MiB. */
  maxSocketBufferBytes?: number;
  /** Flushes closer together than this are ignored (Scribe throttles commits). Default 1 s. */
  minCommitIntervalMs?: number;
  /** How long a committed transcript waits for its word timestamps before going out without. Default 1 s. */
  timestampWaitMs?: number;
}

/** Scribe's error `message_type`s and what each means for a person and for retrying. */
const ERRORS: Record<string, { code: string; retryable: boolean; message: string }> = {
  auth_error: { code: "auth_failed", retryable: false, message: "ElevenLabs rejected the API key; check ELEVENLABS_API_KEY." },
  quota_exceeded: { code: "quota_exceeded", retryable: false, message: "The ElevenLabs account has no speech-to-text quota left." },
  unaccepted_terms: { code: "terms_not_accepted", retryable: false, message: "Accept the ElevenLabs terms of service in the ElevenLabs dashboard to use speech to text." },
  unaccepted_terms_error: { code: "terms_not_accepted", retryable: false, message: "Accept the ElevenLabs terms of service in the ElevenLabs dashboard to use speech to text." },
  input_error: { code: "input_error", retryable: false, message: "ElevenLabs rejected the audio it was sent." },
  chunk_size_exceeded: { code: "chunk_too_large", retryable: false, message: "ElevenLabs rejected an audio chunk as too large." },
  invalid_request: { code: "invalid_request", retryable: false, message: "ElevenLabs rejected the session settings (language or options)." },
  rate_limited: { code: "rate_limited", retryable: true, message: "ElevenLabs is rate limiting speech recognition; retrying shortly." },
  commit_throttled: { code: "commit_throttled", retryable: true, message: "Too many end-of-turn commits in a short time; ElevenLabs will commit on its own." },
  transcriber_error: { code: "transcriber_error", retryable: true, message: "ElevenLabs speech recognition had an internal error; reconnecting." },
  error: { code: "server_error", retryable: true, message: "ElevenLabs speech recognition reported an error; reconnecting." },
  queue_overflow: { code: "queue_overflow", retryable: true, message: "ElevenLabs could not keep up with the audio; reconnecting." },
  resource_exhausted: { code: "resource_exhausted", retryable: true, message: "ElevenLabs is out of capacity right now; retrying." },
  session_time_limit_exceeded: { code: "session_time_limit", retryable: true, message: "The ElevenLabs session reached its time limit; starting a new one." },
  insufficient_audio_activity: { code: "insufficient_audio", retryable: true, message: "ElevenLabs closed the session for lack of audio; reconnecting." },
};

/** Removes sound-event labels Scribe writes into text: "[noise]", "(static)", "*static*". */
export function stripNoiseLabels(text: string): string {
  return text
    .replace(/\[[^\]]*\]|\([^)]*\)|\*[^*]*\*/g, " ")
    .replace(/\s+/g, " ")
    .trim();
}

/** Error for a failed WebSocket upgrade: 401/403 is the key, 429/408/5xx are worth retrying. */
function upgradeError(status: number, retryAfter: string | undefined): SpeechEngineError {
  const seconds = retryAfter !== undefined ? Number(retryAfter) : NaN;
  const retryAfterMs = Number.isFinite(seconds) ? seconds * 1000 : undefined;
  if (status === 401 || status === 403) {
    return new SpeechEngineError("auth_failed", "ElevenLabs rejected the API key; check ELEVENLABS_API_KEY.", false);
  }
  if (status === 429) {
    return new SpeechEngineError("rate_limited", "ElevenLabs is rate limiting speech recognition; retrying shortly.", true, { retryAfterMs });
  }
  if (isRetryableStatus(status)) {
    return new SpeechEngineError("unavailable", `ElevenLabs speech recognition is unavailable (HTTP ${status}); retrying.`, true, { retryAfterMs });
  }
  return new SpeechEngineError("rejected_request", `ElevenLabs refused the speech session (HTTP ${status}).`, false);
}

interface ScribeWord {
  text?: unknown;
  start?: unknown;
  end?: unknown;
  type?: unknown;
  logprob?: unknown;
}

/** A chunk of participant audio kept until Scribe commits it. */
interface Held {
  pcm: Buffer;
  /** Participant sample index of its first sample. */
  start: number;
}

const SAMPLES_PER_MS = SPEECH_SAMPLE_RATE_HZ / 1000;
/** 100 ms of silence, base64: the keepalive chunk. */
const KEEPALIVE_SAMPLES = 1600;
const KEEPALIVE_BASE64 = Buffer.alloc(KEEPALIVE_SAMPLES * 2).toString("base64");

class ScribeEngine extends RemoteSpeechEngine {
  readonly name = "elevenlabs-scribe";

  private readonly url: string;
  private readonly apiKey: string;
  private readonly maxReplayBytes: number;
  private readonly keepaliveIntervalMs: number;
  private readonly connectTimeoutMs: number;
  private readonly stopTimeoutMs: number;
  private readonly maxSocketBufferBytes: number;
  private readonly minCommitIntervalMs: number;
  private readonly timestampWaitMs: number;

  private ws: WebSocket | undefined;
  /** Why the current connection is ending, when the server or the upgrade said. */
  private closeReason: SpeechEngineError | undefined;
  private sessionOpen = false;
  private readonly timeline = new Timeline();
  private participantSamples = 0;
  private muted = false;
  private held: Held[] = [];
  private heldBytes = 0;
  private lastSentAt = 0;
  private sentSinceCommit = false;
  private lastCommitAt = -Infinity;
  private flushWanted = false;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  /** A committed transcript waiting for its timestamped twin. */
  private committed: { text: string; timer: NodeJS.Timeout } | undefined;
  /** Resolves when a final (or the connection's end) follows a commit; used by stop. */
  private onCommitted: (() => void) | undefined;
  droppedBytes = 0;

  constructor(
    participant: { roomId: string; userId: string },
    events: SpeechEvents,
    options: ScribeOptions,
  ) {
    super(events, { ...options, log: options.log?.child({ engine: "elevenlabs-scribe", roomId: participant.roomId, userId: participant.userId }) });
    this.apiKey = options.apiKey;
    const base = (options.baseUrl ?? "wss://api.elevenlabs.io").replace(/\/+$/, "");
    const query = new URLSearchParams({
      model_id: "scribe_v2_realtime",
      audio_format: "pcm_16000",
      commit_strategy: "vad",
      include_timestamps: "true",
    });
    if (options.language) query.set("language_code", options.language);
    if (options.vadSilenceThresholdSecs !== undefined) query.set("vad_silence_threshold_secs", String(options.vadSilenceThresholdSecs));
    for (const term of (options.keyterms ?? []).slice(0, 50)) if (term.length > 0 && term.length <= 20) query.append("keyterms", term);
    this.url = `${base}/v1/speech-to-text/realtime?${query.toString()}`;
    this.maxReplayBytes = Math.round(((options.maxReplayMs ?? 30_000) / 1000) * SPEECH_SAMPLE_RATE_HZ * 2);
    this.keepaliveIntervalMs = options.keepaliveIntervalMs ?? 5000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.stopTimeoutMs = options.stopTimeoutMs ?? 2000;
    this.maxSocketBufferBytes = options.maxSocketBufferBytes ?? 1024 * 1024;
    this.minCommitIntervalMs = options.minCommitIntervalMs ?? 1000;
    this.timestampWaitMs = options.timestampWaitMs ?? 1000;
    this.start();
  }

  write(pcm: Buffer): void {
    const samples = pcm.byteLength >> 1;
    const start = this.participantSamples;
    this.participantSamples += samples;
    if (samples === 0 || this.muted || !this.active) return;
    // Our own copy: the caller may reuse its buffer while we hold this one for replay.
    const chunk = { pcm: Buffer.from(pcm.subarray(0, samples * 2)), start };
    this.held.push(chunk);
    this.heldBytes += chunk.pcm.byteLength;
    // Bounded: beyond maxReplayMs the oldest uncommitted audio is forgotten.
    while (this.heldBytes > this.maxReplayBytes && this.held.length > 1) this.heldBytes -= this.held.shift()!.pcm.byteLength;
    if (this.isOpen()) this.send(chunk);
  }

  flush(): void {
    if (!this.active) return;
    if (!this.isOpen()) {
      // Committed right after the replay, once reconnected.
      this.flushWanted = this.held.length > 0;
      return;
    }
    this.commit();
  }

  setMuted(muted: boolean): void {
    // What was said up to the mute is a finished utterance: commit it rather than wait for VAD.
    if (muted && !this.muted && this.active) this.commit();
    this.muted = muted;
  }

  private isOpen(): boolean {
    return this.ws !== undefined && this.ws.readyState === WebSocket.OPEN;
  }

  protected openConnection(): void {
    this.closeReason = undefined;
    this.sessionOpen = false;
    const ws = new WebSocket(this.url, {
      headers: { "xi-api-key": this.apiKey },
      handshakeTimeout: this.connectTimeoutMs,
      perMessageDeflate: false,
    });
    this.ws = ws;
    ws.on("unexpected-response", (_req, res) => {
      const retryAfter = res.headers["retry-after"];
      this.closeReason = upgradeError(res.statusCode ?? 0, Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
      res.resume();
      ws.terminate(); // ends with "error" then "close"
    });
    ws.on("open", () => {
      if (this.ws === ws) this.onOpen();
    });
    ws.on("message", (data, isBinary) => {
      if (this.ws !== ws || isBinary) return;
      this.onMessage(data.toString());
    });
    ws.on("error", (err) => {
      if (this.ws !== ws) return;
      this.closeReason ??= new SpeechEngineError("connection_failed", "Could not reach ElevenLabs speech recognition; retrying.", true, { cause: err });
    });
    ws.on("close", (code) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.onClose(code);
    });
  }

  private onOpen(): void {
    // A new session hears from position 0: replay what Scribe has not committed yet, so a short
    // outage loses no words.
    this.timeline.reset();
    this.sentSinceCommit = false;
    // The replay is bounded by maxReplayMs, so it may exceed the socket bound for a moment.
    for (const chunk of this.held) this.send(chunk, true);
    if (this.flushWanted) {
      this.flushWanted = false;
      this.commit();
    }
    this.lastSentAt = Date.now();
    clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = setInterval(() => this.keepalive(), Math.max(250, Math.floor(this.keepaliveIntervalMs / 2)));
    this.keepaliveTimer.unref();
  }

  private onClose(code: number): void {
    clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
    this.releaseCommitted();
    this.sessionOpen = false;
    this.onCommitted?.();
    const reason =
      this.closeReason ??
      new SpeechEngineError("connection_lost", "Lost the connection to ElevenLabs speech recognition; reconnecting.", true);
    this.log?.info({ closeCode: code, reason: reason.code }, "scribe connection closed");
    this.disconnected(reason);
  }

  /** Sends one audio chunk unless the socket is backed up (then the audio waits for a replay). */
  private send(chunk: Held, replay = false): void {
    const ws = this.ws!;
    if (!replay && ws.bufferedAmount > this.maxSocketBufferBytes) {
      this.droppedBytes += chunk.pcm.byteLength;
      return;
    }
    ws.send(
      JSON.stringify({ message_type: "input_audio_chunk", audio_base_64: chunk.pcm.toString("base64"), commit: false, sample_rate: SPEECH_SAMPLE_RATE_HZ }),
    );
    this.timeline.heard(chunk.start, chunk.pcm.byteLength >> 1);
    this.lastSentAt = Date.now();
    this.sentSinceCommit = true;
  }

  /** Manual commit: an empty chunk with commit true (the vendor's protocol). */
  private commit(): boolean {
    if (!this.isOpen() || !this.sentSinceCommit) return false;
    const now = Date.now();
    if (now - this.lastCommitAt < this.minCommitIntervalMs) return false;
    this.lastCommitAt = now;
    this.sentSinceCommit = false;
    this.ws!.send(JSON.stringify({ message_type: "input_audio_chunk", audio_base_64: "", commit: true, sample_rate: SPEECH_SAMPLE_RATE_HZ }));
    return true;
  }

  /** Keeps an idle (muted, silent) session open: Scribe closes sessions that get no audio. */
  private keepalive(): void {
    if (!this.isOpen() || Date.now() - this.lastSentAt < this.keepaliveIntervalMs) return;
    this.ws!.send(JSON.stringify({ message_type: "input_audio_chunk", audio_base_64: KEEPALIVE_BASE64, commit: false, sample_rate: SPEECH_SAMPLE_RATE_HZ }));
    this.timeline.inserted(KEEPALIVE_SAMPLES);
    this.lastSentAt = Date.now();
  }

  private onMessage(raw: string): void {
    let msg: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(raw);
      if (typeof parsed !== "object" || parsed === null) return;
      msg = parsed as Record<string, unknown>;
    } catch {
      return;
    }
    const type = msg.message_type;
    if (typeof type !== "string") return;
    // A transcript shows the session survived an earlier non-fatal error (commit_throttled, say).
    if (type.includes("transcript")) this.closeReason = undefined;
    switch (type) {
      case "session_started":
        this.sessionOpen = true;
        this.connected();
        return;
      case "partial_transcript": {
        const text = stripNoiseLabels(typeof msg.text === "string" ? msg.text : "");
        if (text === "") return;
        const { startMs, endMs } = this.pendingSpan();
        this.emitPartial({ text, isFinal: false, startMs, endMs, words: [], confidence: 0 });
        return;
      }
      case "committed_transcript": {
        // The timestamped twin follows; wait for it briefly so the final carries word timings.
        this.releaseCommitted();
        const text = typeof msg.text === "string" ? msg.text : "";
        const timer = setTimeout(() => this.releaseCommitted(), this.timestampWaitMs);
        this.committed = { text, timer };
        return;
      }
      case "committed_transcript_with_timestamps": {
        const pending = this.committed;
        if (pending) clearTimeout(pending.timer);
        this.committed = undefined;
        const text = typeof msg.text === "string" ? msg.text : (pending?.text ?? "");
        this.emitCommitted(text, Array.isArray(msg.words) ? (msg.words as ScribeWord[]) : []);
        return;
      }
      default: {
        const known = ERRORS[type];
        if (!known) return; // unknown message types are for newer clients
        const detail = typeof msg.error === "string" ? msg.error.slice(0, 200) : undefined;
        this.log?.warn({ messageType: type, detail }, "scribe error message");
        const error = new SpeechEngineError(known.code, known.message, known.retryable);
        // The server usually closes after an error; the close then reconnects (or not) for this reason.
        this.closeReason = error;
        this.report(error);
      }
    }
  }

  /** Sends a committed transcript that got no timestamps in time, without word timings. */
  private releaseCommitted(): void {
    const pending = this.committed;
    if (!pending) return;
    clearTimeout(pending.timer);
    this.committed = undefined;
    this.emitCommitted(pending.text, []);
  }

  private emitCommitted(rawText: string, rawWords: ScribeWord[]): void {
    const words: WordTiming[] = [];
    for (const w of rawWords) {
      if (w.type !== "word" || typeof w.text !== "string") continue;
      const text = stripNoiseLabels(w.text);
      if (text === "" || typeof w.start !== "number" || typeof w.end !== "number") continue;
      const startMs = this.toParticipantMs(w.start);
      const endMs = Math.max(startMs, this.toParticipantMs(w.end));
      const confidence = typeof w.logprob === "number" && Number.isFinite(w.logprob) ? Math.min(1, Math.max(0, Math.exp(w.logprob))) : 0;
      words.push(create(WordTimingSchema, { text, startMs, endMs, confidence }));
    }
    const lastWord = words[words.length - 1];
    const span = this.pendingSpan();
    if (lastWord) this.forgetUntil(lastWord.endMs * SAMPLES_PER_MS);
    this.onCommitted?.();
    const text = stripNoiseLabels(rawText);
    if (text === "") return;
    this.emitFinal({
      text,
      isFinal: true,
      startMs: words[0]?.startMs ?? span.startMs,
      endMs: lastWord?.endMs ?? span.endMs,
      words,
      confidence: words.length > 0 && words.some((w) => w.confidence > 0) ? words.reduce((s, w) => s + w.confidence, 0) / words.length : 0,
    });
  }

  /** Drops held audio Scribe has committed (everything ending at or before `participantSample`). */
  private forgetUntil(participantSample: number): void {
    while (this.held.length > 0) {
      const first = this.held[0]!;
      if (first.start + (first.pcm.byteLength >> 1) > participantSample) break;
      this.held.shift();
      this.heldBytes -= first.pcm.byteLength;
    }
  }

  /** Span of the audio not yet committed, for partials and for finals without timings. */
  private pendingSpan(): { startMs: number; endMs: number } {
    const first = this.held[0];
    const endMs = Math.round(this.participantSamples / SAMPLES_PER_MS);
    return { startMs: first ? Math.round(first.start / SAMPLES_PER_MS) : endMs, endMs };
  }

  private toParticipantMs(seconds: number): number {
    const stream = Math.max(0, Math.round(seconds * SPEECH_SAMPLE_RATE_HZ));
    return Math.round(this.timeline.toParticipant(stream) / SAMPLES_PER_MS);
  }

  protected async closeConnection(graceful: boolean): Promise<void> {
    const ws = this.ws;
    if (!ws) return;
    if (graceful && this.sessionOpen && this.isOpen()) {
      // Commit what was said last and give Scribe a moment to send its transcript.
      this.lastCommitAt = -Infinity;
      if (this.commit()) await this.waitFor((resolve) => (this.onCommitted = resolve), this.stopTimeoutMs);
      this.onCommitted = undefined;
    }
    this.releaseCommitted();
    if (this.ws !== ws) return;
    this.ws = undefined;
    clearInterval(this.keepaliveTimer);
    const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
    if (ws.readyState === WebSocket.OPEN) ws.close(1000, "stop");
    else ws.terminate();
    if (ws.readyState !== WebSocket.CLOSED) {
      const done = await this.waitFor((resolve) => void closed.then(resolve), this.stopTimeoutMs);
      if (!done) ws.terminate();
    }
  }

  /** Waits for `arm`'s callback or `ms`; true when the callback came first. */
  private waitFor(arm: (resolve: () => void) => void, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      arm(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}

/** Makes one Scribe engine (one WebSocket session, reconnecting) for a participant. */
export function createScribeEngine(
  participant: { roomId: string; userId: string },
  events: SpeechEvents,
  options: ScribeOptions,
): SpeechEngine & { readonly droppedBytes: number } {
  return new ScribeEngine(participant, events, options);
}

/**
 * Remote speech: ElevenLabs Scribe v2 realtime over WebSocket, VAD commits, word timestamps,
 * partials and finals; reconnects with backoff and replays uncommitted audio; auth and quota
 * failures are reported once and not retried.
 */
export function createScribeEngineFactory(options: ScribeOptions): SpeechEngineFactory {
  return (participant, events) => createScribeEngine(participant, events, options);
}
