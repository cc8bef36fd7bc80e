// `buf breaking` against the last released contract: proto/released.binpb, a buf image that
// `npm run release:proto` writes and a release commits. Comparing with a release rather than with
// HEAD~1 catches a breaking change spread over several commits (remove a field, then reuse its number).
import { existsSync } from "node:fs";
import { execFileSync } from "node:child_process";

const RELEASED = "proto/released.binpb";

if (!existsSync(RELEASED)) {
  console.log(`buf breaking: no released contract (${RELEASED}) to compare with; npm run release:proto makes one`);
  process.exit(0);
}
try {
  execFileSync("node_modules/.bin/buf", ["breaking", "--against", RELEASED], { stdio: "inherit" });
} catch {
  console.error(`buf breaking: the contracts break ${RELEASED}, the last released contract (see above)`);
  process.exit(1);
}
console.log(`buf breaking: no breaking change against the released contract (${RELEASED})`);
