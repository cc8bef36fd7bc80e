import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, beforeEach, expect, it } from "vitest";

const run = promisify(execFile);
const repo = fileURLToPath(new URL("../..", import.meta.url));
const ROOM_SERVICE = "proto/handshake/v1/room_service.proto";

let dir: string;
beforeEach(async () => {
  // A copy of the contracts and the released image, with the repository's buf.
  dir = await mkdtemp(path.join(os.tmpdir(), "handshake-breaking-"));
  for (const entry of ["buf.yaml", "proto", "proto-vendor", "scripts"]) await cp(path.join(repo, entry), path.join(dir, entry), { recursive: true });
  await symlink(path.join(repo, "node_modules"), path.join(dir, "node_modules"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs scripts/check-breaking.mjs in the copy; resolves with its exit code and output. */
async function checkBreaking(): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["scripts/check-breaking.mjs"], { cwd: dir });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const failed = err as { code: number; stdout: string; stderr: string };
    return { code: failed.code, output: failed.stdout + failed.stderr };
  }
}

it("passes the contracts as released", async () => {
  expect(await checkBreaking()).toMatchObject({ code: 0, output: expect.stringContaining("no breaking change against the released contract") });
});

it("fails on a field renamed since the last release, however many commits ago the rename was made", async () => {
  // Against HEAD~1 this would pass once the rename was committed; against the release it never does.
  const file = path.join(dir, ROOM_SERVICE);
  const text = await readFile(file, "utf8");
  expect(text).toContain("string room_id = 1;");
  await writeFile(file, text.replace("string room_id = 1;", "string room_code = 1;"));
  const { code, output } = await checkBreaking();
  expect(code).toBe(1);
  expect(output).toMatch(/changed name from "room_id" to "room_code"/);
});
