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
  return redactAt(value, 0, new Set()) as T;
}

/** `path` holds the objects from the top down to `value`: one met again there is a cycle. */
function redactAt(value: unknown, depth: number, path: Set<object>): unknown {
  if (value === null || typeof value !== "object" || depth > MAX_REDACT_DEPTH) return value;
  // A copy may not point back at the original (it would carry the original's secrets).
  if (path.has(value)) return "[Circular]";
  path.add(value);
  try {
    return redactObject(value, depth, path);
  } finally {
    path.delete(value);
  }
}

function redactObject(value: object, depth: number, path: Set<object>): unknown {
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item: unknown, i) => {
      const redacted = redactAt(item, depth + 1, path);
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
    const redacted = SECRET_KEYS.has(key.toLowerCase()) ? REDACTED : redactAt(item, depth + 1, path);
    if (redacted !== item) (copy ??= { ...record })[key] = redacted;
  }
  return copy ?? value;
}

/** The options every process logger shares: secrets redacted in fields and bindings, trace ids on lines. */
function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    base: undefined,
    formatters: { log: (fields) => redactSecrets(fields) },
    // A line logged while a span is active (a served call, a deal's stage) names its trace.
    mixin: () => activeTraceIds() ?? {},
  };
}

/**
 * Creates the process logger (to stdout, or `destination`). Secrets, audio and transcript text
 * never go into logs.
 */
export function createLogger(level: string = process.env.LOG_LEVEL ?? "info", destination?: DestinationStream): Logger {
  return redactingChildren(destination ? pino(loggerOptions(level), destination) : pino(loggerOptions(level)));
}

/** A logger for failures before the process logger exists: JSON lines to stderr, written at once. */
export function createStartupLogger(): Logger {
  return redactingChildren(pino(loggerOptions("info"), pino.destination({ fd: 2, sync: true })));
}

/**
 * Pino resets the bindings formatter for every child, so child bindings are redacted here: each
 * child is made from its parent's prototype chain and inherits this `child`.
 */
function redactingChildren(logger: Logger): Logger {
  const child = logger.child;
  logger.child = function (this: Logger, bindings, options) {
    return child.call(this, redactSecrets(bindings), options);
  } as Logger["child"];
  return logger;
}

/** A logger that writes nothing, for tests and benchmarks. */
export const silentLogger: Logger = pino({ level: "silent" });
