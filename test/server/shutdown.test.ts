import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { grpcTransport, testProfile } from "../support/app.js";

describe("graceful shutdown", () => {
  it("ends an open PanelStream with a status on SIGTERM and exits 0 within 10 s", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "handshake-sigterm-"));
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      env: { ...process.env, HOST: "127.0.0.1", PORT: "0", DATA_DIR: dataDir, LOG_LEVEL: "info", SPEECH_ENGINE: "device" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      const lines = createInterface({ input: child.stdout! });
      const port = await new Promise<number>((resolve, reject) => {
        lines.on("line", (line) => {
          const entry = JSON.parse(line) as { msg?: string; port?: number };
          if (entry.msg === "listening" && entry.port) resolve(entry.port);
        });
        child.once("exit", (code) => reject(new Error(`server exited early with ${code}`)));
      });
      const baseUrl = `http://127.0.0.1:${port}`;
      const joined = await createClient(RoomService, grpcTransport(baseUrl)).joinRoom({ roomId: "shutdown", profile: testProfile() });
      const room = createClient(RoomService, grpcTransport(baseUrl, joined.sessionToken));
      const stream = room.panelStream({ roomId: "shutdown", afterSeq: 0n })[Symbol.asyncIterator]();
      expect((await stream.next()).value?.event?.seq).toBe(1n);

      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      // Events already on the way may still arrive; the stream must then end with a status.
      let code: Code | undefined;
      try {
        while (!(await stream.next()).done);
      } catch (err) {
        code = ConnectError.from(err).code;
      }
      expect(code).toBe(Code.Unavailable);
      const exitCode = await Promise.race([exited, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 10_000))]);
      expect(exitCode).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
