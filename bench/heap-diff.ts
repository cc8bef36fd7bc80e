/**
 * What a process holds more of in one V8 heap snapshot than in another (from `npm run bench --
 * --heap-snapshot`, or DevTools): objects grouped by constructor or type, with the difference in
 * count and self size, largest first. Divide by the rooms joined between the two to get a room's cost.
 *
 *   node --import tsx bench/heap-diff.ts before.heapsnapshot after.heapsnapshot [top=30] [per=rooms]
 */
import { readFileSync } from "node:fs";

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Count and self size (bytes) per "type:name" group. */
function groups(file: string): Map<string, { count: number; bytes: number }> {
  const snap = JSON.parse(readFileSync(file, "utf8")) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const stride = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const out = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < snap.nodes.length; i += stride) {
    const type = types[snap.nodes[i + typeAt]!] ?? "?";
    const rawName = snap.strings[snap.nodes[i + nameAt]!] ?? "";
    // Strings and code are grouped by type: their names are their contents.
    const name = type === "object" || type === "closure" || type === "native" ? rawName.slice(0, 60) : "";
    const key = `${type}:${name}`;
    const entry = out.get(key) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += snap.nodes[i + sizeAt]!;
    out.set(key, entry);
  }
  return out;
}

const [before, after, topArg, perArg] = process.argv.slice(2);
if (!before || !after) {
  process.stderr.write("usage: node --import tsx bench/heap-diff.ts before.heapsnapshot after.heapsnapshot [top] [per]\n");
  process.exit(2);
}
const top = Number(topArg ?? 30);
const per = Number(perArg ?? 1);
const a = groups(before);
const b = groups(after);
const rows = [...new Set([...a.keys(), ...b.keys()])].map((key) => {
  const x = a.get(key) ?? { count: 0, bytes: 0 };
  const y = b.get(key) ?? { count: 0, bytes: 0 };
  return { key, count: y.count - x.count, bytes: y.bytes - x.bytes };
});
const total = rows.reduce((sum, r) => sum + r.bytes, 0);
process.stdout.write(`heap added: ${(total / 1024).toFixed(1)} KB in all, ${(total / 1024 / per).toFixed(2)} KB per ${per === 1 ? "unit" : `1/${per}`}\n`);
for (const r of rows.sort((p, q) => q.bytes - p.bytes).slice(0, top)) {
  process.stdout.write(`${(r.bytes / 1024 / per).toFixed(2).padStart(9)} KB ${(r.count / per).toFixed(1).padStart(8)} objects  ${r.key}\n`);
}
