import { createHash, randomBytes } from "node:crypto";

/** What a money movement does to a line item; each has its own key so each happens at most once. */
export type IdempotencyAction = "pay" | "hold" | "capture" | "release";

/** Longest key Stripe accepts (and the ledger stores). */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

const VERSION = "hs1";

/**
 * One attempt of a capture or release: its amount and an attempt id. A key sent with other
 * parameters is refused by Stripe (`idempotency_error`), and a refusal (even a 500) is saved under
 * its key, so a re-proposed amount or a retry after a real failure needs a key of its own.
 */
export interface SettlementAttempt {
  amountMinor: bigint;
  /** Made once per attempt and recorded with its intent before the call, so a resume reuses it. */
  attemptId: string;
}

/**
 * The idempotency key of `action` on one line item of one contract: the one place keys are made.
 * Deterministic, so a retry, a crash and restart or a double click sends the same key and the rail
 * moves the money at most once; a settlement `attempt` (captures, releases) adds its amount and
 * attempt id. At most 255 characters: long ids are replaced by their SHA-256.
 */
export function idempotencyKey(contractId: string, lineItemId: string, action: IdempotencyAction, attempt?: SettlementAttempt): string {
  if (contractId === "" || lineItemId === "") {
    throw new Error("idempotencyKey needs a contract id and a line item id");
  }
  if (attempt && !/^[A-Za-z0-9]{1,32}$/.test(attempt.attemptId)) throw new Error("attemptId must be 1–32 letters or digits");
  const suffix = attempt ? `:${attempt.amountMinor}:a${attempt.attemptId}` : "";
  // Escaping keeps the parts apart: "a:b" + "c" never collides with "a" + "b:c".
  const readable = `${VERSION}:${action}:${escapePart(contractId)}:${escapePart(lineItemId)}${suffix}`;
  if (readable.length <= MAX_IDEMPOTENCY_KEY_LENGTH) return readable;
  const digest = createHash("sha256").update(`${contractId}\u0000${lineItemId}`, "utf8").digest("hex");
  return `${VERSION}:${action}:sha256:${digest}${suffix}`;
}

/** A fresh attempt id for `SettlementAttempt`: 48 random bits, so no two attempts share a key. */
export function newAttemptId(): string {
  return randomBytes(6).toString("hex");
}

function escapePart(part: string): string {
  return encodeURIComponent(part).replace(/[!'()*~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
