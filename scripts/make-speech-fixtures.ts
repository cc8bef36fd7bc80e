/**
 * Makes the spoken deal-talk WAVs listed in test/fixtures/speech/fixtures.json with the TTS voices
 * Debian ships: festival (cmu_us_slt_arctic_hts, kal_diphone, ked_diphone; `stretch` slows or
 * speeds a voice) and espeak-ng (accents and variants at `wordsPerMinute`). Output is PCM16LE mono
 * 16 kHz, peaks at -3 dBFS, no dither, so reruns give identical files. Entries with `madeBy` are
 * another script's output and left alone.
 * Needs the Debian packages festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k
 * espeak-ng sox. Run: node --import tsx scripts/make-speech-fixtures.ts
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

interface FixtureVoice {
  engine: "festival" | "espeak-ng";
  voice: string;
  /** festival: duration stretch, above 1 is slower. */
  stretch?: number;
  /** espeak-ng: speaking rate. */
  wordsPerMinute?: number;
}

interface FixtureEntry {
  name: string;
  file: string;
  madeBy?: string;
  voice: FixtureVoice;
  say: string;
}

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "test", "fixtures", "speech");
const manifest = JSON.parse(readFileSync(path.join(dir, "fixtures.json"), "utf8")) as { fixtures: FixtureEntry[] };

for (const tool of ["text2wave", "espeak-ng", "sox"]) {
  try {
    execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
  } catch {
    console.error(`make-speech-fixtures: '${tool}' not found; install the Debian packages festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k espeak-ng sox`);
    process.exit(1);
  }
}

const work = mkdtempSync(path.join(tmpdir(), "speech-fixtures-"));
try {
  for (const entry of manifest.fixtures) {
    if (entry.madeBy) continue;
    const raw = path.join(work, `${entry.name}.wav`);
    const { voice } = entry;
    if (voice.engine === "festival") {
      const text = path.join(work, `${entry.name}.txt`);
      writeFileSync(text, `${entry.say}\n`);
      const evals = [`(voice_${voice.voice})`];
      if (voice.stretch !== undefined) evals.push(`(Parameter.set 'Duration_Stretch ${voice.stretch})`);
      execFileSync("text2wave", [...evals.flatMap((e) => ["-eval", e]), text, "-o", raw]);
    } else {
      execFileSync("espeak-ng", ["-v", voice.voice, "-s", String(voice.wordsPerMinute ?? 175), "-w", raw, entry.say]);
    }
    const out = path.join(dir, entry.file);
    execFileSync("sox", ["-D", raw, "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", out, "gain", "-n", "-3"]);
    console.log(`${entry.file}: ${(statSync(out).size / 1024).toFixed(0)} KB, ${voice.engine} ${voice.voice}: ${entry.say}`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
