import { describe, expect, it } from "vitest";
import { backoffDelayMs, isRetryable, isRetryableStatus } from "../../src/core/retry.js";
import { PaymentRailError } from "../../src/payments/rail.js";
import { SpeechEngineError } from "../../src/speech/remote-engine.js";

describe("backoffDelayMs", () => {
  it("doubles from the initial delay up to the cap, with jitter around the middle", () => {
    const mid = () => 0.5;
    expect([1, 2, 3, 4, 5, 10].map((a) => backoffDelayMs(a, { initialDelayMs: 100, maxDelayMs: 1000 }, mid))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(backoffDelayMs(1, { initialDelayMs: 100, jitter: 0.2 }, () => 0)).toBe(80);
    expect(backoffDelayMs(1, { initialDelayMs: 100, jitter: 0.2 }, () => 0.999999)).toBe(120);
    expect(backoffDelayMs(20, {}, () => 1)).toBe(15_000);
  });

  it("without jitter gives the same delays whatever the randomness (PocketSphinx restarts: 250, 500, 1000 ms)", () => {
    expect([1, 2, 3].map((a) => backoffDelayMs(a, { initialDelayMs: 250, jitter: 0 }, () => 0.9))).toEqual([250, 500, 1000]);
  });
});

describe("isRetryableStatus", () => {
  it("retries 408, 429 and 5xx, not other 4xx", () => {
    expect([400, 401, 403, 404, 408, 409, 429, 500, 502, 503].map(isRetryableStatus)).toEqual([false, false, false, false, true, false, true, true, true, true]);
  });
});

describe("isRetryable", () => {
  it("reads the retryable flag that remote engines' errors carry, and retries nothing else", () => {
    expect(isRetryable(new SpeechEngineError("rate_limited", "Slow down.", true))).toBe(true);
    expect(isRetryable(new PaymentRailError("declined", "card_declined", false))).toBe(false);
    expect(isRetryable(new PaymentRailError("down", "stripe_unavailable", true))).toBe(true);
    expect([new Error("boom"), undefined, null, "retryable", { retryable: "yes" }].map(isRetryable)).toEqual([false, false, false, false, false]);
  });
});
