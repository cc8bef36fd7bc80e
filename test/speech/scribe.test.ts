import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createScribeEngine, stripNoiseLabels, type ScribeOptions } from "../../src/speech/scribe.js";
import type { SpeechEngine } from "../../src/speech/speech-engine.js";
import { FakeScribeServer, timestamped } from "../../src/speech/testing/fake-scribe-server.js";
import { frames, recordSpeech, type SpeechRecorder } from "../support/speech.js";

const participant = { roomId: "room-1", userId: "user-1" };
let server: FakeScribeServer;
const engines: SpeechEngine[] = [];

/** Distinct PCM (a ramp starting at `from`), so replayed bytes can be told apart. */
function pcm(ms: number, from = 0): Buffer {
  const n = ms * 16;
  const out = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) out.writeInt16LE(((from + i) % 20000) - 10000, i * 2);
  return out;
}

function start(options: Partial<ScribeOptions> = {}): { engine: SpeechEngine & { readonly droppedBytes: number }; rec: SpeechRecorder } {
  const rec = recordSpeech();
  const engine = createScribeEngine(participant, rec, {
    apiKey: "test-key",
    baseUrl: server.baseUrl,
    backoff: { initialDelayMs: 10, maxDelayMs: 50 },
    random: () => 0.5,
    // No fake transcript answers stop's commit unless a test scripts one.
    stopTimeoutMs: 100,
    ...options,
  });
  engines.push(engine);
  return { engine, rec };
}

function writeFrames(engine: SpeechEngine, audio: Buffer): void {
  for (const f of frames(audio)) engine.write(f);
}

beforeEach(async () => {
  server = await FakeScribeServer.start("test-key");
});

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(engines.splice(0).map((e) => e.stop()));
  // A test leaves no connection open.
  await server.until(() => server.openConnections === 0);
  await server.close();
});

