/**
 * `npm run bench`: the audio relay under real-time load, against our server and against the
 * floor (a bare byte relay) in the same run, plus panel fan-out and trigger → payments latency.
 *
 *   npm run bench -- [--rooms N] [--seconds D] [--json] [--capacity] [--speech ENGINE]
 *                    [--warmup S] [--fanout-rooms N] [--pipeline-rooms N] [--capacity-seconds S]
 *                    [--capacity-max N] [--cpu-prof]
 *
 * Every process is separate: the generator (bench/generator.ts), the floor relay
 * (bench/floor-relay.ts) and our server (src/main.ts bundled, as `npm start` runs it), so /proc tells their CPU apart. Runs are
 * bounded: each phase has a time limit, and capacity steps stop at the first failure.
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import type { GeneratorConfig, GeneratorResult } from "./generator.js";
import { measureFanout, measurePipeline, type FanoutResult, type PipelineResult } from "./pipeline.js";
import { ProcessSampler, rssMb } from "./proc.js";
import { ROOT, runGenerator, startFloor, startServer, type Service } from "./processes.js";
import { round2 } from "./stats.js";

/** Capacity: the largest room count meeting these. */
const CAPACITY_P99_MS = 20;
const CAPACITY_STEPS = [50, 100, 150, 200, 250, 300, 350, 400, 500, 600, 700, 800, 1000, 1200, 1500, 2000, 2500, 3000];

/** The settings of one bench run. */
interface Options {
  rooms: number;
  seconds: number;
  warmupSeconds: number;
  json: boolean;
  capacity: boolean;
  speech: string | undefined;
  fanoutRooms: number;
  fanoutMessages: number;
  pipelineRooms: number;
  pipelineConcurrency: number;
  capacitySeconds: number;
  capacityMax: number;
  cpuProfDir: string | undefined;
  repeat: number;
}

