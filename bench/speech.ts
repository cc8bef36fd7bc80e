/**
 * `npm run bench:speech`: the offline speech engine (PocketSphinx) measured through the real server
 * on the WAV fixtures of test/fixtures/speech/fixtures.json. Per fixture, a room of two: the speaker
 * streams the fixture on AudioStream in real time (20 ms frames, silence between repeats), the
 * listener watches PanelStream. Prints per fixture and in total:
 *  - latency: end of utterance (the last loud 10 ms of the line, as sent) → the line's last final
 *    server transcript on the listener's panel, p50/p99 over the repeats;
 *  - word error rate against the fixture's reference;
 *  - amount accuracy: every amount of the fixture read right and no other, each final read on its
 *    own as the room reads it (src/language's reader, through scripts/read-amounts.ts);
 * then memory: `--speakers N` people speaking at once, the recognisers' RSS and PSS per speaker.
 * Options: --repeat N (default 3), --only a,b, --speakers N (default 4), --json.
 * Needs sox (to read the WAVs) and the Debian PocketSphinx packages.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AudioEncoding } from "../gen/handshake/v1/audio_pb.js";
import type { PanelEvent } from "../gen/handshake/v1/events_pb.js";
import { AgentProfileSchema, PartyRole } from "../gen/handshake/v1/profile_pb.js";
import { RoomService, type AudioStreamRequestSchema } from "../gen/handshake/v1/room_service_pb.js";
import { TranscriptSource } from "../gen/handshake/v1/transcript_pb.js";
import { ROOT, startServer } from "./processes.js";
import { percentile, round2 } from "./stats.js";

type RoomClient = Client<typeof RoomService>;
type AudioRequest = MessageInitShape<typeof AudioStreamRequestSchema>;

interface Fixture {
  name: string;
  file: string;
  reference: string;
  amounts: { amountMinor: number; currency: string }[];
}

/** Quiet before the first line (the recogniser loads its model) and after each line. */
const LEAD_IN_MS = 1500;
const GAP_MS = 1500;
/** After the last line: time for a late final before the room is left. */
const TAIL_MS = 3000;
const FRAME_MS = 20;
/** A 10 ms block this far below the line's loudest block is not speech (about -35 dB). */
const SPEECH_END_RATIO = 0.018;

const FIXTURE_DIR = path.join(ROOT, "test", "fixtures", "speech");

/** The fixture's PCM16LE mono at its own rate, read with sox (the bench may not import the WAV reader). */
function loadPcm(file: string): { pcm: Buffer; rateHz: number } {
  const rateHz = Number(execFileSync("soxi", ["-r", file], { encoding: "utf8" }).trim());
  const pcm = execFileSync("sox", [file, "-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1", "-L", "-"], { maxBuffer: 64 << 20 });
  return { pcm, rateHz };
}

/** Where speech ends in `pcm`, ms: the end of the last 10 ms block near the line's peak loudness. */
function speechEndMs(pcm: Buffer, rateHz: number): number {
  const block = rateHz / 100;
  const rms: number[] = [];
  for (let at = 0; at + block * 2 <= pcm.length; at += block * 2) {
    let sum = 0;
    for (let i = 0; i < block; i++) {
      const s = pcm.readInt16LE(at + i * 2);
      sum += s * s;
    }
    rms.push(Math.sqrt(sum / block));
  }
  const peak = Math.max(...rms);
  let last = rms.length - 1;
  while (last > 0 && rms[last]! < peak * SPEECH_END_RATIO) last--;
  return (last + 1) * 10;
}

function words(text: string): string[] {
  return text.toLowerCase().replace(/[^a-z0-9' ]+/g, " ").split(/\s+/).filter(Boolean);
}

/** Word-level edit distance. */
function editDistance(ref: readonly string[], hyp: readonly string[]): number {
  let prev = Array.from({ length: hyp.length + 1 }, (_, j) => j);
  for (let i = 1; i <= ref.length; i++) {
    const row = [i];
    for (let j = 1; j <= hyp.length; j++) {
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (ref[i - 1] === hyp[j - 1] ? 0 : 1)));
    }
    prev = row;
  }
  return prev[hyp.length]!;
}

