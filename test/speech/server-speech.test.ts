import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createParticipant, type Participant } from "../../clients/cli/participant.js";
import { TranscriptSource } from "../../gen/handshake/v1/transcript_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { startTestApp, testProfile, type TestApp } from "../support/app.js";

const fixture = (name: string) => readFile(path.resolve("test/fixtures/audio", name));

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ SPEECH_ENGINE: "pocketsphinx" });
});
afterAll(async () => {
  await t.close();
});

function participant(roomId: string, name: string, role: PartyRole): Participant {
  return createParticipant({ serverUrl: t.baseUrl, roomId, profile: testProfile({ displayName: name, role }) });
}

/** Final server transcripts of `speaker` seen by `viewer`, joined. */
function heard(viewer: Participant, speaker: Participant): string {
  return viewer.history
    .flatMap((e) => (e.event.case === "transcript" && e.event.value.isFinal && e.event.value.speakerUserId === speaker.userId && e.event.value.source === TranscriptSource.SERVER ? [e.event.value.text] : []))
    .join(" ");
}

describe("speech through the real server (PocketSphinx)", () => {
  for (const realtime of [false, true]) {
    it(`recognises streamed dialogue ${realtime ? "in real time" : "faster than real time"}, and the spoken trigger word fires the trigger`, async () => {
      const roomId = realtime ? "speech-realtime" : "speech-fast";
      const provider = participant(roomId, "Sam", PartyRole.PROVIDER);
      const client = participant(roomId, "Alex", PartyRole.CLIENT);
      try {
        await provider.join();
        await client.join();
        // 48 kHz speech exercises the resampler on the way to the engine.
        await provider.streamWav(await fixture("provider-offer-16k.wav"), { realtime });
        await client.waitUntil(() => (/hundred/.test(heard(client, provider)) && /twenty/.test(heard(client, provider)) ? true : undefined));
        await provider.streamWav(await fixture("provider-parts-48k.wav"), { realtime });
        await client.streamWav(await fixture("client-handshake-16k.wav"), { realtime });
        const trigger = await client.waitFor((e) => (e.event.case === "trigger" ? e.event.value : undefined));
        expect(trigger.speakerUserId).toBe(client.userId);
        expect(trigger.keyword).toBe("handshake");
        expect(heard(provider, client)).toMatch(/handshake/);
        const words = client.history.flatMap((e) => (e.event.case === "transcript" && e.event.value.isFinal ? e.event.value.words : []));
        expect(words.length).toBeGreaterThan(0);
        expect(words.every((w) => w.endMs >= w.startMs)).toBe(true);
      } finally {
        await Promise.all([provider.close(), client.close()]);
      }
    }, 90_000);
  }
});
