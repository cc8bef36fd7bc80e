import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { REDACTED } from "../../src/core/log.js";
import { recordingLogger } from "../support/log-lines.js";
import { tempDirPerTest } from "../support/temp-dir.js";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Runs the server's entry point with `env` until it exits; what it wrote to stderr, line by line. */
async function startMain(env: Record<string, string>): Promise<{ code: number; stderrLines: string[] }> {
  const run = promisify(execFile)(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: "0", SPEECH_ENGINE: "device", ...env },
    timeout: 30_000,
  });
  const result = await run.then(
    () => ({ code: 0, stderr: "" }),
    (err: { code?: number; stderr?: string }) => ({ code: err.code ?? -1, stderr: err.stderr ?? "" }),
  );
  return { code: result.code, stderrLines: result.stderr.split("\n").filter((l) => l.trim() !== "") };
}

describe("log lines", () => {
  const dir = tempDirPerTest();

  it("redact secret-named keys at any depth, in fields and in child bindings, and keep the rest", () => {
    const { log, lines } = recordingLogger("info");
    log.child({ session: { token: "tok-binding" } }).info(
      {
        request: { headers: [{ authorization: "Bearer tok-header" }], profile: { monzo: { MonzoAccessToken: "tok-monzo" }, displayName: "Ada" } },
        engines: { anthropic: { config: { deep: { apiKey: "sk-ant-deep" } } } },
        amountMinor: "12000",
      },
      "nested",
    );
    const [line] = lines;
    for (const secret of ["tok-binding", "tok-header", "tok-monzo", "sk-ant-deep"]) expect(line!.raw).not.toContain(secret);
    expect(line!.fields).toMatchObject({
      session: { token: REDACTED },
      request: { headers: [{ authorization: REDACTED }], profile: { monzo: { MonzoAccessToken: REDACTED }, displayName: "Ada" } },
      engines: { anthropic: { config: { deep: { apiKey: REDACTED } } } },
      amountMinor: "12000",
      msg: "nested",
    });
  });

  it("leave a logged object itself unchanged (a copy is redacted), and survive a cycle", () => {
    const { log, lines } = recordingLogger("info");
    const fields: Record<string, unknown> = { user: { token: "tok-original" } };
    fields.self = fields;
    expect(() => log.info(fields, "cyclic")).not.toThrow();
    expect((fields.user as { token: string }).token).toBe("tok-original");
    expect(lines.map((l) => l.raw).join("\n")).not.toContain("tok-original");
  });

  it("at start-up: a configuration error is one JSON line at fatal (exit 2), any other failure too (exit 1)", async () => {
    const config = await startMain({ PORT: "not-a-port" });
    expect(config.code).toBe(2);
    expect(config.stderrLines).toHaveLength(1);
    expect(JSON.parse(config.stderrLines[0]!)).toMatchObject({ level: 60, msg: expect.stringMatching(/^configuration error: PORT must be an integer/) });

    // The data folder cannot be made under a plain file.
    const file = path.join(dir(), "not-a-folder");
    await writeFile(file, "");
    const failed = await startMain({ DATA_DIR: path.join(file, "data") });
    expect(failed.code).toBe(1);
    const lines = failed.stderrLines.map((l) => JSON.parse(l) as { level: number; msg: string; err?: { type: string; message: string } });
    expect(lines).toContainEqual(expect.objectContaining({ level: 60, msg: "handshake failed to start", err: expect.objectContaining({ message: expect.stringContaining("ENOTDIR") }) }));
  }, 60_000);
});
