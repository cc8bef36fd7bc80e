import { pino, type DestinationStream, type Logger, type LoggerOptions } from "pino";
import { activeTraceIds } from "./tracing.js";

/** Keys whose values never reach a log line, at any depth, compared without case. */
const SECRET_KEYS = new Set(
  [
    "token",
    "sessionToken",
    "userToken",
    "accessToken",
    "refreshToken",
    "authorization",
    "cookie",
    "monzoAccessToken",
    "apiKey",
    "secret",
    "clientSecret",
    "jwtSecret",
    "webhookSecret",
    "password",
    "cardNumber",
    "cvc",
  ].map((key) => key.toLowerCase()),
);

/** What a secret's value is replaced with. */
export const REDACTED = "[redacted]";
/** Deeper than this a log field is written as it is: no line of ours nests so deep. */
const MAX_REDACT_DEPTH = 10;

/**
 * `value` with every secret-named key's value replaced, at any depth of plain objects and arrays
 * (pino's redact paths cannot wildcard depth). Copies only what it changes, so a line without
 * secrets costs one walk and no allocation.
 */
export function redactSecrets<T>(value: T): T {
  return redactAt(value, 0, new WeakSet()) as T;
}

function redactAt(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (value === null || typeof value !== "object" || depth > MAX_REDACT_DEPTH || seen.has(value)) return value;
  seen.add(value);
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item: unknown, i) => {
      const redacted = redactAt(item, depth + 1, seen);
      if (redacted !== item) (copy ??= [...value])[i] = redacted;
    });
    return copy ?? value;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  // Errors, Buffers and class instances go to pino's serializers as they are.
  if (proto !== Object.prototype && proto !== null) return value;
  const record = value as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(record)) {
    const item = record[key];
    const redacted = SECRET_KEYS.has(key.toLowerCase()) ? REDACTED : redactAt(item, depth + 1, seen);
    if (redacted !== item) (copy ??= { ...record })[key] = redacted;
  }
  return copy ?? value;
}

/** The options every process logger shares: secrets redacted in fields and bindings, trace ids on lines. */
function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    base: undefined,
    formatters: {
      log: (fields) => redactSecrets(fields),
      bindings: (bindings) => redactSecrets(bindings),
    },
    // A line logged while a span is active (a served call, a deal's stage) names its trace.
    mixin: () => activeTraceIds() ?? {},
  };
}

/**
 * Creates the process logger (to stdout, or `destination`). Secrets, audio and transcript text
 * never go into logs.
 */
export function createLogger(level: string = process.env.LOG_LEVEL ?? "info", destination?: DestinationStream): Logger {
  return destination ? pino(loggerOptions(level), destination) : pino(loggerOptions(level));
}

/** A logger for failures before the process logger exists: JSON lines to stderr, written at once. */
export function createStartupLogger(): Logger {
  return pino(loggerOptions("info"), pino.destination({ fd: 2, sync: true }));
}

/** A logger that writes nothing, for tests and benchmarks. */
export const silentLogger: Logger = pino({ level: "silent" });
