import { describe, expect, it } from "vitest";
import { MAX_IDEMPOTENCY_KEY_LENGTH, idempotencyKey, newAttemptId } from "../../src/settlement/idempotency.js";

describe("idempotencyKey", () => {
  it("is deterministic and readable for ordinary ids", () => {
    expect(idempotencyKey("ctr_1", "item-1", "pay")).toBe("hs1:pay:ctr_1:item-1");
    expect(idempotencyKey("ctr_1", "item-1", "pay")).toBe(idempotencyKey("ctr_1", "item-1", "pay"));
  });

  it("differs by action, contract and line item", () => {
    const keys = new Set([
      idempotencyKey("ctr_1", "item-1", "pay"),
      idempotencyKey("ctr_1", "item-1", "hold"),
      idempotencyKey("ctr_1", "item-1", "capture"),
      idempotencyKey("ctr_1", "item-1", "release"),
      idempotencyKey("ctr_2", "item-1", "pay"),
      idempotencyKey("ctr_1", "item-2", "pay"),
    ]);
    expect(keys.size).toBe(6);
  });

  it("keeps the parts apart when ids contain the separator", () => {
    expect(idempotencyKey("a:b", "c", "pay")).not.toBe(idempotencyKey("a", "b:c", "pay"));
  });

  it("stays within 255 characters by hashing long ids, still deterministically", () => {
    const long = "x".repeat(400);
    const key = idempotencyKey(long, "item-1", "capture");
    expect(key.length).toBeLessThanOrEqual(MAX_IDEMPOTENCY_KEY_LENGTH);
    expect(key).toMatch(/^hs1:capture:sha256:[0-9a-f]{64}$/);
    expect(idempotencyKey(long, "item-1", "capture")).toBe(key);
    expect(idempotencyKey(long, "item-2", "capture")).not.toBe(key);
  });

  it("refuses empty ids", () => {
    expect(() => idempotencyKey("", "item-1", "pay")).toThrow();
    expect(() => idempotencyKey("ctr_1", "", "pay")).toThrow();
  });

  it("gives each settlement attempt its own key, with its amount and attempt id, within 255 characters", () => {
    const a = newAttemptId();
    expect(a).toMatch(/^[0-9a-f]{12}$/);
    expect(newAttemptId()).not.toBe(a);
    expect(idempotencyKey("ctr_1", "item-1", "capture", { amountMinor: 4_000n, attemptId: a })).toBe(`hs1:capture:ctr_1:item-1:4000:a${a}`);
    expect(idempotencyKey("ctr_1", "item-1", "capture", { amountMinor: 3_500n, attemptId: a })).not.toBe(idempotencyKey("ctr_1", "item-1", "capture", { amountMinor: 4_000n, attemptId: a }));
    const long = idempotencyKey("c".repeat(300), "item-1", "release", { amountMinor: 9_007_199_254_740_991n, attemptId: "f".repeat(32) });
    expect(long.length).toBeLessThanOrEqual(MAX_IDEMPOTENCY_KEY_LENGTH);
    expect(long.endsWith(`:9007199254740991:a${"f".repeat(32)}`)).toBe(true);
    expect(() => idempotencyKey("ctr_1", "item-1", "capture", { amountMinor: 1n, attemptId: "a:b" })).toThrow();
  });
});
