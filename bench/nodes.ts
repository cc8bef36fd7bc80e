/**
 * `npm run bench -- --nodes N`: the audio relay through 1, 2, … N Handshake nodes behind the HAProxy
 * router, as `npm run cluster` runs them (PostgreSQL, Redis, the router, each node its own process),
 * and the http2 floor (a bare byte relay, one process) and one node without the router beside them
 * (what the router costs). For each it finds the capacity:
 * the largest room count R (2 participants each, 640-byte frames every 20 ms) with relay p99 ≤ 20 ms
 * and no frame lost.
 *
 *   npm run bench -- --nodes N [--capacity-seconds S] [--capacity-max R] [--json]
 *
 * A cluster is started once per node count and stepped up in place (rooms leave after each step);
 * the floor gets a fresh process per step, as in bench/run.ts. CPU is % of one core: the nodes'
 * sum, the router's worker, and the generator's (when the generator nears a core, it is the limit).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import type { GeneratorConfig, GeneratorResult } from "./generator.js";
import { ProcessSampler } from "./proc.js";
import { ROOT, runGenerator, startFloor } from "./processes.js";
import { round2 } from "./stats.js";

const CAPACITY_P99_MS = 20;
/** Room counts tried in turn until one fails; then up to three bisections between the last pass and it. */
const STEPS = [25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000, 2500, 3000];
/** The nodes' settings for a relay bench: offline engines, no server speech, limits out of the way (as bench/processes.ts's server). */
const BENCH_NODE_ENV: Record<string, string> = {
  SPEECH_ENGINE: "device",
  MAX_ROOMS: "100000",
  MAX_STREAMS_PER_USER: "1000",
  SEND_AUDIO_PER_SECOND: "10000",
  AGENT_ENGINE: "offline",
  PAYMENT_RAIL: "ledger",
  ANTHROPIC_API_KEY: "",
  STRIPE_SECRET_KEY: "",
  ELEVENLABS_API_KEY: "",
};

interface NodesOptions {
  nodes: number;
  capacitySeconds: number;
  capacityMax: number;
  json: boolean;
}

/** One capacity step: what the generator saw and what the processes spent. */
interface Step {
  rooms: number;
  p99Ms: number;
  lost: number;
  streamErrors: number;
  nodesCpuPct: number;
  routerCpuPct: number;
  generatorCpuPct: number;
  pass: boolean;
}

/** The capacity of one setup and the steps that found it. */
interface Capacity {
  label: string;
  nodes: number;
  rooms: number;
  /** The step at the capacity (undefined when even the first step failed). */
  atCapacity: Step | undefined;
  steps: Step[];
}

/** What `scripts/cluster.ts --json` prints once everything listens. */
interface ClusterReady {
  router: { port: number; pid: number };
  nodes: { id: string; port: number; pid: number }[];
}

function parseOptions(argv: string[]): NodesOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      nodes: { type: "string" },
      "capacity-seconds": { type: "string", default: "5" },
      "capacity-max": { type: "string", default: "3000" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      [
        "npm run bench -- --nodes N [options]",
        "  --nodes N             measure 1, 2, … N nodes behind the router (and the floor)",
        "  --capacity-seconds S  seconds per step (default 5)",
        "  --capacity-max R      largest room count tried (default 3000)",
        "  --json                print one JSON line instead of the table",
        "",
      ].join("\n"),
    );
    process.exit(0);
  }
  const number = (name: string, raw: string | undefined, min: number) => {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min}, got ${raw}`);
    return n;
  };
  return {
    nodes: Math.floor(number("nodes", values.nodes, 1)),
    capacitySeconds: number("capacity-seconds", values["capacity-seconds"], 2),
    capacityMax: Math.floor(number("capacity-max", values["capacity-max"], 1)),
    json: values.json,
  };
}

/** The pid of HAProxy's worker (the child of the master `scripts/cluster.ts` started). */
function routerWorkerPid(masterPid: number): number {
  const children = readFileSync(`/proc/${masterPid}/task/${masterPid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
  return children.length ? Number(children[0]) : masterPid;
}