/** Amounts in each text, read by the product's reader in a child process (scripts/read-amounts.ts). */
function readAmounts(texts: string[]): { amountMinor: string; currency: string }[][] {
  const out = spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "scripts", "read-amounts.ts")], {
    cwd: ROOT,
    input: JSON.stringify(texts.map((text) => ({ text, currency: "GBP" }))),
    encoding: "utf8",
  });
  if (out.status !== 0) throw new Error(`read-amounts failed: ${out.stderr}`);
  return JSON.parse(out.stdout) as { amountMinor: string; currency: string }[][];
}

/** Private and proportional memory of the server's recogniser processes, MB. */
function recognisers(serverPid: number): { count: number; rssMb: number; pssMb: number } {
  let count = 0;
  let rssKb = 0;
  let pssKb = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) !== serverPid || !stat.includes("(pocketsphinx")) continue;
      const rollup = readFileSync(`/proc/${entry}/smaps_rollup`, "utf8");
      rssKb += Number(/^Rss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
      pssKb += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
      count++;
    } catch {
      // gone meanwhile
    }
  }
  return { count, rssMb: round2(rssKb / 1024), pssMb: round2(pssKb / 1024) };
}

/** A joined person with an open PanelStream and AudioStream at `rateHz`. */
interface Person {
  userId: string;
  panel: { event: PanelEvent; at: number }[];
  send(pcm: Buffer): void;
  close(): Promise<void>;
}

async function join(baseUrl: string, roomId: string, displayName: string, role: PartyRole, rateHz: number): Promise<Person> {
  let token: string | undefined;
  const connection = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager: connection,
    interceptors: [
      (next) => (req) => {
        if (token) req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      },
    ],
  });
  const room: RoomClient = createClient(RoomService, transport);
  const joined = await room.joinRoom({ roomId, profile: create(AgentProfileSchema, { displayName, role, currency: "GBP" }) });
  token = joined.sessionToken;
  const controller = new AbortController();
  const panel: Person["panel"] = [];
  const panelDone = (async () => {
    try {
      for await (const res of room.panelStream({ roomId, afterSeq: 0n }, { signal: controller.signal })) {
        if (res.event) panel.push({ event: res.event, at: performance.now() });
      }
    } catch {
      // ended by close()
    }
  })();
  const queue: AudioRequest[] = [{ message: { case: "format", value: { encoding: AudioEncoding.PCM16LE, sampleRateHz: rateHz, channels: 1 } } }];
  let wake: (() => void) | undefined;
  let ended = false;
  let seq = 0;
  const requests: AsyncIterable<AudioRequest> = {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        const next = queue.shift();
        if (next) yield next;
        else if (ended) return;
        else await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
  const audioDone = (async () => {
    try {
      for await (const _ of room.audioStream(requests, { signal: controller.signal })) {
        // peer audio is not measured
      }
    } catch {
      // ended by close()
    }
  })();
  return {
    userId: joined.userId,
    panel,
    send(pcm) {
      queue.push({ message: { case: "frame", value: { seq: BigInt(seq++), pcm } } });
      wake?.();
    },
    async close() {
      ended = true;
      wake?.();
      await new Promise((resolve) => setTimeout(resolve, 100));
      controller.abort();
      await Promise.all([audioDone, panelDone]);
      await room.leaveRoom({ roomId }).catch(() => undefined);
      connection.abort();
    },
  };
}

/** Sends `pcm` in 20 ms frames on the wall clock; returns when each frame went (performance.now). */
async function sendRealTime(person: Person, pcm: Buffer, rateHz: number, clock: { t0: number; sentMs: number }): Promise<number[]> {
  const frameBytes = (rateHz / 1000) * FRAME_MS * 2;
  const at: number[] = [];
  for (let i = 0; i < pcm.length; i += frameBytes) {
    const wait = clock.t0 + clock.sentMs - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    person.send(pcm.subarray(i, i + frameBytes));
    at.push(performance.now());
    clock.sentMs += FRAME_MS;
  }
  return at;
}

interface Heard {
  text: string;
  /** Each final's text: amounts are read per final, as the room reads them. */
  finals: string[];
  latencyMs: number | undefined;
}

