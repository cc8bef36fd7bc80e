import { Writable } from "node:stream";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createSpeechEngines } from "../../src/compose/engines-speech.js";
import { loadConfig } from "../../src/config.js";
import { FakeScribeServer } from "../../src/speech/testing/fake-scribe-server.js";
import { recordSpeech } from "../support/speech.js";

/** A pino logger whose lines a test can read. */
function recordedLogger(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: "debug" }, sink), lines };
}

let server: FakeScribeServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("local speech settings", () => {
  it("reads SPEECH_END_SILENCE_MS and SPEECH_LANGUAGE_MODEL, with the money model and 160 ms by default", () => {
    expect(loadConfig({}).speech).toMatchObject({ endSilenceMs: 160, languageModel: "money" });
    expect(loadConfig({ SPEECH_END_SILENCE_MS: "240", SPEECH_LANGUAGE_MODEL: "debian" }).speech).toMatchObject({ endSilenceMs: 240, languageModel: "debian" });
    expect(() => loadConfig({ SPEECH_LANGUAGE_MODEL: "huge" })).toThrow(/SPEECH_LANGUAGE_MODEL/);
    expect(() => loadConfig({ SPEECH_END_SILENCE_MS: "10" })).toThrow(/SPEECH_END_SILENCE_MS/);
  });
});

describe("createSpeechEngines", () => {
  it("gives the production Scribe engine the server's logger, with engine, room and user on each line", async () => {
    server = await FakeScribeServer.start("right-key");
    const { log, lines } = recordedLogger();
    const config = loadConfig({ SPEECH_ENGINE: "scribe", ELEVENLABS_API_KEY: "wrong-key", ELEVENLABS_BASE_URL: server.baseUrl });
    const speech = await createSpeechEngines(config, log);
    expect(speech.name).toBe("scribe");
    const rec = recordSpeech();
    const engine = speech.speechFactory!({ roomId: "room-log", userId: "user-log" }, rec);
    await rec.until(() => rec.errors.find((e) => e.code === "auth_failed"));
    await engine.stop();
    expect(lines).toContainEqual(expect.objectContaining({ msg: "speech engine failed", code: "auth_failed", engine: "elevenlabs-scribe", roomId: "room-log", userId: "user-log" }));
    // The key never goes into a log line.
    expect(JSON.stringify(lines)).not.toContain("wrong-key");
  });
});
