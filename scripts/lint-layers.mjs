// Holds the tree to the layer table in DESIGN.md: every relative import must point to a folder the
// importing folder may use, and the domain never imports transport packages. Exits 1 on a breach.
import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";

/** Folder → the folders it may import (besides itself). "gen" is the generated contracts. */
const ALLOWED = {
  "src/core": ["gen"],
  "src/server": ["src/room", "src/settlement", "src/deal", "src/events", "src/store", "src/auth", "src/core", "gen"],
  "src/room": ["src/audio", "src/speech", "src/trigger", "src/agents", "src/language", "src/deal", "src/settlement", "src/payments", "src/events", "src/store", "src/core", "gen"],
  "src/settlement": ["src/deal", "src/payments", "src/store", "src/core", "gen"],
  "src/deal": ["src/store", "src/core", "gen"],
  "src/agents": ["src/deal", "src/payments", "src/language", "src/core", "gen"],
  "src/language": ["src/core", "gen"],
  "src/trigger": ["src/language", "src/core", "gen"],
  "src/speech": ["src/audio", "src/core", "gen"],
  "src/audio": ["src/core", "gen"],
  "src/payments": ["src/store", "src/core", "gen"],
  "src/events": ["src/store", "src/core", "gen"],
  "src/store": ["src/core", "gen"],
  "src/auth": ["src/core", "gen"],
  "src/compose": ["*"],
  "src/config.ts": ["*"],
  "src/main.ts": ["*"],
  "clients/web": ["clients/shared", "gen"],
  "clients/cli": ["clients/shared", "gen"],
  "clients/shared": ["gen"],
  "bench": ["gen", "src/server/grpc-h2/wire.ts"],
};

/** Packages only the transport (and the composition root) may import. */
const TRANSPORT_ONLY = [/^@connectrpc\//, /^node:http2?$/, /^node:https$/];
const TRANSPORT_LAYERS = new Set(["src/server", "src/compose", "src/main.ts", "clients/web", "clients/cli", "clients/shared", "bench"]);

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const ruleKeys = Object.keys(ALLOWED).sort((a, b) => b.length - a.length);

/** The table row a repository path belongs to, or undefined when the table says nothing of it. */
function layerOf(rel) {
  return ruleKeys.find((key) => rel === key || rel.startsWith(key + "/"));
}

function* sourceFiles(dir) {
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name === "dist") continue;
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) yield* sourceFiles(full);
    else if (/\.(ts|tsx|mts|mjs)$/.test(name) && !/\.test\.ts$/.test(name)) yield full;
  }
}

const IMPORT = /(?:^|[\s;])(?:import|export)\s[^"']*?from\s*["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)|^\s*import\s*["']([^"']+)["']/gm;
const problems = [];
for (const top of ["src", "clients", "bench"]) {
  for (const file of sourceFiles(path.join(root, top))) {
    const rel = path.relative(root, file);
    const layer = layerOf(rel);
    if (!layer) {
      problems.push(`${rel}: not in DESIGN.md's layer table`);
      continue;
    }
    const isFake = rel.split("/").includes("testing");
    const text = readFileSync(file, "utf8");
    for (const match of text.matchAll(IMPORT)) {
      const spec = match[1] ?? match[2] ?? match[3];
      if (!spec) continue;
      if (!spec.startsWith(".")) {
        if (!TRANSPORT_LAYERS.has(layer) && !isFake && TRANSPORT_ONLY.some((re) => re.test(spec)))
          problems.push(`${rel}: the domain may not import ${spec}`);
        continue;
      }
      const target = path.relative(root, path.resolve(path.dirname(file), spec)).replace(/\.js$/, ".ts");
      if (target.split("/").includes("testing") && !isFake) {
        problems.push(`${rel}: production code imports a fake (${target})`);
        continue;
      }
      const targetLayer = target.startsWith("gen/") ? "gen" : layerOf(target);
      if (targetLayer === layer) continue;
      const allowed = ALLOWED[layer];
      if (allowed.includes("*")) continue;
      if (allowed.some((entry) => entry === targetLayer || entry === target)) continue;
      problems.push(`${rel}: ${layer} may not import ${target}`);
    }
  }
}

if (problems.length > 0) {
  console.error(`lint:layers: ${problems.length} import(s) break the layer table in DESIGN.md`);
  for (const problem of problems) console.error("  " + problem);
  process.exit(1);
}
console.log("lint:layers: every import follows the layer table");
