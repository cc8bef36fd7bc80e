// `buf breaking` against the previous commit, when there is one (a fresh repository has none).
import { execFileSync } from "node:child_process";

let previous;
try {
  previous = execFileSync("git", ["rev-parse", "--verify", "--quiet", "HEAD~1"], { encoding: "utf8" }).trim();
} catch {
  console.log("buf breaking: no previous commit to compare with");
  process.exit(0);
}
execFileSync("node_modules/.bin/buf", ["breaking", "--against", `.git#ref=${previous}`], { stdio: "inherit" });
console.log(`buf breaking: no breaking change against ${previous.slice(0, 12)}`);
