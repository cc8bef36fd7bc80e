import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startFakeAnthropic, type FakeAnthropic } from "../../src/agents/claude/testing/fake-anthropic.js";
import { createAgentEngines } from "../../src/compose/engines-agents.js";
import { ConfigError, DEFAULT_ANTHROPIC_MODEL, loadConfig } from "../../src/config.js";
import { silentLogger } from "../../src/core/log.js";

const KEY = "sk-ant-test";
let fake: FakeAnthropic;

beforeEach(async () => {
  fake = await startFakeAnthropic({ validKey: KEY });
});
afterEach(async () => {
  await fake.close();
});

/** The server's configuration with Claude switched on against the fake. */
function claudeConfig(env: Record<string, string> = {}) {
  return loadConfig({ ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: fake.url, DATA_DIR: "/tmp/handshake-model-check", ...env });
}

describe("Claude model check at start", () => {
  it("defaults to a current model that the Models API knows, and starts", async () => {
    const config = claudeConfig();
    expect(config.agents.engine).toBe("claude");
    expect(config.agents.model).toBe(DEFAULT_ANTHROPIC_MODEL);
    const engines = await createAgentEngines(config, silentLogger);
    expect(engines.drafter).toBeDefined();
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).toEqual([`GET /v1/models/${DEFAULT_ANTHROPIC_MODEL}`]);
    expect(fake.requests[0]!.headers["anthropic-version"]).toMatch(/^\d{4}-\d{2}-\d{2}$/);
  });

  it("stops with a message naming ANTHROPIC_MODEL when the model is retired", async () => {
    const start = createAgentEngines(claudeConfig({ ANTHROPIC_MODEL: "claude-sonnet-4-5" }), silentLogger);
    await expect(start).rejects.toBeInstanceOf(ConfigError);
    await expect(start).rejects.toThrow(/^ANTHROPIC_MODEL=claude-sonnet-4-5 \(Claude Sonnet 4\.5\) is retired since 2026-11-30; requests naming it fail\. Set ANTHROPIC_MODEL to a current model\.$/);
  });

  it("stops with a message naming ANTHROPIC_MODEL when the model does not exist (404)", async () => {
    const start = createAgentEngines(claudeConfig({ ANTHROPIC_MODEL: "claude-sonet-5-5" }), silentLogger);
    await expect(start).rejects.toBeInstanceOf(ConfigError);
    await expect(start).rejects.toThrow("ANTHROPIC_MODEL=claude-sonet-5-5 is not a model the Anthropic API knows (404 from GET /v1/models/claude-sonet-5-5)");
    expect(fake.rejections.map((r) => [r.status, r.type, r.message])).toEqual([[404, "not_found_error", "model: claude-sonet-5-5"]]);
  });

  it("stops with a clear message when the key is refused", async () => {
    const start = createAgentEngines(claudeConfig({ ANTHROPIC_API_KEY: "sk-ant-wrong" }), silentLogger);
    await expect(start).rejects.toBeInstanceOf(ConfigError);
    await expect(start).rejects.toThrow("ANTHROPIC_API_KEY was refused by the Anthropic API (401 authentication error).");
  });

  it("starts with a deprecated model (it still answers) and when the API cannot be reached", async () => {
    await expect(createAgentEngines(claudeConfig({ ANTHROPIC_MODEL: "claude-opus-4-5" }), silentLogger)).resolves.toBeDefined();
    const url = fake.url;
    await fake.close();
    fake = await startFakeAnthropic({ validKey: KEY }); // afterEach closes this one
    const unreachable = loadConfig({ ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: url, DATA_DIR: "/tmp/handshake-model-check" });
    await expect(createAgentEngines(unreachable, silentLogger)).resolves.toBeDefined();
  });

  it("starts (with a warning) behind a proxy that answers a bare 404 for the Models API", async () => {
    const proxy = createServer((_req, res) => {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("no such route");
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const { port } = proxy.address() as AddressInfo;
    try {
      const config = loadConfig({ ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: `http://127.0.0.1:${port}`, DATA_DIR: "/tmp/handshake-model-check" });
      await expect(createAgentEngines(config, silentLogger)).resolves.toBeDefined();
    } finally {
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it("refuses a model id that is not one token", () => {
    expect(() => loadConfig({ ANTHROPIC_MODEL: "claude sonnet" })).toThrow(ConfigError);
    expect(() => loadConfig({ ANTHROPIC_MODEL: "claude sonnet" })).toThrow(/ANTHROPIC_MODEL must be a model id/);
    expect(loadConfig({ ANTHROPIC_MODEL: "anthropic.claude-haiku-4-5-20251001-v1:0" }).agents.model).toBe("anthropic.claude-haiku-4-5-20251001-v1:0");
  });
});