describe("Scribe engine: protocol", () => {
  it("connects with the documented query parameters and key, and streams base64 PCM chunks", async () => {
    const { engine } = start({ language: "en", keyterms: ["deal", "handshake"] });
    const audio = pcm(500);
    writeFrames(engine, audio); // before the socket is open: held, then sent on open
    const s = await server.session(0);
    expect(s.url.pathname).toBe("/v1/speech-to-text/realtime");
    expect(Object.fromEntries(s.url.searchParams)).toMatchObject({
      model_id: "scribe_v2_realtime",
      audio_format: "pcm_16000",
      commit_strategy: "vad",
      include_timestamps: "true",
      language_code: "en",
    });
    expect(s.url.searchParams.getAll("keyterms")).toEqual(["deal", "handshake"]);
    expect(s.headers["xi-api-key"]).toBe("test-key");
    await s.until(() => s.audioBytes().length === audio.length);
    expect(s.audioBytes().equals(audio)).toBe(true);
    for (const m of s.messages) expect(m).toMatchObject({ message_type: "input_audio_chunk", commit: false, sample_rate: 16000 });
    const more = pcm(100, 8000);
    writeFrames(engine, more);
    await s.until(() => s.audioBytes().length === audio.length + more.length);
    expect(s.audioBytes().subarray(audio.length).equals(more)).toBe(true);
  });

  it("reports partials, then one final with word timings in participant milliseconds, noise labels filtered", async () => {
    const { engine, rec } = start();
    writeFrames(engine, pcm(2000));
    const s = await server.session(0);
    await s.until(() => s.audioBytes().length === 64000);
    s.send({ message_type: "partial_transcript", text: "I can [noise] fix" });
    const partial = await rec.until(() => rec.partials[0]);
    expect(partial).toMatchObject({ text: "I can fix", isFinal: false, words: [], confidence: 0 });
    expect(partial.startMs).toBe(0);
    expect(partial.endMs).toBe(2000);
    s.send({ message_type: "committed_transcript", text: "I can fix the boiler (static)" });
    s.send(timestamped([["I", 0.12, 0.2], ["can", 0.25, 0.5], ["fix", 0.55, 0.8], ["the", 0.85, 0.95], ["boiler", 1.0, 1.4], ["(static)", 1.5, 1.7]], { text: "I can fix the boiler (static)" }));
    const final = await rec.until(() => rec.finals[0]);
    expect(final.text).toBe("I can fix the boiler");
    expect(final.isFinal).toBe(true);
    expect(final.words.map((w) => [w.text, w.startMs, w.endMs])).toEqual([
      ["I", 120, 200],
      ["can", 250, 500],
      ["fix", 550, 800],
      ["the", 850, 950],
      ["boiler", 1000, 1400],
    ]);
    expect(final.startMs).toBe(120);
    expect(final.endMs).toBe(1400);
    expect(final.confidence).toBeCloseTo(Math.exp(-0.05), 5);
    // Later messages prove nothing else was emitted for that commit.
    s.send({ message_type: "partial_transcript", text: "next" });
    await rec.until(() => rec.partials.length === 2);
    expect(rec.finals).toHaveLength(1);
    expect(rec.errors).toEqual([]);
  });

  it("sends a committed transcript without timings when its timestamps do not follow", async () => {
    const { engine, rec } = start({ timestampWaitMs: 20 });
    writeFrames(engine, pcm(300));
    const s = await server.session(0);
    s.send({ message_type: "committed_transcript", text: "deal" });
    const final = await rec.until(() => rec.finals[0]);
    expect(final).toMatchObject({ text: "deal", isFinal: true, words: [], startMs: 0, endMs: 300 });
  });

  it("maps session time to the participant's timeline across a mute", async () => {
    const { engine, rec } = start();
    writeFrames(engine, pcm(1000));
    engine.setMuted(true);
    writeFrames(engine, pcm(1000, 16000)); // said while muted: never sent
    engine.setMuted(false);
    writeFrames(engine, pcm(1000, 32000));
    const s = await server.session(0);
    await s.until(() => s.audioBytes().length === 64000);
    expect(s.audioBytes().equals(Buffer.concat([pcm(1000), pcm(1000, 32000)]))).toBe(true);
    s.send({ message_type: "committed_transcript", text: "deal" });
    s.send(timestamped([["deal", 1.2, 1.4]]));
    const final = await rec.until(() => rec.finals[0]);
    expect(final.words.map((w) => [w.startMs, w.endMs])).toEqual([[2200, 2400]]);
  });

  it("flush sends one manual commit (an empty chunk with commit true)", async () => {
    const { engine } = start();
    writeFrames(engine, pcm(200));
    const s = await server.session(0);
    await s.until(() => s.audioBytes().length === 6400);
    engine.flush();
    engine.flush(); // nothing new since the last commit: no second commit
    await s.until(() => s.commits === 1);
    const commit = s.messages.find((m) => m.commit === true);
    expect(commit).toEqual({ message_type: "input_audio_chunk", audio_base_64: "", commit: true, sample_rate: 16000 });
    writeFrames(engine, pcm(20));
    await s.until(() => s.audioBytes().length === 6400 + 640);
    expect(s.commits).toBe(1);
  });

  it("muting commits what was said before the mute", async () => {
    const { engine } = start();
    writeFrames(engine, pcm(300));
    const s = await server.session(0);
    await s.until(() => s.audioBytes().length === 9600);
    engine.setMuted(true);
    await s.until(() => s.commits === 1);
    engine.setMuted(true); // already muted: no second commit
    engine.setMuted(false);
    writeFrames(engine, pcm(20));
    await s.until(() => s.audioBytes().length === 9600 + 640);
    expect(s.commits).toBe(1);
  });

  it("keeps a muted session alive with small silent chunks", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] });
    const { engine, rec } = start({ keepaliveIntervalMs: 5000 });
    const spoken = pcm(20);
    engine.write(spoken);
    const s = await server.session(0);
    // The frame's arrival shows the client side is open (and its keepalive timer running).
    await s.until(() => s.audio.length === 1);
    engine.setMuted(true);
    writeFrames(engine, pcm(200)); // muted: not sent
    await vi.advanceTimersByTimeAsync(4000);
    expect(s.audio).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2000);
    await s.until(() => s.audio.length === 2);
    expect(s.audio[1]!.length).toBe(3200);
    expect(s.audio[1]!.every((b) => b === 0)).toBe(true);
    await vi.advanceTimersByTimeAsync(5000);
    await s.until(() => s.audio.length === 3);
    engine.setMuted(false);
    engine.write(spoken);
    await s.until(() => s.audio.length === 4);
    expect(s.audio[3]!.equals(spoken)).toBe(true);
    expect(rec.errors).toEqual([]);
  });

  it("ignores unknown message types and empty or noise-only transcripts", async () => {
    const { engine, rec } = start();
    writeFrames(engine, pcm(100));
    const s = await server.session(0);
    s.send({ message_type: "committed_transcript_entities", entities: [] });
    s.send({ message_type: "edited_transcript", text: "something" });
    s.send({ message_type: "partial_transcript", text: "[noise]" });
    s.send({ message_type: "committed_transcript", text: "*static*" });
    s.send(timestamped([["*static*", 0.0, 0.1]], { text: "*static*" }));
    s.send({ message_type: "partial_transcript", text: "hello" });
    await rec.until(() => rec.partials[0]);
    expect(rec.partials.map((p) => p.text)).toEqual(["hello"]);
    expect(rec.finals).toEqual([]);
    expect(rec.errors).toEqual([]);
  });

  it("stop commits the last words and waits for their transcript; safe twice; closes the socket", async () => {
    const { engine, rec } = start();
    writeFrames(engine, pcm(500));
    const s = await server.session(0);
    await s.until(() => s.audioBytes().length === 16000);
    const stopping = Promise.all([engine.stop(), engine.stop()]);
    // (this test answers the commit, so the default wait is long enough)
    await s.until(() => s.commits === 1);
    s.send({ message_type: "committed_transcript", text: "deal" });
    s.send(timestamped([["deal", 0.1, 0.4]]));
    await stopping;
    expect(rec.finals.map((f) => f.text)).toEqual(["deal"]);
    await s.until(() => s.closed);
    // Stopped: writes and flushes are ignored, and nothing more is reported.
    writeFrames(engine, pcm(100));
    engine.flush();
    expect(s.audioBytes().length).toBe(16000);
    expect(rec.errors).toEqual([]);
  });
});

