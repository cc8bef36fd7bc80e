import { existsSync, readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { parseWav } from "../../clients/shared/wav.js";
import { scanAmounts } from "../../src/language/amounts.js";
import { createPocketSphinxEngine, type PocketSphinxEngine } from "../../src/speech/pocketsphinx.js";
import { frames, recordSpeech, silence } from "../support/speech.js";

interface Fixture {
  name: string;
  file: string;
  reference: string;
  amounts: { amountMinor: number; currency: string }[];
}

const dir = new URL("../fixtures/speech/", import.meta.url);
const manifest = JSON.parse(readFileSync(new URL("fixtures.json", dir), "utf8")) as { fixtures: Fixture[] };
const byName = (name: string): Fixture => manifest.fixtures.find((f) => f.name === name)!;
const amountsIn = (text: string) => scanAmounts(text, "GBP").money.map((m) => ({ amountMinor: Number(m.amountMinor), currency: m.currency }));

const engines: PocketSphinxEngine[] = [];
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.stop()));
});

describe("speech fixtures (test/fixtures/speech/fixtures.json)", () => {
  it("lists WAVs that exist, with references whose amounts are the ones listed", () => {
    expect(manifest.fixtures.length).toBeGreaterThanOrEqual(14);
    for (const f of manifest.fixtures) {
      const url = new URL(f.file, dir);
      expect(existsSync(url), f.file).toBe(true);
      const wav = parseWav(readFileSync(url));
      expect(wav.channels).toBe(1);
      if (!f.file.includes("48k")) expect(wav.sampleRateHz, f.name).toBe(16000);
      expect(amountsIn(f.reference), f.name).toEqual(f.amounts);
    }
  });

  // Lines of three voices and speeds whose every amount the embedded engine hears right; each is
  // read per final, as the room reads it.
  for (const name of ["slt-quid", "slt-one-fifty", "kal-boiler", "kal-dollars-slow", "ked-deposit-fast"]) {
    it(`hears every amount of ${name}`, async () => {
      const fixture = byName(name);
      const rec = recordSpeech();
      const engine = createPocketSphinxEngine({ roomId: "room-1", userId: "user-1" }, rec, { maxQueuedBytes: 16 * 1024 * 1024 });
      engines.push(engine);
      const pcm = parseWav(readFileSync(new URL(fixture.file, dir))).pcm;
      for (const f of frames(Buffer.concat([silence(300), pcm, silence(600)]))) engine.write(f);
      engine.flush();
      await engine.stop();
      expect(rec.errors).toEqual([]);
      expect(rec.finals.flatMap((f) => amountsIn(f.text)), rec.finals.map((f) => f.text).join(" | ")).toEqual(fixture.amounts);
    });
  }
});
