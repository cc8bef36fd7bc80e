import { Writable } from "node:stream";
import type { Level, Logger } from "pino";
import { createLogger } from "../../src/core/log.js";

/** One JSON log line as parsed, and as written (to see what parsing hides, like a repeated key). */
export interface LogLine {
  raw: string;
  fields: Record<string, unknown> & { msg?: string; level?: number };
}

/** The process logger (src/core/log.ts: redaction, trace ids) at `level`, writing into `lines`. */
export function recordingLogger(level: Level): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const raw of chunk.toString().split("\n")) if (raw.trim() !== "") lines.push({ raw, fields: JSON.parse(raw) as LogLine["fields"] });
      done();
    },
  });
  return { log: createLogger(level, sink), lines };
}

/**
 * The top-level keys written more than once in the JSON object `raw` (JSON.parse keeps only the
 * last). Scans strings and nesting by hand; `raw` must be valid JSON.
 */
export function repeatedKeys(raw: string): string[] {
  const seen = new Set<string>();
  const repeated = new Set<string>();
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c === '"') {
      let end = i + 1;
      while (raw[end] !== '"') end += raw[end] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) {
        const key = JSON.parse(raw.slice(i, end + 1)) as string;
        if (seen.has(key)) repeated.add(key);
        seen.add(key);
        expectKey = false;
      }
      i = end;
    } else if (c === "{" || c === "[") {
      depth++;
      if (depth === 1) expectKey = true;
    } else if (c === "}" || c === "]") depth--;
    else if (c === "," && depth === 1) expectKey = true;
  }
  return [...repeated];
}
