/**
 * The floor: the least a relay can do on this machine with Node. Plain `node:http2` streams;
 * two callers with the same `x-room` header are paired and every byte one sends is copied to
 * the other. No protobuf, no auth, no rooms. The bench runs the same load against it and our
 * server in one run and reports our server's CPU and p99 as ratios to it.
 *
 * Run: `node --import tsx bench/floor-relay.ts`; prints {"msg":"listening","port":N} (PORT=0 by default).
 */
import http2 from "node:http2";
import path from "node:path";
import { pathToFileURL } from "node:url";

interface Caller {
  stream: http2.ServerHttp2Stream;
  peer: Caller | undefined;
  /** Bytes that arrived before the peer did. */
  held: Buffer[];
}

/** Starts the floor relay on `port` (0 for any); resolves with the bound port and a close function. */
export function startFloorRelay(port = 0, host = "127.0.0.1"): Promise<{ port: number; close(): void }> {
  const waiting = new Map<string, Caller>();
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    const room = String(headers["x-room"] ?? "");
    const self: Caller = { stream, peer: undefined, held: [] };
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.on("error", () => {});
    stream.on("data", (chunk: Buffer) => {
      if (self.peer) self.peer.stream.write(chunk);
      else self.held.push(chunk);
    });
    stream.on("end", () => stream.end());
    stream.on("close", () => {
      if (waiting.get(room) === self) waiting.delete(room);
      if (self.peer) self.peer.peer = undefined;
    });
    const other = waiting.get(room);
    if (other) {
      waiting.delete(room);
      self.peer = other;
      other.peer = self;
      for (const chunk of other.held) stream.write(chunk);
      for (const chunk of self.held) other.stream.write(chunk);
      other.held = [];
      self.held = [];
    } else {
      waiting.set(room, self);
    }
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  return new Promise((resolve) => {
    server.listen(port, host, () => {
      const address = server.address();
      resolve({
        port: typeof address === "object" && address ? address.port : port,
        close() {
          for (const s of sessions) s.destroy();
          server.close();
        },
      });
    });
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const relay = await startFloorRelay(Number(process.env.PORT ?? 0));
  process.stdout.write(`${JSON.stringify({ msg: "listening", port: relay.port })}\n`);
  process.on("SIGTERM", () => {
    relay.close();
    process.exit(0);
  });
}
