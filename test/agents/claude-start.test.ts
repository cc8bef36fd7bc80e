import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeAnthropic, type FakeAnthropic } from "../../src/agents/claude/testing/fake-anthropic.js";

const KEY = "sk-ant-test";
let fake: FakeAnthropic;
let dataDir: string;

beforeAll(async () => {
  fake = await startFakeAnthropic({ validKey: KEY });
  dataDir = await mkdtemp(path.join(tmpdir(), "handshake-claude-start-"));
});
afterAll(async () => {
  await fake.close();
  await rm(dataDir, { recursive: true, force: true });
});

/** Runs the real server process (src/main.ts) with Claude against the fake; resolves when it exits. */
function runServer(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      env: { ...process.env, HOST: "127.0.0.1", PORT: "0", DATA_DIR: dataDir, ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: fake.url, AGENT_ENGINE: "claude", PAYMENT_RAIL: "ledger", SPEECH_ENGINE: "device", LOG_LEVEL: "warn", ...env },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code, stderr }));
  });
}

describe("the server with Claude at start", () => {
  it("stops with exit code 2 and a message naming ANTHROPIC_MODEL when the model is retired", async () => {
    const { code, stderr } = await runServer({ ANTHROPIC_MODEL: "claude-sonnet-4-5" });
    expect(code).toBe(2);
    expect(stderr).toContain("configuration error: ANTHROPIC_MODEL=claude-sonnet-4-5 (Claude Sonnet 4.5) is retired since 2026-11-30");
  });

  it("stops with exit code 2 and a message naming ANTHROPIC_MODEL when the model is unknown", async () => {
    const { code, stderr } = await runServer({ ANTHROPIC_MODEL: "claude-sonnet-9" });
    expect(code).toBe(2);
    expect(stderr).toContain("configuration error: ANTHROPIC_MODEL=claude-sonnet-9 is not a model the Anthropic API knows");
    expect(fake.rejections.some((r) => r.request.path === "/v1/models/claude-sonnet-9" && r.status === 404)).toBe(true);
  });
});