describe("Scribe engine: failures and reconnects", () => {
  it("reconnects after a drop mid-utterance and replays the audio not yet committed", async () => {
    const { engine, rec } = start();
    const a = pcm(1000);
    writeFrames(engine, a);
    const s0 = await server.session(0);
    await s0.until(() => s0.audioBytes().length === a.length);
    s0.send({ message_type: "partial_transcript", text: "I can fix the" });
    await rec.until(() => rec.partials[0]);
    s0.drop();
    const b = pcm(500, 16000);
    writeFrames(engine, b); // during the outage
    const s1 = await server.session(1);
    await s1.until(() => s1.audioBytes().length === a.length + b.length);
    expect(s1.audioBytes().equals(Buffer.concat([a, b]))).toBe(true);
    s1.send({ message_type: "committed_transcript", text: "I can fix the boiler" });
    s1.send(timestamped([["I", 0.1, 0.2], ["can", 0.2, 0.4], ["fix", 0.4, 0.7], ["the", 0.7, 0.8], ["boiler", 1.1, 1.4]]));
    const final = await rec.until(() => rec.finals[0]);
    expect(final.text).toBe("I can fix the boiler");
    expect(final.words.map((w) => w.startMs)).toEqual([100, 200, 400, 700, 1100]);
    expect(rec.errors).toEqual([
      { code: "connection_lost", message: "Lost the connection to ElevenLabs speech recognition; reconnecting.", retryable: true },
    ]);
  });

  it("does not replay audio Scribe has already committed", async () => {
    const { engine, rec } = start();
    const a = pcm(1000);
    writeFrames(engine, a);
    const s0 = await server.session(0);
    await s0.until(() => s0.audioBytes().length === a.length);
    s0.send({ message_type: "committed_transcript", text: "I can fix it" });
    s0.send(timestamped([["I", 0.1, 0.2], ["can", 0.2, 0.4], ["fix", 0.4, 0.7], ["it", 0.7, 1.0]]));
    await rec.until(() => rec.finals[0]);
    s0.close(1011, "going away");
    const b = pcm(400, 16000);
    writeFrames(engine, b);
    const s1 = await server.session(1);
    await s1.until(() => s1.audioBytes().length >= b.length);
    expect(s1.audioBytes().equals(b)).toBe(true);
    s1.send({ message_type: "committed_transcript", text: "deal" });
    s1.send(timestamped([["deal", 0.1, 0.3]]));
    const second = await rec.until(() => rec.finals[1]);
    // Session 1 started at participant 1000 ms.
    expect(second.words.map((w) => [w.startMs, w.endMs])).toEqual([[1100, 1300]]);
  });

  it("turns a retryable error message and the close after it into one SpeechError, then reconnects", async () => {
    const { rec } = start();
    const s0 = await server.session(0);
    s0.send({ message_type: "transcriber_error", error: "internal failure" });
    s0.close(1011, "error");
    await server.session(1);
    expect(rec.errors).toEqual([
      { code: "transcriber_error", message: "ElevenLabs speech recognition had an internal error; reconnecting.", retryable: true },
    ]);
  });

  it("does not retry after auth_error, and ignores audio from then on", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] });
    const { engine, rec } = start();
    const s0 = await server.session(0);
    s0.send({ message_type: "auth_error", error: "Invalid API key" });
    s0.close(1008, "auth");
    const error = await rec.until(() => rec.errors[0]);
    expect(error).toEqual({ code: "auth_failed", message: "ElevenLabs rejected the API key; check ELEVENLABS_API_KEY.", retryable: false });
    await s0.until(() => s0.closed);
    writeFrames(engine, pcm(100));
    await vi.advanceTimersByTimeAsync(120_000);
    expect(server.upgrades).toBe(1);
    expect(rec.errors).toHaveLength(1);
  });

  it("does not retry an HTTP 401 on the WebSocket upgrade", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] });
    const { rec } = start({ apiKey: "wrong-key" });
    const error = await rec.until(() => rec.errors[0]);
    expect(error).toEqual({ code: "auth_failed", message: "ElevenLabs rejected the API key; check ELEVENLABS_API_KEY.", retryable: false });
    await vi.advanceTimersByTimeAsync(120_000);
    expect(server.upgrades).toBe(1);
    expect(server.sessions).toHaveLength(0);
  });

  it("retries an HTTP 429, honouring Retry-After", async () => {
    let answered = 0;
    server.answerUpgrade = () => (answered++ === 0 ? { status: 429, headers: { "Retry-After": "0" } } : "accept");
    const { rec } = start();
    await server.session(0);
    expect(rec.errors).toEqual([{ code: "rate_limited", message: "ElevenLabs is rate limiting speech recognition; retrying shortly.", retryable: true }]);
    expect(server.upgrades).toBe(2);
  });

  it("gives up with a non-retryable error after maxAttempts failed connections", async () => {
    server.answerUpgrade = () => ({ status: 503 });
    const { rec } = start({ maxAttempts: 3 });
    const last = await rec.until(() => rec.errors.find((e) => !e.retryable));
    expect(rec.errors[0]).toMatchObject({ code: "unavailable", retryable: true });
    expect(last).toEqual({ code: "unavailable", message: "Speech recognition (elevenlabs-scribe) could not reconnect after 3 attempts.", retryable: false });
    expect(rec.errors).toHaveLength(2);
    expect(server.upgrades).toBe(4);
  });

  it("bounds the audio kept for replay during an outage (oldest dropped)", async () => {
    let allow = false;
    server.answerUpgrade = () => (allow ? "accept" : { status: 503 });
    const { engine, rec } = start({ maxReplayMs: 1000, backoff: { initialDelayMs: 20, maxDelayMs: 20 } });
    await rec.until(() => rec.errors[0]);
    const audio = pcm(3000);
    writeFrames(engine, audio);
    allow = true;
    const s = await server.session(0);
    await s.until(() => s.audioBytes().length >= 32000);
    expect(s.audioBytes().equals(audio.subarray(audio.length - 32000))).toBe(true);
  });

  it.each([
    ["auth_error", "auth_failed", false],
    ["quota_exceeded", "quota_exceeded", false],
    ["unaccepted_terms", "terms_not_accepted", false],
    ["unaccepted_terms_error", "terms_not_accepted", false],
    ["input_error", "input_error", false],
    ["chunk_size_exceeded", "chunk_too_large", false],
    ["invalid_request", "invalid_request", false],
    ["error", "server_error", true],
    ["rate_limited", "rate_limited", true],
    ["commit_throttled", "commit_throttled", true],
    ["transcriber_error", "transcriber_error", true],
    ["queue_overflow", "queue_overflow", true],
    ["resource_exhausted", "resource_exhausted", true],
    ["session_time_limit_exceeded", "session_time_limit", true],
    ["insufficient_audio_activity", "insufficient_audio", true],
  ] as const)("maps %s to %s (retryable: %s) with a message for a person", async (messageType, code, retryable) => {
    const { rec } = start();
    const s = await server.session(0);
    s.send({ message_type: messageType, error: "vendor detail that stays in the log" });
    const error = await rec.until(() => rec.errors[0]);
    expect(error.code).toBe(code);
    expect(error.retryable).toBe(retryable);
    expect(error.message).toMatch(/^[A-Z].*\.$/);
    expect(error.message).not.toContain("vendor detail");
  });
});

describe("stripNoiseLabels", () => {
  it("removes bracketed, parenthesised and starred sound labels", () => {
    expect(stripNoiseLabels("[noise] deal (static) let's *static* shake  on it [laughs]")).toBe("deal let's shake on it");
    expect(stripNoiseLabels("(background noise)")).toBe("");
    expect(stripNoiseLabels("one hundred and twenty pounds")).toBe("one hundred and twenty pounds");
  });
});
