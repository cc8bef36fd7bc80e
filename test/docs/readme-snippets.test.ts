import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.js";

/*
 * Every ```sh, ```python and ```ts block of README.md and clients/*\/README.md, run as written from a
 * fresh copy of the repository against a real server. A block marked with an HTML comment right
 * above it, `<!-- not run: REASON -->`, starts something long-running (the server, the demo, an
 * interactive participant) and is skipped with its reason in the test's name.
 *
 * What differs from a reader's terminal, and why:
 * - the port: the snippets say 127.0.0.1:8080; the test rewrites that to its server's free port,
 *   and sets HANDSHAKE_SERVER (which the CLI honours) for the CLI's snippets, which name no URL;
 * - a ts block is saved in the copy's root as a .mts file and run with `node --import tsx`, as the
 *   README says to;
 * - HOME is a temporary folder, so `~/.handshake/…` state files are the test's own;
 * - /usr/bin comes first on PATH (after this Node), so `python3` is Debian's with python3-grpcio,
 *   as on CI, not a version manager's shim;
 * - the copy holds what a clone would (tracked and unignored files of the working tree) with
 *   node_modules linked in: `npm ci` is the README's first step, and too slow to repeat here.
 */

const ROOT = path.resolve(import.meta.dirname, "..", "..");
/** Longest any one block may run; a block over it fails and its processes are killed. */
const BLOCK_TIMEOUT_MS = 90_000;

/** One fenced code block of a README. */
interface Snippet {
  file: string;
  line: number;
  lang: "sh" | "python" | "ts";
  code: string;
  /** Why it is not run, from `<!-- not run: … -->` just above it. */
  notRun: string | undefined;
}

/** The sh, python and ts blocks of a Markdown text, in order, with their not-run marks. */
function snippetsOf(file: string, text: string): Snippet[] {
  const lines = text.split("\n");
  const found: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w+)\s*$/.exec(lines[i] ?? "");
    if (!open) continue;
    const end = lines.findIndex((l, j) => j > i && /^```\s*$/.test(l));
    if (end < 0) throw new Error(`${file}:${i + 1}: a code block that never closes`);
    const lang = open[1];
    if (lang === "sh" || lang === "python" || lang === "ts") {
      let above = i - 1;
      while (above >= 0 && lines[above]?.trim() === "") above--;
      const mark = /^<!--\s*not run:\s*(.+?)\s*-->$/.exec(lines[above]?.trim() ?? "");
      found.push({ file, line: i + 1, lang, code: lines.slice(i + 1, end).join("\n"), notRun: mark?.[1] });
    }
    i = end;
  }
  return found;
}

/** README.md and every clients/*\/README.md, repository-relative. */
async function readmes(): Promise<string[]> {
  const clients = await readdir(path.join(ROOT, "clients"), { withFileTypes: true });
  const files = ["README.md"];
  for (const entry of clients.filter((e) => e.isDirectory()).sort((a, b) => a.name.localeCompare(b.name))) {
    const readme = path.join("clients", entry.name, "README.md");
    if (await readFile(path.join(ROOT, readme)).then(() => true, () => false)) files.push(readme);
  }
  return files;
}

/** Copies what a fresh clone holds (tracked and unignored files, as they are now) into `dir`. */
async function freshCopy(dir: string): Promise<void> {
  const { stdout } = await promisify(execFile)("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: ROOT, maxBuffer: 64 << 20 });
  for (const file of stdout.split("\0").filter((f) => f !== "")) {
    await mkdir(path.join(dir, path.dirname(file)), { recursive: true });
    // A file deleted in the working tree but still in the index is not in a clone of the next commit.
    await copyFile(path.join(ROOT, file), path.join(dir, file)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  }
  await symlink(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"), "dir");
}

/** Runs one block in `cwd`; resolves with its exit code and output. Kills its process group on timeout. */
async function runSnippet(snippet: Snippet, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  let command: string;
  let args: string[];
  if (snippet.lang === "sh") [command, args] = ["bash", ["-e", "-o", "pipefail", "-c", snippet.code]];
  else if (snippet.lang === "python") [command, args] = ["python3", ["-c", snippet.code]];
  else {
    const file = path.join(cwd, `readme-snippet-${snippet.line}.mts`);
    await writeFile(file, snippet.code + "\n");
    [command, args] = [process.execPath, ["--import", "tsx", file]];
  }
  // Its own process group, so a timeout ends everything the block started (background jobs too).
  const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const timer = setTimeout(() => {
    output += `\n[killed after ${BLOCK_TIMEOUT_MS / 1000} s]`;
    killGroup(child.pid);
  }, BLOCK_TIMEOUT_MS);
  try {
    const [code] = (await once(child, "exit")) as [number | null];
    return { code, output };
  } finally {
    clearTimeout(timer);
    // A background job the block left behind goes too.
    killGroup(child.pid);
  }
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

const files = await readmes();
const byFile = await Promise.all(files.map(async (file) => snippetsOf(file, await readFile(path.join(ROOT, file), "utf8"))));

let t: TestApp;
let work: string;
let clone: string;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "handshake-readme-"));
  clone = path.join(work, "handshake");
  const home = path.join(work, "home");
  await mkdir(home);
  await freshCopy(clone);
  t = await startTestApp();
  env = {
    ...process.env,
    HOME: home,
    HANDSHAKE_SERVER: t.baseUrl,
    PATH: [path.dirname(process.execPath), "/usr/bin", process.env.PATH ?? ""].join(path.delimiter),
  };
  for (const key of ["HANDSHAKE_STATE", "HANDSHAKE_TOKEN", "PYTHONPATH"]) delete env[key];
}, 120_000);
afterAll(async () => {
  await t?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("README snippets run as written", () => {
  it("finds the blocks, and every not-run mark says why", () => {
    const all = byFile.flat();
    expect(all.filter((s) => s.notRun === undefined).length).toBeGreaterThanOrEqual(5);
    for (const s of all) if (s.notRun !== undefined) expect(s.notRun.length, `${s.file}:${s.line}`).toBeGreaterThan(3);
    // Room codes differ across the runnable examples, so none lands in another's room.
    const rooms = new Map<string, string>();
    for (const s of all.filter((x) => x.notRun === undefined)) {
      for (const [, room] of s.code.matchAll(/(?:--room |"roomId":"|roomId: "|room_id=")([\w-]+)/g)) {
        const where = `${s.file}:${s.line}`;
        const earlier = rooms.get(room!);
        if (earlier && !earlier.startsWith(s.file)) throw new Error(`room "${room}" is used by ${earlier} and ${where}`);
        rooms.set(room!, where);
      }
    }
  });

  for (const [index, file] of files.entries()) {
    describe(file, () => {
      for (const snippet of byFile[index] ?? []) {
        const name = `${snippet.lang} block at line ${snippet.line}`;
        if (snippet.notRun !== undefined) {
          it.skip(`${name} — not run: ${snippet.notRun}`, () => undefined);
          continue;
        }
        it(name, { timeout: BLOCK_TIMEOUT_MS + 10_000 }, async () => {
          const code = snippet.code.replaceAll("127.0.0.1:8080", `127.0.0.1:${t.port}`);
          const run = await runSnippet({ ...snippet, code }, clone, env);
          expect({ exit: run.code, output: run.code === 0 ? "" : run.output.slice(-4000) }).toEqual({ exit: 0, output: "" });
        });
      }
    });
  }
});