/** One fixture, `repeat` times in one room; what the listener's panel showed for each repeat. */
async function runFixture(baseUrl: string, fixture: Fixture, repeat: number, runId: string): Promise<Heard[]> {
  const { pcm, rateHz } = loadPcm(path.join(FIXTURE_DIR, fixture.file));
  const endMs = speechEndMs(pcm, rateHz);
  const roomId = `speech-${runId}-${fixture.name}`;
  const speaker = await join(baseUrl, roomId, "Sam", PartyRole.PROVIDER, rateHz);
  const listener = await join(baseUrl, roomId, "Alex", PartyRole.CLIENT, rateHz);
  const quiet = (ms: number) => Buffer.alloc((rateHz / 1000) * ms * 2);
  try {
    const clock = { t0: performance.now(), sentMs: 0 };
    await sendRealTime(speaker, quiet(LEAD_IN_MS), rateHz, clock);
    const lines: { startMs: number; endWallMs: number }[] = [];
    for (let r = 0; r < repeat; r++) {
      const startMs = clock.sentMs;
      const sent = await sendRealTime(speaker, pcm, rateHz, clock);
      lines.push({ startMs, endWallMs: sent[Math.min(sent.length - 1, Math.ceil(endMs / FRAME_MS) - 1)]! });
      await sendRealTime(speaker, quiet(r === repeat - 1 ? TAIL_MS : GAP_MS), rateHz, clock);
    }
    const finals = listener.panel.flatMap(({ event, at }) =>
      event.event.case === "transcript" && event.event.value.isFinal && event.event.value.source === TranscriptSource.SERVER && event.event.value.speakerUserId === speaker.userId
        ? [{ entry: event.event.value, at }]
        : [],
    );
    return lines.map((line, r) => {
      // A word may be timed a little before its line starts (the recogniser's pre-speech frames).
      const from = line.startMs - 200;
      const until = (lines[r + 1]?.startMs ?? Infinity) - 200;
      const mine = finals.filter((f) => f.entry.startMs >= from && f.entry.startMs < until);
      const last = mine.at(-1);
      return { text: mine.map((f) => f.entry.text).join(" "), finals: mine.map((f) => f.entry.text), latencyMs: last ? last.at - line.endWallMs : undefined };
    });
  } finally {
    await Promise.all([speaker.close(), listener.close()]);
  }
}

/** `count` speakers talking at once (rooms of two, both speaking): recogniser memory per speaker. */
async function measureMemory(baseUrl: string, serverPid: number, fixture: Fixture, count: number, runId: string) {
  const { pcm, rateHz } = loadPcm(path.join(FIXTURE_DIR, fixture.file));
  const people: Person[] = [];
  try {
    for (let i = 0; i < count; i++) {
      people.push(await join(baseUrl, `speech-mem-${runId}-${i >> 1}`, `Speaker ${i}`, i % 2 ? PartyRole.CLIENT : PartyRole.PROVIDER, rateHz));
    }
    const quiet = Buffer.alloc((rateHz / 1000) * LEAD_IN_MS * 2);
    let peak = { count: 0, rssMb: 0, pssMb: 0 };
    await Promise.all(
      people.map(async (person, i) => {
        const clock = { t0: performance.now(), sentMs: 0 };
        await sendRealTime(person, quiet, rateHz, clock);
        await sendRealTime(person, pcm, rateHz, clock);
        if (i === 0) {
          const now = recognisers(serverPid);
          if (now.pssMb > peak.pssMb) peak = now;
        }
        await sendRealTime(person, quiet, rateHz, clock);
      }),
    );
    return {
      speakers: count,
      recogniserProcesses: peak.count,
      rssMb: peak.rssMb,
      pssMb: peak.pssMb,
      rssMbPerSpeaker: round2(peak.rssMb / count),
      pssMbPerSpeaker: round2(peak.pssMb / count),
    };
  } finally {
    await Promise.all(people.map((p) => p.close()));
  }
}

