import { spawn } from "node:child_process";
import { once } from "node:events";
import { freePort } from "./ports.js";

/** A real `redis-server` on 127.0.0.1, no persistence, started by a test. */
export interface TestRedis {
  port: number;
  /** `redis://127.0.0.1:<port>`, as REDIS_URL takes it. */
  url: string;
  /** Stops the server (SIGKILL: it holds nothing worth saving) and waits for it to exit; safe twice. */
  stop(): Promise<void>;
}


/**
 * Starts `redis-server --port <free> --save '' --appendonly no --bind 127.0.0.1` and resolves once
 * it accepts connections; on `port` when given (a Redis brought back where its clients look for it).
 */
export async function startRedis(options: { port?: number } = {}): Promise<TestRedis> {
  const port = options.port ?? (await freePort());
  const child = spawn("redis-server", ["--port", String(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const exited = once(child, "exit");
  await new Promise<void>((resolve, reject) => {
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      output = (output + chunk).slice(-4000);
      if (output.includes("Ready to accept connections")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`redis-server exited (code ${code}) before it was ready: ${output}`)));
  });
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}
