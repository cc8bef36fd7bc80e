/**
 * Summarises a V8 CPU profile (from `npm run bench -- --cpu-prof`, or any `node --cpu-prof`):
 * the functions with the most self time, and the share of time by package (connect, protobuf,
 * node internals, GC, this repo).
 *
 *   node --import tsx bench/profile-summary.ts bench/profiles/<file>.cpuprofile [top=25]
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Which bucket a frame's time goes to. */
function bucketOf(url: string, name: string): string {
  if (name === "(garbage collector)") return "GC";
  if (name === "(idle)" || name === "(program)") return name;
  if (url.includes("@connectrpc")) return "connect";
  if (url.includes("@bufbuild")) return "protobuf";
  if (url.includes("node_modules/pino") || url.includes("thread-stream")) return "pino";
  if (url.includes("node_modules")) return "other packages";
  if (url.startsWith("node:")) return "node internals";
  if (url === "") return "native";
  return "this repo";
}

function main(): void {
  const file = process.argv[2];
  if (!file) throw new Error("usage: profile-summary.ts <file.cpuprofile> [top]");
  const top = Number(process.argv[3] ?? 25);
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const busy = [...selfUs.entries()].filter(([id]) => byId.get(id)?.callFrame.functionName !== "(idle)").reduce((a, [, us]) => a + us, 0);

  const functions = new Map<string, number>();
  const buckets = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const name = `${functionName || "(anonymous)"} ${url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/(src|bench)\//, "$1/")}:${lineNumber + 1}`;
    functions.set(name, (functions.get(name) ?? 0) + us);
    const bucket = bucketOf(url, functionName);
    buckets.set(bucket, (buckets.get(bucket) ?? 0) + us);
  }
  const pct = (us: number) => `${((us / busy) * 100).toFixed(1).padStart(5)}%`;
  process.stdout.write(`profile ${(total / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(1)} s (shares below are of busy time)\n\nby package:\n`);
  for (const [bucket, us] of [...buckets].sort((a, b) => b[1] - a[1])) if (bucket !== "(idle)") process.stdout.write(`  ${pct(us)}  ${bucket}\n`);
  process.stdout.write(`\ntop ${top} functions by self time:\n`);
  for (const [name, us] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`  ${pct(us)}  ${name}\n`);
}

main();