/** `npm run cluster -- --json --nodes n` in a temporary folder; resolves with its ports and pids, and how to stop it. */
async function startCluster(nodes: number): Promise<{ ready: ClusterReady; stop(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "handshake-bench-cluster-"));
  // PostgreSQL runs as the postgres user when the bench runs as root: it must reach its folder.
  await chmod(dir, 0o755);
  const env = Object.entries(BENCH_NODE_ENV).flatMap(([name, value]) => ["--env", `${name}=${value}`]);
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", "scripts/cluster.ts", "--json", "--nodes", String(nodes), "--port", "0", "--dir", dir, "--max-connections-per-address", "1000000", ...env],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => (stderr = (stderr + text).slice(-8_000)));
  const exited = once(child, "exit");
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const ready = await new Promise<ClusterReady>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on("line", (line) => {
        try {
          const parsed = JSON.parse(line) as ClusterReady & { type?: string };
          if (parsed.type === "ready") resolve(parsed);
        } catch {
          // Only the ready line is JSON.
        }
      });
      child.once("exit", (code) => reject(new Error(`cluster exited (${code}) before it was ready:\n${stderr}`)));
    });
    return { ready, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Streams `rooms` rooms at `port` and samples the given processes during the measurement window. */
async function step(target: GeneratorConfig["target"], port: number, rooms: number, seconds: number, nodePids: number[], routerPid: number | undefined, runId: string): Promise<Step> {
  const nodeSamplers = nodePids.map((pid) => new ProcessSampler(pid));
  const routerSampler = routerPid === undefined ? undefined : new ProcessSampler(routerPid);
  let nodesCpuPct = 0;
  let routerCpuPct = 0;
  const gen: GeneratorResult = await runGenerator(
    { target, port, rooms, seconds, warmupSeconds: Math.min(2, seconds / 3), frameBytes: 640, frameIntervalMs: 20, runId, setupConcurrency: 16 },
    {
      onMeasureStart: () => {
        for (const s of nodeSamplers) s.start();
        routerSampler?.start();
      },
      onMeasureEnd: () => {
        nodesCpuPct = nodeSamplers.reduce((sum, s) => sum + s.stop().cpuPct, 0);
        routerCpuPct = routerSampler?.stop().cpuPct ?? 0;
      },
    },
  );
  return {
    rooms,
    p99Ms: gen.p99Ms,
    lost: gen.lost,
    streamErrors: gen.streamErrors,
    nodesCpuPct: round2(nodesCpuPct),
    routerCpuPct: round2(routerCpuPct),
    generatorCpuPct: round2(gen.generatorCpuPct),
    pass: gen.lost === 0 && gen.streamErrors === 0 && gen.p99Ms <= CAPACITY_P99_MS,
  };
}

/** Steps up until a failure, then bisects (to within 10 %, at most three more steps). */
async function findCapacity(label: string, nodes: number, options: NodesOptions, tryRooms: (rooms: number) => Promise<Step>): Promise<Capacity> {
  const steps: Step[] = [];
  const attempt = async (rooms: number) => {
    let result: Step;
    try {
      result = await tryRooms(rooms);
    } catch (err) {
      result = { rooms, p99Ms: -1, lost: -1, streamErrors: -1, nodesCpuPct: 0, routerCpuPct: 0, generatorCpuPct: 0, pass: false };
      progress(options, `  ${label} ${rooms} rooms: failed: ${(err as Error).message.split("\n")[0]}`);
    }
    steps.push(result);
    if (result.p99Ms >= 0) {
      progress(
        options,
        `  ${label} ${rooms} rooms: p99 ${result.p99Ms} ms, lost ${result.lost}${result.streamErrors ? `, stream errors ${result.streamErrors}` : ""}, nodes CPU ${result.nodesCpuPct}%, router CPU ${result.routerCpuPct}%, generator CPU ${result.generatorCpuPct}% ${result.pass ? "pass" : "FAIL"}`,
      );
    }
    return result.pass;
  };
  let best = 0;
  let failedAt: number | undefined;
  for (const rooms of STEPS.filter((n) => n <= options.capacityMax)) {
    if (await attempt(rooms)) best = rooms;
    else {
      failedAt = rooms;
      break;
    }
  }
  for (let tries = 0; failedAt !== undefined && tries < 3 && failedAt - best > Math.max(10, best * 0.1); tries++) {
    const middle = Math.round((best + failedAt) / 2 / 5) * 5;
    if (middle <= best || middle >= failedAt) break;
    if (await attempt(middle)) best = middle;
    else failedAt = middle;
  }
  return { label, nodes, rooms: best, atCapacity: steps.find((s) => s.rooms === best && s.pass), steps };
}

function progress(options: NodesOptions, text: string): void {
  if (!options.json || process.stderr.isTTY) process.stderr.write(`${text}\n`);
}

/** Runs the whole comparison and prints it; `argv` is bench/run.ts's arguments (it dispatches `--nodes` here). */
export async function runNodesBench(argv: string[]): Promise<void> {
  const options = parseOptions(argv);
  const runId = `nodes-${Date.now().toString(36)}`;
  const results: Capacity[] = [];

  progress(options, "capacity: http2 floor (one process, fresh per step)…");
  results.push(
    await findCapacity("floor", 0, options, async (rooms) => {
      const floor = await startFloor(undefined, "floor");
      try {
        return await step("floor", floor.port, rooms, options.capacitySeconds, [floor.pid], undefined, `${runId}-floor-${rooms}`);
      } finally {
        await floor.stop();
      }
    }),
  );

  for (let n = 1; n <= options.nodes; n++) {
    const label = `${n} node${n === 1 ? "" : "s"} + router`;
    progress(options, `capacity: ${label} (PostgreSQL, Redis, HAProxy; starting…)`);
    const cluster = await startCluster(n);
    try {
      const nodePids = cluster.ready.nodes.map((node) => node.pid);
      const routerPid = routerWorkerPid(cluster.ready.router.pid);
      if (n === 1) {
        // The same node without the router in between: what the router itself costs.
        const node = cluster.ready.nodes[0]!;
        progress(options, "capacity: 1 node direct (no router)…");
        results.push(await findCapacity("1 node direct", 1, options, (rooms) => step("server", node.port, rooms, options.capacitySeconds, nodePids, undefined, `${runId}-direct-${rooms}`)));
      }
      results.push(
        await findCapacity(label, n, options, (rooms) => step("server", cluster.ready.router.port, rooms, options.capacitySeconds, nodePids, routerPid, `${runId}-n${n}-${rooms}`)),
      );
    } finally {
      await cluster.stop();
    }
  }

  const cores = os.cpus().length;
  if (options.json) {
    process.stdout.write(`${JSON.stringify({ p99LimitMs: CAPACITY_P99_MS, capacitySeconds: options.capacitySeconds, cores, results })}\n`);
    return;
  }
  const floor = results[0]!;
  const cell = (text: string, width: number) => text.padStart(width);
  const lines = [
    "",
    `Audio relay capacity: largest R rooms (2 participants, 640-byte frames every 20 ms) with p99 ≤ ${CAPACITY_P99_MS} ms and no loss`,
    `(${options.capacitySeconds} s per step, on ${cores} core${cores === 1 ? "" : "s"} shared by generator, nodes, router, PostgreSQL and Redis)`,
    "",
    `${"".padEnd(22)}${cell("rooms", 7)}${cell("of floor", 10)}${cell("p99 at R", 10)}${cell("nodes CPU", 11)}${cell("router CPU", 12)}${cell("gen CPU", 9)}`,
    ...results.map((r) => {
      const at = r.atCapacity;
      const ofFloor = floor.rooms > 0 && r !== floor ? `${Math.round((r.rooms / floor.rooms) * 100)} %` : "";
      return [
        (r === floor ? "http2 floor" : r.label).padEnd(22),
        cell(String(r.rooms), 7),
        cell(ofFloor, 10),
        cell(at ? `${at.p99Ms} ms` : "-", 10),
        cell(at ? `${at.nodesCpuPct}%` : "-", 11),
        cell(at && r.label.includes("router") ? `${at.routerCpuPct}%` : "", 12),
        cell(at ? `${at.generatorCpuPct}%` : "-", 9),
      ].join("");
    }),
    "",
    "CPU is % of one core at the capacity step: the nodes' sum (the floor's own process on its row), HAProxy's worker, the load generator.",
    "",
  ];
  process.stdout.write(lines.join("\n"));
}