/** One load run against one service: what the generator saw and what /proc said. */
interface LoadRun {
  gen: GeneratorResult;
  cpuPct: number;
  rssMeanMb: number;
  rssPeakMb: number;
  /** RSS with every room connected and idle, before the first frame. */
  rssConnectedMb: number;
  /** CPU (% of one core) used during the window by processes other than this service and the generator. */
  otherCpuPct: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      rooms: { type: "string", default: "100" },
      seconds: { type: "string", default: "10" },
      warmup: { type: "string" },
      json: { type: "boolean", default: false },
      capacity: { type: "boolean", default: false },
      speech: { type: "string" },
      "fanout-rooms": { type: "string", default: "10" },
      "fanout-messages": { type: "string", default: "20" },
      "pipeline-rooms": { type: "string", default: "100" },
      "pipeline-concurrency": { type: "string", default: "4" },
      "capacity-seconds": { type: "string", default: "6" },
      "capacity-max": { type: "string", default: "2000" },
      "cpu-prof": { type: "boolean", default: false },
      repeat: { type: "string", default: "1" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      [
        "npm run bench -- [options]",
        "  --rooms N             rooms of 2 participants (default 100)",
        "  --seconds D           seconds of streaming per run (default 10)",
        "  --warmup S            seconds left out of latency and CPU (default min(2, D/4))",
        "  --json                print one JSON line instead of the table",
        "  --capacity            also find the largest room count with p99 <= 20 ms and no loss",
        "  --speech ENGINE       server speech engine: pocketsphinx | scribe | auto (default off: device transcripts only)",
        "  --fanout-rooms N      rooms for the panel fan-out measurement (default 10)",
        "  --fanout-messages N   transcripts per fan-out room (default 20)",
        "  --pipeline-rooms N    rooms for the trigger -> payments measurement, run one at a time and",
        "                        then N at once (default 100)",
        "  --pipeline-concurrency N  rooms at once in the second pipeline run (default 4)",
        "  --capacity-seconds S  seconds per capacity step (default 6)",
        "  --capacity-max N      largest room count tried (default 2000)",
        "  --repeat N            run floor and server N times each, report the least disturbed run of each (default 1)",
        "  --cpu-prof            write V8 CPU profiles of the server's and the floor's measurement windows to bench/profiles/",
        "                        (summarise it: node --import tsx bench/profile-summary.ts <file>)",
        "",
      ].join("\n"),
    );
    process.exit(0);
  }
  const int = (name: string, raw: string | undefined, min: number): number => {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min}, got ${raw}`);
    return n;
  };
  const seconds = int("seconds", values.seconds, 1);
  const speech = values.speech;
  if (speech !== undefined && !["pocketsphinx", "scribe", "auto", "device"].includes(speech)) {
    throw new Error(`--speech must be pocketsphinx, scribe, auto or device, got ${speech}`);
  }
  return {
    rooms: Math.floor(int("rooms", values.rooms, 1)),
    seconds,
    warmupSeconds: values.warmup === undefined ? Math.min(2, seconds / 4) : int("warmup", values.warmup, 0),
    json: values.json,
    capacity: values.capacity,
    speech: speech === "device" ? undefined : speech,
    fanoutRooms: Math.floor(int("fanout-rooms", values["fanout-rooms"], 0)),
    fanoutMessages: Math.floor(int("fanout-messages", values["fanout-messages"], 1)),
    pipelineRooms: Math.floor(int("pipeline-rooms", values["pipeline-rooms"], 0)),
    pipelineConcurrency: Math.floor(int("pipeline-concurrency", values["pipeline-concurrency"], 1)),
    capacitySeconds: int("capacity-seconds", values["capacity-seconds"], 2),
    capacityMax: Math.floor(int("capacity-max", values["capacity-max"], 1)),
    cpuProfDir: values["cpu-prof"] ? path.join(ROOT, "bench", "profiles") : undefined,
    repeat: Math.floor(int("repeat", values.repeat, 1)),
  };
}

const progress = (options: Options, text: string) => {
  // Progress goes to stderr so that --json leaves stdout to the one result line.
  if (!options.json || process.stderr.isTTY) process.stderr.write(`${text}\n`);
};

/** Streams `rooms` rooms through `service` and samples its process in the measurement window. */
async function load(
  service: Service,
  target: GeneratorConfig["target"],
  rooms: number,
  seconds: number,
  warmupSeconds: number,
  runId: string,
  profile = false,
): Promise<LoadRun> {
  const sampler = new ProcessSampler(service.pid);
  let window: ReturnType<ProcessSampler["stop"]> | undefined;
  let rssConnectedMb = 0;
  const gen = await runGenerator(
    {
      target,
      port: service.port,
      rooms,
      seconds,
      warmupSeconds,
      frameBytes: 640,
      frameIntervalMs: 20,
      runId,
      setupConcurrency: 16,
    },
    {
      // The generator pauses a second between setup and audio: collect garbage and read memory then.
      onReady: () => void service.collectGarbage().then(() => (rssConnectedMb = rssMb(service.pid))),
      onMeasureStart: () => {
        sampler.start();
        if (profile) process.kill(service.pid, "SIGUSR2");
      },
      onMeasureEnd: () => {
        window = sampler.stop();
        if (profile) process.kill(service.pid, "SIGUSR2");
      },
    },
  );
  window ??= { cpuPct: 0, rssMeanMb: 0, rssPeakMb: 0, machineCpuPct: 0 };
  const otherCpuPct = Math.max(0, window.machineCpuPct - window.cpuPct - gen.generatorCpuPct);
  return { gen, cpuPct: window.cpuPct, rssMeanMb: window.rssMeanMb, rssPeakMb: window.rssPeakMb, rssConnectedMb, otherCpuPct };
}

/** Idle RSS: after start, once the process has settled and start-up garbage is collected. */
async function idleRss(service: Service): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await service.collectGarbage();
  return rssMb(service.pid);
}

const passes = (run: LoadRun) => run.gen.lost === 0 && run.gen.streamErrors === 0 && run.gen.p99Ms <= CAPACITY_P99_MS;

/**
 * Steps the room count up (fresh process per step) until p99 > 20 ms or a frame is lost, then
 * bisects between the last pass and the first failure. Returns the largest passing count.
 */
async function findCapacity(kind: "server" | "floor", options: Options): Promise<{ rooms: number; steps: { rooms: number; p99Ms: number; lost: number; cpuPct: number; pass: boolean }[] }> {
  const steps: { rooms: number; p99Ms: number; lost: number; cpuPct: number; pass: boolean }[] = [];
  const tryRooms = async (rooms: number): Promise<boolean> => {
    const service = kind === "server" ? await startServer({ speech: options.speech, cpuProfDir: undefined }) : await startFloor();
    try {
      const run = await load(service, kind, rooms, options.capacitySeconds, Math.min(2, options.capacitySeconds / 3), `cap-${kind}-${rooms}-${Date.now()}`);
      const pass = passes(run);
      steps.push({ rooms, p99Ms: run.gen.p99Ms, lost: run.gen.lost, cpuPct: round2(run.cpuPct), pass });
      progress(options, `  capacity ${kind} ${rooms} rooms: p99 ${run.gen.p99Ms} ms, lost ${run.gen.lost}, CPU ${run.cpuPct.toFixed(1)}% ${pass ? "pass" : "FAIL"}`);
      return pass;
    } catch (err) {
      steps.push({ rooms, p99Ms: -1, lost: -1, cpuPct: -1, pass: false });
      progress(options, `  capacity ${kind} ${rooms} rooms: failed: ${(err as Error).message}`);
      return false;
    } finally {
      await service.stop();
    }
  };
  let best = 0;
  let failedAt: number | undefined;
  for (const rooms of CAPACITY_STEPS.filter((n) => n <= options.capacityMax)) {
    if (await tryRooms(rooms)) best = rooms;
    else {
      failedAt = rooms;
      break;
    }
  }
  // Narrow down between the last pass and the first failure, to within 10% (at most 3 more runs).
  for (let tries = 0; failedAt !== undefined && tries < 3 && failedAt - best > Math.max(10, best * 0.1); tries++) {
    const middle = Math.round((best + failedAt) / 2 / 5) * 5;
    if (middle <= best || middle >= failedAt) break;
    if (await tryRooms(middle)) best = middle;
    else failedAt = middle;
  }
  return { rooms: best, steps };
}

/** A pipeline run with the server's CPU use (% of one core) and the deals it completed per second. */
interface PipelinePhase {
  result: PipelineResult;
  serverCpuPct: number;
  dealsPerSecond: number;
}

/**
 * Rooms from talk to payments, `concurrency` at a time. One at a time gives the pipeline's own
 * latency; several at once show it while other rooms join, talk and sign (each room's whole life
 * costs the server far more than its pipeline, so this saturates a 2-core machine quickly).
 */
async function pipelinePhase(server: Service, baseUrl: string, rooms: number, concurrency: number, runId: string): Promise<PipelinePhase> {
  const sampler = new ProcessSampler(server.pid);
  sampler.start();
  const started = performance.now();
  const result = await measurePipeline(baseUrl, { rooms, concurrency, runId });
  const seconds = (performance.now() - started) / 1000;
  return { result, serverCpuPct: round2(sampler.stop().cpuPct), dealsPerSecond: round2(result.completed / seconds) };
}

function pipelineLines(title: string, { result: run, serverCpuPct, dealsPerSecond }: PipelinePhase): string[] {
  const ms = (n: number | null) => (n === null ? "n/a" : `${n.toFixed(2)} ms`);
  const stages = run.stagesP50Ms;
  return [
    `${title}: p50 ${ms(run.p50Ms)}, p99 ${ms(run.p99Ms)}, ${run.completed}/${run.rooms} rooms completed, server CPU ${serverCpuPct}%, ${dealsPerSecond} deals/s${run.errors.length ? ` — ${run.errors.join("; ")}` : ""}`,
    ...(stages ? [`  stages p50: negotiate ${stages.negotiate} ms, draft ${stages.draft} ms, both sign ${stages.sign} ms, pay ${stages.pay} ms`] : []),
  ];
}

function ratio(a: number, b: number): number | null {
  return b > 0 ? round2(a / b) : null;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  if (options.cpuProfDir) mkdirSync(options.cpuProfDir, { recursive: true });
  const runId = `bench-${Date.now().toString(36)}`;
  progress(options, `bench: ${options.rooms} rooms × 2 participants, ${options.seconds} s (warm-up ${options.warmupSeconds} s), speech ${options.speech ?? "off"}`);

  // Floor and server take turns, each in a fresh process; with --repeat the least disturbed
  // run of each (lowest CPU use by other processes) is reported.
  const floorRuns: { run: LoadRun; rssIdle: number }[] = [];
  const serverRuns: { run: LoadRun; rssIdle: number }[] = [];
  let fanout: FanoutResult = { samples: 0, p50Ms: null, p99Ms: null };
  const noPipeline: PipelineResult = { rooms: 0, completed: 0, p50Ms: null, p99Ms: null, stagesP50Ms: null, errors: [] };
  let pipeline: PipelinePhase = { result: noPipeline, serverCpuPct: 0, dealsPerSecond: 0 };
  let pipelineConcurrent: PipelinePhase = pipeline;
  for (let i = 0; i < options.repeat; i++) {
    const round = options.repeat > 1 ? ` (${i + 1}/${options.repeat})` : "";
    progress(options, `floor relay: streaming…${round}`);
    const profileFloor = options.cpuProfDir !== undefined && i === options.repeat - 1;
    const floorService = await startFloor(profileFloor ? options.cpuProfDir : undefined);
    try {
      const rssIdle = await idleRss(floorService);
      const run = await load(floorService, "floor", options.rooms, options.seconds, options.warmupSeconds, `${runId}-floor-${i}`, profileFloor);
      floorRuns.push({ run, rssIdle });
    } finally {
      await floorService.stop();
    }

    progress(options, `server: starting…${round}`);
    const last = i === options.repeat - 1;
    const server = await startServer({ speech: options.speech, cpuProfDir: last ? options.cpuProfDir : undefined });
    try {
      const rssIdle = await idleRss(server);
      progress(options, `server: streaming…${round}`);
      const run = await load(server, "server", options.rooms, options.seconds, options.warmupSeconds, `${runId}-srv-${i}`, last && options.cpuProfDir !== undefined);
      serverRuns.push({ run, rssIdle });
      if (!last) continue;
      // The room-level measurements, on the last server, after its relay run.
      const baseUrl = `http://127.0.0.1:${server.port}`;
      if (options.fanoutRooms > 0) {
        progress(options, "server: panel fan-out…");
        fanout = await measureFanout(baseUrl, { rooms: options.fanoutRooms, messages: options.fanoutMessages, runId });
      }
      if (options.pipelineRooms > 0) {
        progress(options, "server: trigger → payments, one room at a time…");
        pipeline = await pipelinePhase(server, baseUrl, options.pipelineRooms, 1, `${runId}-seq`);
        progress(options, `server: trigger → payments, ${options.pipelineConcurrency} rooms at a time…`);
        pipelineConcurrent = await pipelinePhase(server, baseUrl, options.pipelineRooms, options.pipelineConcurrency, `${runId}-par`);
      }
    } catch (err) {
      throw new Error(`${(err as Error).message}\nserver stderr:\n${server.stderrTail()}`);
    } finally {
      await server.stop();
    }
  }
  const leastDisturbed = <T>(runs: T[], other: (t: T) => number): T => runs.reduce((best, r) => (other(r) < other(best) ? r : best));
  const { run: floor, rssIdle: floorRssIdle } = leastDisturbed(floorRuns, (r) => r.run.otherCpuPct);
  const { run: ours, rssIdle } = leastDisturbed(serverRuns, (r) => r.run.otherCpuPct);

  let capacity: { server: Awaited<ReturnType<typeof findCapacity>>; floor: Awaited<ReturnType<typeof findCapacity>> } | undefined;
  if (options.capacity) {
    progress(options, "capacity: floor…");
    const floorCapacity = await findCapacity("floor", options);
    progress(options, "capacity: server…");
    const serverCapacity = await findCapacity("server", options);
    capacity = { server: serverCapacity, floor: floorCapacity };
  }

  const rssLoad = ours.rssPeakMb;
  const result = {
    rooms: options.rooms,
    seconds: options.seconds,
    repeat: options.repeat,
    speech: options.speech ?? "off",
    sent: ours.gen.sent,
    received: ours.gen.received,
    lost: ours.gen.lost,
    reordered: ours.gen.reordered,
    streamErrors: ours.gen.streamErrors,
    p50Ms: ours.gen.p50Ms,
    p95Ms: ours.gen.p95Ms,
    p99Ms: ours.gen.p99Ms,
    maxMs: ours.gen.maxMs,
    serverCpuPct: round2(ours.cpuPct),
    floorCpuPct: round2(floor.cpuPct),
    floorSent: floor.gen.sent,
    floorLost: floor.gen.lost,
    floorP50Ms: floor.gen.p50Ms,
    floorP99Ms: floor.gen.p99Ms,
    floorMaxMs: floor.gen.maxMs,
    cpuRatioToFloor: ratio(ours.cpuPct, floor.cpuPct),
    p99RatioToFloor: ratio(ours.gen.p99Ms, floor.gen.p99Ms),
    rssMbIdle: round2(rssIdle),
    rssMbLoad: round2(rssLoad),
    rssKbPerRoom: round2(((rssLoad - rssIdle) * 1024) / options.rooms),
    rssMbConnected: round2(ours.rssConnectedMb),
    rssKbPerConnectedRoom: round2(((ours.rssConnectedMb - rssIdle) * 1024) / options.rooms),
    floorRssKbPerConnectedRoom: round2(((floor.rssConnectedMb - floorRssIdle) * 1024) / options.rooms),
    floorRssMbIdle: round2(floorRssIdle),
    floorRssMbLoad: round2(floor.rssPeakMb),
    floorRssKbPerRoom: round2(((floor.rssPeakMb - floorRssIdle) * 1024) / options.rooms),
    generatorCpuPct: ours.gen.generatorCpuPct,
    generatorLoopDelayP99Ms: ours.gen.generatorLoopDelayP99Ms,
    floorGeneratorCpuPct: floor.gen.generatorCpuPct,
    floorGeneratorLoopDelayP99Ms: floor.gen.generatorLoopDelayP99Ms,
    otherCpuPct: round2(ours.otherCpuPct),
    floorOtherCpuPct: round2(floor.otherCpuPct),
    fanoutP50Ms: fanout.p50Ms,
    fanoutP99Ms: fanout.p99Ms,
    fanoutSamples: fanout.samples,
    ...(fanout.error ? { fanoutError: fanout.error } : {}),
    pipelineP50Ms: pipeline.result.p50Ms,
    pipelineP99Ms: pipeline.result.p99Ms,
    pipelineRooms: pipeline.result.rooms,
    pipelineCompleted: pipeline.result.completed,
    pipelineStagesP50Ms: pipeline.result.stagesP50Ms,
    pipelineServerCpuPct: pipeline.serverCpuPct,
    pipelineConcurrency: options.pipelineConcurrency,
    pipelineConcurrentP50Ms: pipelineConcurrent.result.p50Ms,
    pipelineConcurrentP99Ms: pipelineConcurrent.result.p99Ms,
    pipelineConcurrentCompleted: pipelineConcurrent.result.completed,
    pipelineConcurrentStagesP50Ms: pipelineConcurrent.result.stagesP50Ms,
    pipelineConcurrentServerCpuPct: pipelineConcurrent.serverCpuPct,
    pipelineConcurrentDealsPerSecond: pipelineConcurrent.dealsPerSecond,
    ...(pipeline.result.errors.length || pipelineConcurrent.result.errors.length
      ? { pipelineError: [...pipeline.result.errors, ...pipelineConcurrent.result.errors].join("; ") }
      : {}),
    ...(capacity
      ? {
          capacityRooms: capacity.server.rooms,
          floorCapacityRooms: capacity.floor.rooms,
          capacityRatioToFloor: ratio(capacity.server.rooms, capacity.floor.rooms),
          capacitySteps: { server: capacity.server.steps, floor: capacity.floor.steps },
        }
      : {}),
    streamErrorSamples: [...ours.gen.errors, ...floor.gen.errors],
  };

  if (options.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const row = (name: string, run: LoadRun) =>
    [
      name.padEnd(18),
      String(run.gen.sent).padStart(8),
      String(run.gen.received).padStart(9),
      String(run.gen.lost).padStart(6),
      String(run.gen.reordered).padStart(6),
      run.gen.p50Ms.toFixed(2).padStart(8),
      run.gen.p95Ms.toFixed(2).padStart(8),
      run.gen.p99Ms.toFixed(2).padStart(8),
      run.gen.maxMs.toFixed(2).padStart(8),
      run.cpuPct.toFixed(1).padStart(9),
      run.rssPeakMb.toFixed(1).padStart(8),
      run.gen.generatorCpuPct.toFixed(1).padStart(8),
      run.gen.generatorLoopDelayP99Ms.toFixed(2).padStart(9),
      run.otherCpuPct.toFixed(1).padStart(8),
    ].join(" ");
  const ms = (n: number | null) => (n === null ? "n/a" : `${n.toFixed(2)} ms`);
  const lines = [
    "",
    `Audio relay: ${options.rooms} rooms × 2 participants, 640-byte frames every 20 ms for ${options.seconds} s (warm-up ${options.warmupSeconds} s), server speech ${options.speech ?? "off"}`,
    "",
    `${"".padEnd(18)} ${"sent".padStart(8)} ${"received".padStart(9)} ${"lost".padStart(6)} ${"reord".padStart(6)} ${"p50 ms".padStart(8)} ${"p95 ms".padStart(8)} ${"p99 ms".padStart(8)} ${"max ms".padStart(8)} ${"CPU %core".padStart(9)} ${"RSS MB".padStart(8)} ${"gen CPU%".padStart(8)} ${"gen loop".padStart(9)} ${"other%".padStart(8)}`,
    row("floor relay", floor),
    row("handshake server", ours),
    "",
    `server / floor: CPU ×${result.cpuRatioToFloor ?? "n/a"}, p99 ×${result.p99RatioToFloor ?? "n/a"}`,
    `server RSS: idle ${result.rssMbIdle} MB, rooms connected ${result.rssMbConnected} MB, under load ${result.rssMbLoad} MB; per room: ${result.rssKbPerConnectedRoom} KB connected, ${result.rssKbPerRoom} KB under load (floor: ${result.floorRssMbIdle} → ${result.floorRssMbLoad} MB; per room ${result.floorRssKbPerConnectedRoom} KB connected, ${result.floorRssKbPerRoom} KB under load)`,
    `panel fan-out (transcript sent → both PanelStreams have it): p50 ${ms(fanout.p50Ms)}, p99 ${ms(fanout.p99Ms)} over ${fanout.samples} transcripts${fanout.error ? ` — errors: ${fanout.error}` : ""}`,
    ...pipelineLines("pipeline (trigger → payments executed, offline engines), one room at a time", pipeline),
    ...pipelineLines(`pipeline, ${options.pipelineConcurrency} rooms at a time`, pipelineConcurrent),
  ];
  if (capacity) {
    lines.push(
      `capacity (p99 ≤ ${CAPACITY_P99_MS} ms, no loss): server ${capacity.server.rooms} rooms, floor ${capacity.floor.rooms} rooms, ratio ${result.capacityRatioToFloor ?? "n/a"}`,
    );
  }
  if (result.streamErrorSamples.length) lines.push(`stream errors: ${result.streamErrorSamples.join("; ")}`);
  lines.push(
    "gen CPU% and gen loop (p99 event-loop delay, ms) are the generator's own: high values mean it, not the server, was the limit.",
    "other% is CPU used meanwhile by everything else on the machine (% of one core): high values mean the run was disturbed.",
    "",
  );
  process.stdout.write(lines.join("\n"));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
