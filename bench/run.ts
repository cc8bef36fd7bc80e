/**
 * `npm run bench`: the audio relay under real-time load, against our server and against two
 * floors (a bare node:http2 byte relay and a bare `ws` WebSocket relay) in the same run, plus
 * panel fan-out and trigger → payments latency.
 *
 *   npm run bench -- [--rooms N] [--seconds D] [--repeat N] [--json] [--capacity [--plot FILE]]
 *                    [--speech ENGINE] [--warmup S] [--fanout-rooms N] [--pipeline-rooms N]
 *                    [--capacity-seconds S] [--capacity-max N] [--cpu-prof]
 *   npm run bench -- --nodes N [--capacity-seconds S]   (capacity through 1…N nodes behind the router: bench/nodes.ts)
 *   npm run bench -- --observability [--rooms N] [--seconds D] [--repeat N] [--json] [--cpu-prof]   (metrics and tracing on vs off)
 *
 * Every process is separate: the generator (bench/generator.ts), the floors
 * (bench/floor-relay.ts, bench/ws-floor-relay.ts) and our server (src/main.ts bundled, as
 * `npm start` runs it), so /proc tells their CPU apart. Runs are bounded: each phase has a time
 * limit, and capacity steps stop at the first failure.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import type { GeneratorResult } from "./generator.js";
import { runNodesBench } from "./nodes.js";
import { startOtlpSink } from "./otlp-sink.js";
import { measureFanout, measurePipeline, type FanoutResult, type PipelineResult } from "./pipeline.js";
import { capacitySvg } from "./plot.js";
import { ProcessSampler, rssMb } from "./proc.js";
import { ROOT, runGenerator, startFloor, startServer, type FloorKind, type Service } from "./processes.js";
import { round2, spread, type Spread } from "./stats.js";

/** Capacity: the largest room count meeting these. */
const CAPACITY_P99_MS = 20;
const CAPACITY_STEPS = [25, 50, 100, 150, 200, 250, 300, 350, 400, 500, 600, 700, 800, 1000, 1200, 1500, 2000, 2500, 3000];

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
  /** With --heap-snapshot: the folder for the server's heap snapshots (idle, then rooms connected). */
  heapSnapshotDir: string | undefined;
  /** With --capacity: where to write the SVG of p99 and CPU against rooms. */
  plotFile: string | undefined;
}

/** What a load run is pointed at: our server or one of the floors. */
type Kind = "server" | FloorKind;
/** The floors, in the order they run and are printed. */
const FLOORS: readonly FloorKind[] = ["floor", "ws-floor"];
const KIND_LABEL: Record<Kind, string> = { server: "handshake server", floor: "http2 floor", "ws-floor": "ws floor" };

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
      plot: { type: "string" },
      "heap-snapshot": { type: "boolean", default: false },
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
        "  --repeat N            run both floors and the server N times each; each figure is the median, with min and max (default 1)",
        "  --plot FILE           with --capacity: write an SVG of p99 and CPU against rooms for the server and both floors",
        "                        (every step up to --capacity-max is run, past the first failure too)",
        "  --cpu-prof            write V8 CPU profiles of the server's and the floors' measurement windows, and of the",
        "                        server in the concurrent pipeline phase, to bench/profiles/",
        "                        (summarise it: node --import tsx bench/profile-summary.ts <file>)",
        "  --heap-snapshot       write heap snapshots of the last server, idle and with every room connected, to bench/profiles/",
        "                        (what a room holds: node --import tsx bench/heap-diff.ts <idle> <connected> 30 <rooms>);",
        "                        the snapshots stall the server, so that run's figures are disturbed",
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
    plotFile: values.plot === undefined ? undefined : path.resolve(values.plot),
    heapSnapshotDir: values["heap-snapshot"] ? path.join(ROOT, "bench", "profiles") : undefined,
  };
}

const progress = (options: Options, text: string) => {
  // Progress goes to stderr so that --json leaves stdout to the one result line.
  if (!options.json || process.stderr.isTTY) process.stderr.write(`${text}\n`);
};

