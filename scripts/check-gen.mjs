// Fails when gen/ differs from a fresh `buf generate` (generated code is committed, never edited).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const fresh = mkdtempSync(path.join(os.tmpdir(), "handshake-gen-"));
try {
  const template = readFileSync("buf.gen.yaml", "utf8").replace(/out: gen/, `out: ${fresh}`);
  execFileSync("node_modules/.bin/buf", ["generate", "--template", template], { stdio: "inherit" });
  const list = (dir) =>
    readdirSync(dir).flatMap((name) => {
      const full = path.join(dir, name);
      return statSync(full).isDirectory() ? list(full).map((f) => path.join(name, f)) : [name];
    });
  const want = list(fresh).sort();
  const have = list("gen").sort();
  const problems = [];
  for (const f of new Set([...want, ...have])) {
    if (!want.includes(f)) problems.push(`gen/${f} is not produced by buf generate`);
    else if (!have.includes(f)) problems.push(`gen/${f} is missing`);
    else if (readFileSync(path.join(fresh, f), "utf8") !== readFileSync(path.join("gen", f), "utf8")) problems.push(`gen/${f} differs`);
  }
  if (problems.length) {
    console.error("gen/ is stale; run `npm run generate` and commit:\n  " + problems.join("\n  "));
    process.exit(1);
  }
  console.log(`gen/ matches buf generate (${want.length} files)`);
} finally {
  rmSync(fresh, { recursive: true, force: true });
}
