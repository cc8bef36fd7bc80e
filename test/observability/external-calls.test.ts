import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeAnthropic, type FakeAnthropic } from "../../src/agents/claude/testing/fake-anthropic.js";
import { startTestApp, type TestApp } from "../support/app.js";
import { sampleValue, scrape } from "../support/metrics-text.js";

const KEY = "sk-ant-test";
const CALLS = "handshake_external_call_duration_seconds_count";

describe("outside services' HTTP calls, timed by service and outcome", () => {
  let fake: FakeAnthropic;
  let t: TestApp;
  beforeAll(async () => {
    fake = await startFakeAnthropic({ validKey: KEY });
    // Start-up checks the model with the Models API: one Anthropic request through the SDK.
    t = await startTestApp({ AGENT_ENGINE: "claude", ANTHROPIC_API_KEY: KEY, ANTHROPIC_BASE_URL: fake.url });
  });
  afterAll(async () => {
    await t?.close();
    await fake?.close();
  });

  it("counts the Anthropic SDK's requests (the start-up model check) with outcome ok, and no other outcome", async () => {
    const samples = await scrape(t.baseUrl);
    expect(sampleValue(samples, CALLS, { service: "anthropic", outcome: "ok" })).toBeGreaterThanOrEqual(1);
    for (const outcome of ["http_4xx", "http_429", "http_5xx", "network"]) expect(sampleValue(samples, CALLS, { service: "anthropic", outcome })).toBe(0);
  });
});
