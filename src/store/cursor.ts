/** A page cursor that this store did not hand out, or that was altered. */
export class InvalidCursorError extends Error {
  override readonly name = "InvalidCursorError";
}

const INT64_MAX = 2n ** 63n - 1n;

/** Position after the last contract of a page: contracts are ordered by (createdAtMs, id) descending. */
export interface ContractCursor {
  createdAtMs: bigint;
  id: string;
}

/** Encodes a position as an opaque URL-safe string; clients must not parse it. */
export function toContractCursor(position: ContractCursor): string {
  return Buffer.from(JSON.stringify({ c: position.createdAtMs.toString(), i: position.id }), "utf8").toString("base64url");
}

/** Decodes a cursor from `toContractCursor`; throws `InvalidCursorError` for anything else. */
export function fromContractCursor(cursor: string): ContractCursor {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw new InvalidCursorError("malformed page cursor");
  }
  if (
    typeof parsed !== "object" ||
    parsed === null ||
    typeof (parsed as { c?: unknown }).c !== "string" ||
    typeof (parsed as { i?: unknown }).i !== "string" ||
    !/^-?\d{1,19}$/.test((parsed as { c: string }).c)
  ) {
    throw new InvalidCursorError("malformed page cursor");
  }
  const { c, i } = parsed as { c: string; i: string };
  // A time outside int64 cannot be bound as a query parameter; no cursor of ours holds one.
  const createdAtMs = BigInt(c);
  if (createdAtMs < 0n || createdAtMs > INT64_MAX) throw new InvalidCursorError("malformed page cursor");
  return { createdAtMs, id: i };
}