/** Streams `rooms` rooms through `service` and samples its process in the measurement window. */
async function load(
  service: Service,
  target: Kind,
  rooms: number,
  seconds: number,
  warmupSeconds: number,
  runId: string,
  profile = false,
  heapSnapshot = false,
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
      onReady: () =>
        void service.collectGarbage().then(() => {
          rssConnectedMb = rssMb(service.pid);
          if (heapSnapshot) process.kill(service.pid, "SIGTTIN");
        }),
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

/** A floor in a fresh process: idle memory, then the load. */
async function floorRun(kind: FloorKind, options: Options, runId: string, profileDir: string | undefined): Promise<Measured> {
  const service = await startFloor(profileDir, kind);
  try {
    const rssIdle = await idleRss(service, kind, runId);
    const run = await load(service, kind, options.rooms, options.seconds, options.warmupSeconds, runId, profileDir !== undefined);
    return { run, rssIdle };
  } finally {
    await service.stop();
  }
}

/** One load run and the idle RSS of its process before it. */
interface Measured {
  run: LoadRun;
  rssIdle: number;
}

/** The figures of one kind over its --repeat runs: medians with min and max, counts summed. */
interface Summary {
  cpuPct: Spread;
  p50Ms: Spread;
  p95Ms: Spread;
  p99Ms: Spread;
  maxMs: Spread;
  rssMbIdle: Spread;
  rssMbConnected: Spread;
  rssMbLoad: Spread;
  rssKbPerConnectedRoom: Spread;
  rssKbPerRoom: Spread;
  generatorCpuPct: Spread;
  generatorLoopDelayP99Ms: Spread;
  otherCpuPct: Spread;
  sent: number;
  received: number;
  lost: number;
  reordered: number;
  streamErrors: number;
  errors: string[];
}

function summarise(runs: readonly Measured[], rooms: number): Summary {
  const of = (f: (m: Measured) => number) => spread(runs.map(f));
  const sum = (f: (m: Measured) => number) => runs.reduce((total, m) => total + f(m), 0);
  return {
    cpuPct: of((m) => m.run.cpuPct),
    p50Ms: of((m) => m.run.gen.p50Ms),
    p95Ms: of((m) => m.run.gen.p95Ms),
    p99Ms: of((m) => m.run.gen.p99Ms),
    maxMs: of((m) => m.run.gen.maxMs),
    rssMbIdle: of((m) => m.rssIdle),
    rssMbConnected: of((m) => m.run.rssConnectedMb),
    rssMbLoad: of((m) => m.run.rssPeakMb),
    rssKbPerConnectedRoom: of((m) => ((m.run.rssConnectedMb - m.rssIdle) * 1024) / rooms),
    rssKbPerRoom: of((m) => ((m.run.rssPeakMb - m.rssIdle) * 1024) / rooms),
    generatorCpuPct: of((m) => m.run.gen.generatorCpuPct),
    generatorLoopDelayP99Ms: of((m) => m.run.gen.generatorLoopDelayP99Ms),
    otherCpuPct: of((m) => m.run.otherCpuPct),
    sent: sum((m) => m.run.gen.sent),
    received: sum((m) => m.run.gen.received),
    lost: sum((m) => m.run.gen.lost),
    reordered: sum((m) => m.run.gen.reordered),
    streamErrors: sum((m) => m.run.gen.streamErrors),
    errors: runs.flatMap((m) => m.run.gen.errors).slice(0, 5),
  };
}

/** Rooms streamed for a second before idle memory is read (see idleRss). */
const WARM_UP_ROOMS = 2;

/**
 * Idle RSS: after start and one short warm-up load (WARM_UP_ROOMS rooms joined, streamed and
 * left), once start-up garbage is collected. The warm-up pays what a process pays once, not per
 * room: the JIT's code for the join and relay paths and modules loaded on first use, which would
 * otherwise be counted against the rooms of the measured run.
 */
async function idleRss(service: Service, kind: Kind, runId: string): Promise<number> {
  await runGenerator({ target: kind, port: service.port, rooms: WARM_UP_ROOMS, seconds: 1, warmupSeconds: 0, frameBytes: 640, frameIntervalMs: 20, runId: `${runId}-warm`, setupConcurrency: 2 });
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await service.collectGarbage();
  return rssMb(service.pid);
}

/** Frames each participant sends in `seconds` at one every 20 ms (the generator counts ticks the same way). */
const framesPerParticipant = (seconds: number) => Math.round((seconds * 1000) / 20);

/** No loss, no stream error, p99 within the limit, and every participant sent every frame (none stopped early). */
const passes = (run: LoadRun, seconds: number) =>
  run.gen.lost === 0 &&
  run.gen.streamErrors === 0 &&
  run.gen.p99Ms <= CAPACITY_P99_MS &&
  run.gen.measured > 0 &&
  run.gen.sent === run.gen.streams * framesPerParticipant(seconds);

/**
 * Steps the room count up (fresh process per step) until p99 > 20 ms or a frame is lost, then
 * bisects between the last pass and the first failure. Returns the largest passing count.
 */
async function findCapacity(kind: Kind, options: Options): Promise<{ rooms: number; steps: { rooms: number; p99Ms: number; lost: number; cpuPct: number; pass: boolean }[] }> {
  const steps: { rooms: number; p99Ms: number; lost: number; cpuPct: number; pass: boolean }[] = [];
  const tryRooms = async (rooms: number): Promise<boolean> => {
    const service = kind === "server" ? await startServer({ speech: options.speech, cpuProfDir: undefined }) : await startFloor(undefined, kind);
    try {
      const run = await load(service, kind, rooms, options.capacitySeconds, Math.min(2, options.capacitySeconds / 3), `cap-${kind}-${rooms}-${Date.now()}`);
      const pass = passes(run, options.capacitySeconds);
      // A step that measured no frame has no latency to show (-1: left out of the plot).
      steps.push({ rooms, p99Ms: run.gen.measured > 0 ? run.gen.p99Ms : -1, lost: run.gen.lost, cpuPct: round2(run.cpuPct), pass });
      const expected = run.gen.streams * framesPerParticipant(options.capacitySeconds);
      progress(options, `  capacity ${kind} ${rooms} rooms: p99 ${run.gen.p99Ms} ms, sent ${run.gen.sent}/${expected}, lost ${run.gen.lost}, CPU ${run.cpuPct.toFixed(1)}% ${pass ? "pass" : "FAIL"}`);
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
    // With --plot every step is run, so the picture shows each curve past its limit too.
    if (failedAt !== undefined) await tryRooms(rooms);
    else if (await tryRooms(rooms)) best = rooms;
    else {
      failedAt = rooms;
      if (!options.plotFile) break;
    }
  }
  if (options.plotFile) return { rooms: best, steps };
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

/** What metrics and tracing may cost on the audio hot path: 5 % of the server's CPU with both off. */
const OBSERVABILITY_BUDGET_PCT = 5;
/** How often the --observability "on" runs scrape /metrics, milliseconds. */
const OBSERVABILITY_SCRAPE_MS = 5_000;

/**
 * `--observability`: the same relay load against the server with metrics and tracing both off
 * (METRICS=off, no OTEL_EXPORTER_OTLP_ENDPOINT) and both on (/metrics scraped every
 * OBSERVABILITY_SCRAPE_MS, a third of the repo's 15 s scrape interval so a short run sees several,
 * spans exported over OTLP to bench/otlp-sink.ts), alternating in the same run,
 * each in a fresh process, --repeat times; prints the server's CPU of each and the difference.
 */
async function runObservabilityBench(argv: string[]): Promise<void> {
  const options = parseOptions(argv);
  for (const mode of ["off", "on"]) if (options.cpuProfDir) mkdirSync(path.join(options.cpuProfDir, `observability-${mode}`), { recursive: true });
  const runId = `bench-obs-${Date.now().toString(36)}`;
  const modes = ["off", "on"] as const;
  const cpu: Record<(typeof modes)[number], number[]> = { off: [], on: [] };
  const p99: Record<(typeof modes)[number], number[]> = { off: [], on: [] };
  let spans = 0;
  let scrapes = 0;
  progress(options, `observability: ${options.rooms} rooms × 2 participants, ${options.seconds} s, metrics and tracing off vs on, ${options.repeat}×`);
  for (let i = 0; i < options.repeat; i++) {
    // Alternating which goes first, so a machine that warms up or gets busier favours neither.
    for (const mode of i % 2 === 0 ? modes : [...modes].reverse()) {
      progress(options, `observability ${mode}: streaming… (${i + 1}/${options.repeat})`);
      const sink = mode === "on" ? await startOtlpSink() : undefined;
      // With --cpu-prof the last repeat of each mode writes a profile (the file name says which).
      const profiled = options.cpuProfDir !== undefined && i === options.repeat - 1;
      const server = await startServer({
        speech: options.speech,
        cpuProfDir: profiled ? path.join(options.cpuProfDir!, `observability-${mode}`) : undefined,
        env: sink ? { METRICS: "on", OTEL_EXPORTER_OTLP_ENDPOINT: sink.url } : { METRICS: "off", OTEL_EXPORTER_OTLP_ENDPOINT: "", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "" },
      });
      const scraper = sink
        ? setInterval(() => void fetch(`http://127.0.0.1:${server.port}/metrics`).then((r) => r.text()).then(() => scrapes++, () => undefined), OBSERVABILITY_SCRAPE_MS)
        : undefined;
      try {
        await idleRss(server, "server", `${runId}-${mode}-${i}`);
        const run = await load(server, "server", options.rooms, options.seconds, options.warmupSeconds, `${runId}-${mode}-${i}`, profiled);
        cpu[mode].push(run.cpuPct);
        p99[mode].push(run.gen.p99Ms);
      } catch (err) {
        throw new Error(`${(err as Error).message}\nserver stderr:\n${server.stderrTail()}`);
      } finally {
        clearInterval(scraper);
        // The server flushes its spans as it stops.
        await server.stop();
        spans += sink?.spanNames.length ?? 0;
        await sink?.close();
      }
    }
  }
  const off = spread(cpu.off);
  const on = spread(cpu.on);
  const deltaPct = round2(on.median - off.median);
  const relativePct = off.median > 0 ? round2((deltaPct / off.median) * 100) : null;
  const result = {
    rooms: options.rooms,
    seconds: options.seconds,
    repeat: options.repeat,
    serverCpuPctOff: off,
    serverCpuPctOn: on,
    cpuDeltaPct: deltaPct,
    cpuDeltaRelativePct: relativePct,
    withinBudget: relativePct === null ? null : relativePct <= OBSERVABILITY_BUDGET_PCT,
    p99MsOff: spread(p99.off),
    p99MsOn: spread(p99.on),
    spansExported: spans,
    scrapes,
  };
  if (options.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const fmt = (s: Spread, unit: string) => (options.repeat > 1 ? `${s.median}${unit} (${s.min}–${s.max})` : `${s.median}${unit}`);
  process.stdout.write(
    [
      `observability cost, ${options.rooms} rooms × 2 participants, ${options.seconds} s, ${options.repeat} run(s) each (median, min–max):`,
      `  server CPU, metrics and tracing off: ${fmt(off, "%")}`,
      `  server CPU, metrics and tracing on:  ${fmt(on, "%")}  (/metrics scraped every ${OBSERVABILITY_SCRAPE_MS / 1000} s: ${scrapes} scrapes; ${spans} spans exported over OTLP)`,
      `  delta: ${deltaPct} points of one core, ${relativePct ?? "n/a"} % of the server's CPU with both off (budget ${OBSERVABILITY_BUDGET_PCT} %: ${result.withinBudget === null ? "n/a" : result.withinBudget ? "within" : "OVER"})`,
      `  p99 relay latency: off ${fmt(spread(p99.off), " ms")}, on ${fmt(spread(p99.on), " ms")}`,
      "",
    ].join("\n"),
  );
}

function ratio(a: number, b: number): number | null {
  return b > 0 ? round2(a / b) : null;
}

async function main(): Promise<void> {
  // `--nodes N`: the relay through N nodes behind the router, a run of its own (bench/nodes.ts).
  if (process.argv.includes("--nodes")) return runNodesBench(process.argv.slice(2));
  // `--observability`: the relay with metrics and tracing both on, then both off, a run of its own.
  if (process.argv.includes("--observability")) return runObservabilityBench(process.argv.slice(2).filter((a) => a !== "--observability"));
  const options = parseOptions(process.argv.slice(2));
  for (const dir of [options.cpuProfDir, options.heapSnapshotDir]) if (dir) mkdirSync(dir, { recursive: true });
  const runId = `bench-${Date.now().toString(36)}`;
  progress(options, `bench: ${options.rooms} rooms × 2 participants, ${options.seconds} s (warm-up ${options.warmupSeconds} s), speech ${options.speech ?? "off"}`);

  // Both floors and the server take turns, each in a fresh process; with --repeat every figure
  // is the median of the runs (min and max beside it), so one disturbed run does not decide it.
  const runs: Record<Kind, Measured[]> = { floor: [], "ws-floor": [], server: [] };
  let fanout: FanoutResult = { samples: 0, p50Ms: null, p99Ms: null };
  const noPipeline: PipelineResult = { rooms: 0, completed: 0, p50Ms: null, p99Ms: null, stagesP50Ms: null, errors: [] };
  let pipeline: PipelinePhase = { result: noPipeline, serverCpuPct: 0, dealsPerSecond: 0 };
  let pipelineConcurrent: PipelinePhase = pipeline;
  for (let i = 0; i < options.repeat; i++) {
    const round = options.repeat > 1 ? ` (${i + 1}/${options.repeat})` : "";
    const last = i === options.repeat - 1;
    for (const kind of FLOORS) {
      progress(options, `${KIND_LABEL[kind]}: streaming…${round}`);
      runs[kind].push(await floorRun(kind, options, `${runId}-${kind}-${i}`, last ? options.cpuProfDir : undefined));
    }

    progress(options, `server: starting…${round}`);
    const heapSnapshot = last && options.heapSnapshotDir !== undefined;
    const server = await startServer({ speech: options.speech, cpuProfDir: last ? options.cpuProfDir : undefined, heapSnapshotDir: heapSnapshot ? options.heapSnapshotDir : undefined });
    try {
      const rssIdle = await idleRss(server, "server", `${runId}-srv-${i}`);
      if (heapSnapshot) process.kill(server.pid, "SIGTTIN");
      progress(options, `server: streaming…${round}`);
      const run = await load(server, "server", options.rooms, options.seconds, options.warmupSeconds, `${runId}-srv-${i}`, last && options.cpuProfDir !== undefined, heapSnapshot);
      runs.server.push({ run, rssIdle });
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
        // With --cpu-prof the server's profile of this phase is written too (probe.mjs: SIGUSR2 starts, then writes).
        if (options.cpuProfDir) process.kill(server.pid, "SIGUSR2");
        pipelineConcurrent = await pipelinePhase(server, baseUrl, options.pipelineRooms, options.pipelineConcurrency, `${runId}-par`);
        if (options.cpuProfDir) process.kill(server.pid, "SIGUSR2");
      }
    } catch (err) {
      throw new Error(`${(err as Error).message}\nserver stderr:\n${server.stderrTail()}`);
    } finally {
      await server.stop();
    }
  }
  const ours = summarise(runs.server, options.rooms);
  const floor = summarise(runs.floor, options.rooms);
  const wsFloor = summarise(runs["ws-floor"], options.rooms);

  let capacity: Record<Kind, Awaited<ReturnType<typeof findCapacity>>> | undefined;
  if (options.capacity) {
    const found: Partial<Record<Kind, Awaited<ReturnType<typeof findCapacity>>>> = {};
    for (const kind of [...FLOORS, "server"] as const) {
      progress(options, `capacity: ${KIND_LABEL[kind]}…`);
      found[kind] = await findCapacity(kind, options);
    }
    capacity = found as Record<Kind, Awaited<ReturnType<typeof findCapacity>>>;
    if (options.plotFile) {
      const svg = capacitySvg({
        title: `Audio relay, 2 participants per room, 640-byte frames every 20 ms (${options.capacitySeconds} s per step)`,
        series: [
          { name: "handshake server", color: "#1f6feb", steps: capacity.server.steps },
          { name: "http2 floor", color: "#8b949e", steps: capacity.floor.steps },
          { name: "ws floor", color: "#d29922", steps: capacity["ws-floor"].steps },
        ],
        p99LimitMs: CAPACITY_P99_MS,
      });
      mkdirSync(path.dirname(options.plotFile), { recursive: true });
      writeFileSync(options.plotFile, svg);
      progress(options, `capacity plot written: ${options.plotFile}`);
    }
  }

  const result = {
    rooms: options.rooms,
    seconds: options.seconds,
    repeat: options.repeat,
    speech: options.speech ?? "off",
    // Counts are totals over the --repeat runs; figures are medians (their spread is in `spread`).
    sent: ours.sent,
    received: ours.received,
    lost: ours.lost,
    reordered: ours.reordered,
    streamErrors: ours.streamErrors,
    p50Ms: ours.p50Ms.median,
    p95Ms: ours.p95Ms.median,
    p99Ms: ours.p99Ms.median,
    maxMs: ours.maxMs.median,
    serverCpuPct: ours.cpuPct.median,
    floorCpuPct: floor.cpuPct.median,
    floorSent: floor.sent,
    floorLost: floor.lost,
    floorP50Ms: floor.p50Ms.median,
    floorP99Ms: floor.p99Ms.median,
    floorMaxMs: floor.maxMs.median,
    wsFloorCpuPct: wsFloor.cpuPct.median,
    wsFloorSent: wsFloor.sent,
    wsFloorLost: wsFloor.lost,
    wsFloorP50Ms: wsFloor.p50Ms.median,
    wsFloorP99Ms: wsFloor.p99Ms.median,
    wsFloorMaxMs: wsFloor.maxMs.median,
    cpuRatioToFloor: ratio(ours.cpuPct.median, floor.cpuPct.median),
    p99RatioToFloor: ratio(ours.p99Ms.median, floor.p99Ms.median),
    cpuRatioToWsFloor: ratio(ours.cpuPct.median, wsFloor.cpuPct.median),
    p99RatioToWsFloor: ratio(ours.p99Ms.median, wsFloor.p99Ms.median),
    rssMbIdle: ours.rssMbIdle.median,
    rssMbLoad: ours.rssMbLoad.median,
    rssKbPerRoom: ours.rssKbPerRoom.median,
    rssMbConnected: ours.rssMbConnected.median,
    rssKbPerConnectedRoom: ours.rssKbPerConnectedRoom.median,
    floorRssKbPerConnectedRoom: floor.rssKbPerConnectedRoom.median,
    floorRssMbIdle: floor.rssMbIdle.median,
    floorRssMbLoad: floor.rssMbLoad.median,
    floorRssKbPerRoom: floor.rssKbPerRoom.median,
    wsFloorRssKbPerConnectedRoom: wsFloor.rssKbPerConnectedRoom.median,
    wsFloorRssMbIdle: wsFloor.rssMbIdle.median,
    wsFloorRssMbLoad: wsFloor.rssMbLoad.median,
    generatorCpuPct: ours.generatorCpuPct.median,
    generatorLoopDelayP99Ms: ours.generatorLoopDelayP99Ms.median,
    floorGeneratorCpuPct: floor.generatorCpuPct.median,
    floorGeneratorLoopDelayP99Ms: floor.generatorLoopDelayP99Ms.median,
    wsFloorGeneratorCpuPct: wsFloor.generatorCpuPct.median,
    otherCpuPct: ours.otherCpuPct.median,
    floorOtherCpuPct: floor.otherCpuPct.median,
    wsFloorOtherCpuPct: wsFloor.otherCpuPct.median,
    spread: {
      serverCpuPct: ours.cpuPct,
      serverP99Ms: ours.p99Ms,
      floorCpuPct: floor.cpuPct,
      floorP99Ms: floor.p99Ms,
      wsFloorCpuPct: wsFloor.cpuPct,
      wsFloorP99Ms: wsFloor.p99Ms,
      rssKbPerConnectedRoom: ours.rssKbPerConnectedRoom,
      floorRssKbPerConnectedRoom: floor.rssKbPerConnectedRoom,
      wsFloorRssKbPerConnectedRoom: wsFloor.rssKbPerConnectedRoom,
      otherCpuPct: ours.otherCpuPct,
    },
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
          wsFloorCapacityRooms: capacity["ws-floor"].rooms,
          capacityRatioToFloor: ratio(capacity.server.rooms, capacity.floor.rooms),
          capacityRatioToWsFloor: ratio(capacity.server.rooms, capacity["ws-floor"].rooms),
          capacitySteps: { server: capacity.server.steps, floor: capacity.floor.steps, wsFloor: capacity["ws-floor"].steps },
        }
      : {}),
    streamErrorSamples: [...ours.errors, ...floor.errors, ...wsFloor.errors],
  };

  if (options.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const fixed = (n: number, digits: number, width: number) => n.toFixed(digits).padStart(width);
  const row = (name: string, s: Summary) =>
    [
      name.padEnd(18),
      String(s.sent).padStart(8),
      String(s.received).padStart(9),
      String(s.lost).padStart(6),
      String(s.reordered).padStart(6),
      fixed(s.p50Ms.median, 2, 8),
      fixed(s.p95Ms.median, 2, 8),
      fixed(s.p99Ms.median, 2, 8),
      fixed(s.maxMs.median, 2, 8),
      fixed(s.cpuPct.median, 1, 9),
      fixed(s.rssMbLoad.median, 1, 8),
      fixed(s.generatorCpuPct.median, 1, 8),
      fixed(s.generatorLoopDelayP99Ms.median, 2, 9),
      fixed(s.otherCpuPct.median, 1, 8),
    ].join(" ");
  const range = (s: Spread, unit: string) => (options.repeat > 1 ? `${s.median}${unit} (${s.min}–${s.max})` : `${s.median}${unit}`);
  const ms = (n: number | null) => (n === null ? "n/a" : `${n.toFixed(2)} ms`);
  const lines = [
    "",
    `Audio relay: ${options.rooms} rooms × 2 participants, 640-byte frames every 20 ms for ${options.seconds} s (warm-up ${options.warmupSeconds} s), server speech ${options.speech ?? "off"}${options.repeat > 1 ? `; medians of ${options.repeat} runs, counts summed` : ""}`,
    "",
    `${"".padEnd(18)} ${"sent".padStart(8)} ${"received".padStart(9)} ${"lost".padStart(6)} ${"reord".padStart(6)} ${"p50 ms".padStart(8)} ${"p95 ms".padStart(8)} ${"p99 ms".padStart(8)} ${"max ms".padStart(8)} ${"CPU %core".padStart(9)} ${"RSS MB".padStart(8)} ${"gen CPU%".padStart(8)} ${"gen loop".padStart(9)} ${"other%".padStart(8)}`,
    row(KIND_LABEL.floor, floor),
    row(KIND_LABEL["ws-floor"], wsFloor),
    row(KIND_LABEL.server, ours),
    "",
    `CPU %core: server ${range(ours.cpuPct, "")}, http2 floor ${range(floor.cpuPct, "")}, ws floor ${range(wsFloor.cpuPct, "")}`,
    `p99: server ${range(ours.p99Ms, " ms")}, http2 floor ${range(floor.p99Ms, " ms")}, ws floor ${range(wsFloor.p99Ms, " ms")}`,
    `server / http2 floor: CPU ×${result.cpuRatioToFloor ?? "n/a"}, p99 ×${result.p99RatioToFloor ?? "n/a"}; server / ws floor: CPU ×${result.cpuRatioToWsFloor ?? "n/a"}, p99 ×${result.p99RatioToWsFloor ?? "n/a"}`,
    `server RSS: idle ${result.rssMbIdle} MB, rooms connected ${result.rssMbConnected} MB, under load ${result.rssMbLoad} MB; per room: ${range(ours.rssKbPerConnectedRoom, " KB")} connected, ${result.rssKbPerRoom} KB under load (http2 floor: ${range(floor.rssKbPerConnectedRoom, " KB")} connected, ws floor: ${range(wsFloor.rssKbPerConnectedRoom, " KB")} connected)`,
    `panel fan-out (transcript sent → both PanelStreams have it): p50 ${ms(fanout.p50Ms)}, p99 ${ms(fanout.p99Ms)} over ${fanout.samples} transcripts${fanout.error ? ` — errors: ${fanout.error}` : ""}`,
    ...pipelineLines("pipeline (trigger → payments executed, offline engines), one room at a time", pipeline),
    ...pipelineLines(`pipeline, ${options.pipelineConcurrency} rooms at a time`, pipelineConcurrent),
  ];
  if (capacity) {
    lines.push(
      `capacity (p99 ≤ ${CAPACITY_P99_MS} ms, no loss): server ${capacity.server.rooms} rooms, http2 floor ${capacity.floor.rooms} rooms, ws floor ${capacity["ws-floor"].rooms} rooms; ratio to http2 floor ${result.capacityRatioToFloor ?? "n/a"}, to ws floor ${result.capacityRatioToWsFloor ?? "n/a"}`,
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
