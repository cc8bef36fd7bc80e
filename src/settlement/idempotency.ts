import { createHash } from "node:crypto";

/** What a money movement does to a line item; each has its own key so each happens at most once. */
export type IdempotencyAction = "pay" | "hold" | "capture" | "release";

/** Longest key Stripe accepts (and the ledger stores). */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

const VERSION = "hs1";

/**
 * The idempotency key of `action` on one line item of one contract: the one place keys are made.
 * Deterministic, so a retry, a crash and restart or a double click sends the same key and the rail
 * moves the money at most once. At most 255 characters: long ids are replaced by their SHA-256.
 */
export function idempotencyKey(contractId: string, lineItemId: string, action: IdempotencyAction): string {
  if (contractId === "" || lineItemId === "") {
    throw new Error("idempotencyKey needs a contract id and a line item id");
  }
  // Escaping keeps the parts apart: "a:b" + "c" never collides with "a" + "b:c".
  const readable = `${VERSION}:${action}:${escapePart(contractId)}:${escapePart(lineItemId)}`;
  if (readable.length <= MAX_IDEMPOTENCY_KEY_LENGTH) return readable;
  const digest = createHash("sha256").update(`${contractId}\u0000${lineItemId}`, "utf8").digest("hex");
  return `${VERSION}:${action}:sha256:${digest}`;
}

function escapePart(part: string): string {
  return encodeURIComponent(part).replace(/[!'()*~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
