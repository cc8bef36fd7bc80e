import { randomUUID } from "node:crypto";
import { clone, create, ScalarType, type DescField, type DescMessage, type Message } from "@bufbuild/protobuf";

/**
 * Random messages for the fuzz test: whole random messages of a schema, and valid messages with a
 * few fields replaced by hostile values (empty, huge, negative, unknown enum values, odd bytes).
 * A seedable generator keeps a failing run reproducible (the seed is printed on failure).
 */

/** A small deterministic PRNG (mulberry32). */
export function createRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Helpers over a PRNG. */
export interface Random {
  next(): number;
  int(maxExclusive: number): number;
  pick<T>(items: readonly T[]): T;
  bytes(n: number): Uint8Array;
}

/** Wraps a PRNG with the helpers the mutators use. */
export function createRandom(seed: number): Random {
  const next = createRng(seed);
  const int = (maxExclusive: number) => Math.floor(next() * maxExclusive);
  return {
    next,
    int,
    pick: (items) => items[int(items.length)]!,
    bytes(n) {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = int(256);
      return out;
    },
  };
}

const STRINGS = (r: Random): string[] => [
  "",
  " ",
  "x".repeat(r.int(300)),
  "ünïcødé ✓ 🤝",
  "\u0000\u0007\u001b[31m",
  "'; DROP TABLE contracts; --",
  "../../etc/passwd",
  "handshake",
  `ctr_${randomUUID()}`,
  `ctr_${randomUUID()}_m${r.int(5)}`,
  "GBP",
  "acct_123",
  "%s%n%x",
  "\u202eevil\u200b",
];

function randomScalar(r: Random, scalar: ScalarType): unknown {
  switch (scalar) {
    case ScalarType.STRING:
      return r.pick(STRINGS(r));
    case ScalarType.BOOL:
      return r.next() < 0.5;
    case ScalarType.BYTES:
      return r.bytes(r.pick([0, 1, 3, 640, 641, r.int(4096)]));
    case ScalarType.DOUBLE:
      return r.pick([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, -Number.MAX_VALUE]);
    case ScalarType.FLOAT:
      return r.pick([0, -1, 1.5, Number.NaN, Number.NEGATIVE_INFINITY, 3.4e38, -3.4e38]);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return r.pick([0, -1, 1, 2 ** 31 - 1, -(2 ** 31), r.int(1000) - 500]);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return r.pick([0, 1, 2 ** 32 - 1, r.int(100_000)]);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return r.pick([0n, -1n, 1n, 2n ** 63n - 1n, -(2n ** 63n), BigInt(r.int(1_000_000)) - 500_000n, 100_000_001n]);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return r.pick([0n, 1n, 2n ** 64n - 1n, BigInt(r.int(1_000_000))]);
  }
}

function randomEnum(r: Random, values: readonly { number: number }[]): number {
  return r.next() < 0.7 ? r.pick(values).number : r.pick([99, -1, 2 ** 31 - 1]);
}

function randomFieldValue(r: Random, field: DescField, depth: number): unknown {
  switch (field.fieldKind) {
    case "scalar":
      return randomScalar(r, field.scalar);
    case "enum":
      return randomEnum(r, field.enum.values);
    case "message":
      return randomMessage(r, field.message, depth + 1);
    case "list": {
      const n = r.pick([0, 1, 2, 21, 51, r.int(60)]);
      return Array.from({ length: n }, () => {
        if (field.listKind === "scalar") return randomScalar(r, field.scalar);
        if (field.listKind === "enum") return randomEnum(r, field.enum.values);
        return randomMessage(r, field.message, depth + 1);
      });
    }
    case "map":
      return {};
  }
}

/** Sets one field (oneof members through their oneof). */
function setField(target: Record<string, unknown>, field: DescField, value: unknown): void {
  if (field.oneof) target[field.oneof.localName] = { case: field.localName, value };
  else target[field.localName] = value;
}

/** A message of `schema` with each field set at random (nested up to a small depth). */
export function randomMessage<T extends Message>(r: Random, schema: DescMessage, depth = 0): T {
  const message = create(schema) as unknown as Record<string, unknown>;
  if (depth > 3) return message as unknown as T;
  for (const field of schema.fields) {
    if (r.next() < 0.5) setField(message, field, randomFieldValue(r, field, depth));
  }
  return message as unknown as T;
}

/** A copy of a valid `seed` with one to three of its fields replaced by random values. */
export function mutateMessage<T extends Message>(r: Random, schema: DescMessage, seed: T): T {
  const message = clone(schema as never, seed as never) as unknown as Record<string, unknown>;
  if (schema.fields.length === 0) return message as unknown as T;
  const n = 1 + r.int(3);
  for (let i = 0; i < n; i++) {
    const field = r.pick(schema.fields);
    // Sometimes go one level down, so a valid profile gets one bad field rather than a random one.
    const current = field.fieldKind === "message" && !field.oneof ? (message[field.localName] as Message | undefined) : undefined;
    if (current && field.fieldKind === "message" && r.next() < 0.6) {
      message[field.localName] = mutateMessage(r, field.message, current);
    } else {
      setField(message, field, randomFieldValue(r, field, 1));
    }
  }
  return message as unknown as T;
}

/** Flips, inserts, deletes or truncates a few bytes of an encoded message. */
export function mutateBytes(r: Random, bytes: Uint8Array): Uint8Array {
  const out = Array.from(bytes);
  const n = 1 + r.int(4);
  for (let i = 0; i < n; i++) {
    const at = r.int(out.length + 1);
    switch (r.int(4)) {
      case 0:
        if (out.length) out[Math.min(at, out.length - 1)] = r.int(256);
        break;
      case 1:
        out.splice(at, 0, r.int(256));
        break;
      case 2:
        out.splice(at, 1);
        break;
      case 3:
        out.length = Math.min(out.length, at);
        break;
    }
  }
  return Uint8Array.from(out);
}