function latencyFigures(samples: number[]): { p50Ms: number | null; p99Ms: number | null } {
  return samples.length ? { p50Ms: round2(percentile(samples, 50)), p99Ms: round2(percentile(samples, 99)) } : { p50Ms: null, p99Ms: null };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { repeat: { type: "string", default: "3" }, only: { type: "string" }, speakers: { type: "string", default: "4" }, json: { type: "boolean", default: false } },
  });
  const repeat = Math.max(1, Number(values.repeat));
  const speakers = Math.max(0, Number(values.speakers));
  const only = values.only?.split(",");
  const manifest = JSON.parse(readFileSync(path.join(FIXTURE_DIR, "fixtures.json"), "utf8")) as { fixtures: Fixture[] };
  const fixtures = manifest.fixtures.filter((f) => !only || only.includes(f.name));
  const runId = Date.now().toString(36);
  const server = await startServer({ speech: "pocketsphinx", cpuProfDir: undefined });
  const baseUrl = `http://127.0.0.1:${server.port}`;
  const log = (line: string) => {
    if (!values.json) console.log(line);
  };
  try {
    const heard: { fixture: Fixture; runs: Heard[] }[] = [];
    for (const fixture of fixtures) {
      heard.push({ fixture, runs: await runFixture(baseUrl, fixture, repeat, runId) });
    }
    const perFinal = readAmounts(heard.flatMap((h) => h.runs.flatMap((r) => r.finals)));
    let nextFinal = 0;
    const amounts = heard.flatMap((h) => h.runs.map((r) => r.finals.flatMap(() => perFinal[nextFinal++]!)));
    let next = 0;
    const all: number[] = [];
    let refWords = 0;
    let errors = 0;
    let amountsRight = 0;
    let amountRuns = 0;
    let missed = 0;
    const perFixture = heard.map(({ fixture, runs }) => {
      const ref = words(fixture.reference);
      const expected = fixture.amounts.map((a) => `${a.amountMinor} ${a.currency}`).join(", ");
      let fixtureErrors = 0;
      let fixtureRight = 0;
      const latencies: number[] = [];
      for (const run of runs) {
        fixtureErrors += editDistance(ref, words(run.text));
        const got = amounts[next++]!.map((a) => `${a.amountMinor} ${a.currency}`).join(", ");
        if (got === expected) fixtureRight++;
        if (run.latencyMs === undefined) missed++;
        else latencies.push(run.latencyMs);
      }
      refWords += ref.length * runs.length;
      errors += fixtureErrors;
      if (fixture.amounts.length > 0) {
        amountRuns += runs.length;
        amountsRight += fixtureRight;
      }
      all.push(...latencies);
      const row = {
        name: fixture.name,
        ...latencyFigures(latencies),
        latenciesMs: latencies.map(round2),
        wer: round2(fixtureErrors / (ref.length * runs.length)),
        amountsRight: fixture.amounts.length > 0 ? `${fixtureRight}/${runs.length}` : "-",
        heard: runs[0]?.text ?? "",
      };
      log(
        `${row.name.padEnd(22)} p50 ${String(row.p50Ms ?? "-").padStart(7)} ms  p99 ${String(row.p99Ms ?? "-").padStart(7)} ms  WER ${row.wer.toFixed(2)}  amounts ${row.amountsRight.padEnd(4)}  "${row.heard}"`,
      );
      return row;
    });
    const totals = {
      fixtures: fixtures.length,
      repeats: repeat,
      ...latencyFigures(all),
      noFinal: missed,
      wer: refWords ? round2(errors / refWords) : null,
      amountAccuracy: amountRuns ? round2(amountsRight / amountRuns) : null,
    };
    log(`total: ${totals.fixtures} fixtures × ${repeat}: end of utterance → final p50 ${totals.p50Ms} ms, p99 ${totals.p99Ms} ms (${missed} without a final); WER ${totals.wer}; amounts right ${amountsRight}/${amountRuns} (${totals.amountAccuracy})`);
    const memory = speakers > 0 && fixtures[0] ? await measureMemory(baseUrl, server.pid, fixtures[0], speakers, runId) : undefined;
    if (memory) {
      log(`memory: ${memory.speakers} speaking at once, ${memory.recogniserProcesses} recogniser processes, RSS ${memory.rssMb} MB (${memory.rssMbPerSpeaker} MB per speaker), PSS ${memory.pssMb} MB (${memory.pssMbPerSpeaker} MB per speaker)`);
    }
    if (values.json) console.log(JSON.stringify({ fixtures: perFixture, totals, memory }, null, 2));
  } finally {
    await server.stop();
  }
}

await main();
