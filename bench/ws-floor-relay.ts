/**
 * The WebSocket floor: what a user would get from the plainest Node WebSocket relay (`ws`). Two
 * sockets whose URL path names the same room are paired and every binary message one sends is
 * copied to the other. No protobuf, no auth, no rooms. The bench runs the same load against it,
 * the node:http2 floor and our server in one run.
 *
 * Run: `node --import tsx bench/ws-floor-relay.ts`; prints {"msg":"listening","port":N} (PORT=0 by default).
 */
import path from "node:path";
import { pathToFileURL } from "node:url";
import { WebSocketServer, type WebSocket } from "ws";

interface Caller {
  socket: WebSocket;
  peer: Caller | undefined;
  /** Messages that arrived before the peer did. */
  held: Buffer[];
}

/** Starts the WebSocket floor on `port` (0 for any); resolves with the bound port and a close function. */
export function startWsFloorRelay(port = 0, host = "127.0.0.1"): Promise<{ port: number; close(): void }> {
  const waiting = new Map<string, Caller>();
  // perMessageDeflate off, as a relay of PCM would run it (compressing audio costs CPU for little).
  const server = new WebSocketServer({ port, host, perMessageDeflate: false });
  server.on("connection", (socket, request) => {
    const room = request.url ?? "";
    const self: Caller = { socket, peer: undefined, held: [] };
    socket.on("error", () => {});
    socket.on("message", (data: Buffer, isBinary: boolean) => {
      if (self.peer) self.peer.socket.send(data, { binary: isBinary });
      else self.held.push(data);
    });
    socket.on("close", () => {
      if (waiting.get(room) === self) waiting.delete(room);
      if (self.peer) {
        self.peer.peer = undefined;
        self.peer.socket.close();
      }
    });
    const other = waiting.get(room);
    if (other) {
      waiting.delete(room);
      self.peer = other;
      other.peer = self;
      for (const data of other.held) socket.send(data, { binary: true });
      for (const data of self.held) other.socket.send(data, { binary: true });
      other.held = [];
      self.held = [];
    } else {
      waiting.set(room, self);
    }
  });
  return new Promise((resolve) => {
    server.on("listening", () => {
      const address = server.address();
      resolve({
        port: typeof address === "object" && address ? address.port : port,
        close() {
          for (const client of server.clients) client.terminate();
          server.close();
        },
      });
    });
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const relay = await startWsFloorRelay(Number(process.env.PORT ?? 0));
  process.stdout.write(`${JSON.stringify({ msg: "listening", port: relay.port })}\n`);
  process.on("SIGTERM", () => {
    relay.close();
    process.exit(0);
  });
}
