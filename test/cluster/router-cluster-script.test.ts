import { spawn } from "node:child_process";
import { once } from "node:events";
import { chmod } from "node:fs/promises";
import { createInterface } from "node:readline";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { expect, it } from "vitest";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { testProfile } from "../support/app.js";
import { roomHeader } from "../support/people.js";
import { tempDir } from "../support/store.js";

/** The line `npm run cluster -- --json` prints once everything is up. */
interface ClusterReady {
  type: "ready";
  router: { url: string; port: number; pid: number };
  nodes: { id: string; port: number; pid: number }[];
  postgres: { url: string; pid: number };
  redis: { url: string };
}

const isRunning = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

it("npm run cluster starts PostgreSQL, Redis, two nodes and the router, serves a room through it, and stops it all on SIGTERM", async () => {
  const { dir, cleanup } = await tempDir();
  // PostgreSQL runs as the postgres user when this runs as root: it must reach its folder inside.
  await chmod(dir, 0o755);
  const cluster = spawn(process.execPath, ["--import", "tsx", "scripts/cluster.ts", "--nodes", "2", "--port", "0", "--dir", dir, "--json", "--env", "SPEECH_ENGINE=device"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  cluster.stderr.setEncoding("utf8");
  cluster.stderr.on("data", (text: string) => (stderr = (stderr + text).slice(-8_000)));
  const exited = once(cluster, "exit");
  try {
    const ready = await new Promise<ClusterReady>((resolve, reject) => {
      createInterface({ input: cluster.stdout }).on("line", (line) => {
        const parsed = JSON.parse(line) as ClusterReady;
        if (parsed.type === "ready") resolve(parsed);
      });
      cluster.once("exit", (code) => reject(new Error(`cluster exited (${code}) before it was ready:\n${stderr}`)));
    });
    expect(ready.nodes.map((n) => n.id)).toEqual(["node-1", "node-2"]);
    expect(ready.postgres.url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/handshake$/);

    // Two people join one room through the router: both calls meet on one node, in one room.
    const client = createClient(RoomService, createConnectTransport({ baseUrl: ready.router.url, interceptors: [roomHeader("cluster-script")] }));
    const served: string[] = [];
    const onHeader = (headers: Headers) => served.push(headers.get("handshake-node") ?? "");
    await client.joinRoom({ roomId: "cluster-script", profile: testProfile({ displayName: "Ada" }) }, { onHeader });
    const second = await client.joinRoom({ roomId: "cluster-script", profile: testProfile({ displayName: "Bo" }) }, { onHeader });
    expect(second.room?.participants).toHaveLength(2);
    expect(served[0]).toMatch(/^node-[12]$/);
    expect(served[1]).toBe(served[0]);

    cluster.kill("SIGTERM");
    const [code] = await exited;
    expect(code).toBe(0);
    const pids = [ready.router.pid, ready.postgres.pid, ...ready.nodes.map((n) => n.pid)];
    expect(pids.filter(isRunning)).toEqual([]);
  } finally {
    if (cluster.exitCode === null && cluster.signalCode === null) {
      cluster.kill("SIGTERM");
      await exited;
    }
    await cleanup();
  }
}, 90_000);
