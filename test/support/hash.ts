import { createHash } from "node:crypto";

/** SHA-256 (hex) of a text as UTF-8: what a signer computes over the contract text it read. */
export function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}
