/**
 * Measures the audio path and the local speech engine (PocketSphinx) on the committed fixtures:
 *  - resampler cost per 20 ms frame, each supported rate → 16 kHz;
 *  - real-time factor: the whole dialogue written as fast as the engine takes it;
 *  - end of utterance → final: real-time pacing (20 ms frames), silence after each line, time from
 *    the wall-clock moment the last word's audio was written to the final's arrival;
 *  - flush → final: real-time pacing, flush() right after the line, no audio after it.
 * Run: node --import tsx scripts/bench-speech.ts [endSilenceMs]
 */
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { parseWav } from "../clients/shared/wav.js";
import { createResampler } from "../src/audio/resampler.js";
import { createPocketSphinxEngine, detectPocketSphinx, type PocketSphinxOptions } from "../src/speech/pocketsphinx.js";
import type { RecognisedSpeech } from "../src/speech/speech-engine.js";

const FRAME_BYTES = 640; // 20 ms at 16 kHz
const fixtures = new URL("../test/fixtures/audio/", import.meta.url);

function line(name: string): Buffer {
  const wav = parseWav(readFileSync(new URL(`${name}.wav`, fixtures)));
  if (wav.sampleRateHz === 16000) return wav.pcm;
  const r = createResampler(wav.sampleRateHz, 16000);
  return Buffer.concat([r.process(wav.pcm), r.flush()]);
}

const lines = ["provider-offer-16k", "client-deal-16k", "client-handshake-16k", "provider-parts-48k"].map((n) => ({ name: n, pcm: line(n) }));
const silence = (ms: number): Buffer => Buffer.alloc(ms * 32);

interface Run {
  finals: { at: number; speech: RecognisedSpeech }[];
  next(): Promise<RecognisedSpeech & { at: number }>;
}

function start(options: PocketSphinxOptions): { engine: ReturnType<typeof createPocketSphinxEngine>; run: Run } {
  const finals: Run["finals"] = [];
  const waiters: ((v: RecognisedSpeech & { at: number }) => void)[] = [];
  let read = 0;
  const engine = createPocketSphinxEngine(
    { roomId: "bench", userId: "bench" },
    {
      onPartial: () => {},
      onFinal: (speech) => {
        finals.push({ at: performance.now(), speech });
        const w = waiters.shift();
        if (w) {
          read++;
          w({ ...speech, at: performance.now() });
        }
      },
      onError: (e) => console.error("engine error:", e),
    },
    options,
  );
  const run: Run = {
    finals,
    next: () =>
      new Promise((resolve) => {
        const ready = finals[read];
        if (ready) {
          read++;
          resolve({ ...ready.speech, at: ready.at });
        } else waiters.push(resolve);
      }),
  };
  return { engine, run };
}

/** Writes `pcm` in 20 ms frames on a wall-clock schedule; records when each sample was written. */
async function realTime(write: (b: Buffer) => void, pcm: Buffer, clock: { t0: number; written: number; at: number[] }): Promise<void> {
  for (let i = 0; i < pcm.length; i += FRAME_BYTES) {
    const due = clock.t0 + (clock.written / 32000) * 1000;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    const frame = pcm.subarray(i, i + FRAME_BYTES);
    write(frame);
    clock.written += frame.length;
    clock.at.push(performance.now()); // one entry per 20 ms frame
  }
}

const wallOf = (clock: { at: number[] }, ms: number): number => clock.at[Math.min(clock.at.length - 1, Math.floor(ms / 20))]!;

async function main(): Promise<void> {
  const detection = await detectPocketSphinx();
  if (!detection.available) {
    console.error(detection.message);
    process.exitCode = 1;
    return;
  }
  const endSilenceMs = Number(process.argv[2] ?? 400);

  for (const rate of [8000, 24000, 44100, 48000]) {
    const r = createResampler(rate, 16000);
    const frame = Buffer.alloc((rate / 50) * 2);
    for (let i = 0; i < frame.length / 2; i++) frame.writeInt16LE(Math.round(8000 * Math.sin(i / 7)), i * 2);
    for (let i = 0; i < 500; i++) r.process(frame); // warm up the JIT
    const frames = 3000; // 60 s of audio
    const t0 = performance.now();
    for (let i = 0; i < frames; i++) r.process(frame);
    const us = ((performance.now() - t0) / frames) * 1000;
    console.log(`resampler ${rate} → 16000 Hz: ${us.toFixed(0)} µs per 20 ms frame (${((us / 20000) * 100).toFixed(2)}% of one core per stream)`);
  }

  console.log(`PocketSphinx, endSilenceMs=${endSilenceMs}`);

  // 1. Real-time factor.
  {
    const { engine, run } = start({ endSilenceMs, maxQueuedBytes: 64 * 1024 * 1024 });
    await sleep(1500); // let the model load, so the figure is decoding only
    const audio = Buffer.concat(lines.flatMap((l) => [silence(500), l.pcm]).concat(silence(1000)));
    const t0 = performance.now();
    for (let i = 0; i < audio.length; i += FRAME_BYTES) engine.write(audio.subarray(i, i + FRAME_BYTES));
    engine.flush();
    for (let i = 0; i < lines.length; i++) await run.next();
    const elapsed = performance.now() - t0;
    const audioMs = audio.length / 32;
    console.log(`real-time factor: ${(elapsed / audioMs).toFixed(3)} (${(audioMs / 1000).toFixed(1)} s of audio in ${(elapsed / 1000).toFixed(2)} s)`);
    for (const f of run.finals) console.log(`  final: "${f.speech.text}" (${f.speech.startMs}-${f.speech.endMs} ms, confidence ${f.speech.confidence.toFixed(2)})`);
    await engine.stop();
  }

  // 2. End of utterance → final, real time, silence after each line.
  {
    const { engine, run } = start({ endSilenceMs });
    await sleep(1500);
    const clock = { t0: performance.now(), written: 0, at: [] as number[] };
    const write = (b: Buffer): void => engine.write(b);
    const latencies: number[] = [];
    const feeding = (async () => {
      for (const l of lines) {
        await realTime(write, silence(300), clock);
        await realTime(write, l.pcm, clock);
        await realTime(write, silence(1500), clock);
      }
    })();
    for (let i = 0; i < lines.length; i++) {
      const f = await run.next();
      latencies.push(f.at - wallOf(clock, f.endMs));
    }
    await feeding;
    await engine.stop();
    console.log(`end of speech → final (VAD, real time): ${latencies.map((l) => l.toFixed(0)).join(", ")} ms; mean ${(latencies.reduce((a, b) => a + b, 0) / latencies.length).toFixed(0)} ms`);
  }

  // 3. flush → final, real time, nothing after the flush.
  {
    const latencies: number[] = [];
    const fromWord: number[] = [];
    for (const l of lines) {
      const { engine, run } = start({ endSilenceMs });
      await sleep(1500);
      const clock = { t0: performance.now(), written: 0, at: [] as number[] };
      await realTime((b) => engine.write(b), Buffer.concat([silence(300), l.pcm]), clock);
      const flushedAt = performance.now();
      engine.flush();
      const f = await run.next();
      latencies.push(f.at - flushedAt);
      fromWord.push(f.at - wallOf(clock, f.endMs));
      await engine.stop();
    }
    console.log(`flush → final (real time): ${latencies.map((l) => l.toFixed(0)).join(", ")} ms; mean ${(latencies.reduce((a, b) => a + b, 0) / latencies.length).toFixed(0)} ms`);
    console.log(`  (last word's audio → final: mean ${(fromWord.reduce((a, b) => a + b, 0) / fromWord.length).toFixed(0)} ms)`);
  }
}

await main();
