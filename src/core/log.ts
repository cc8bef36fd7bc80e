import { pino, type Logger } from "pino";

/** Creates the process logger. Secrets, audio and transcript text never go into logs. */
export function createLogger(level: string = process.env.LOG_LEVEL ?? "info"): Logger {
  return pino({
    level,
    base: undefined,
    redact: { paths: ["*.token", "*.authorization", "*.monzoAccessToken", "*.apiKey"], censor: "[redacted]" },
  });
}

/** A logger that writes nothing, for tests and benchmarks. */
export const silentLogger: Logger = pino({ level: "silent" });
