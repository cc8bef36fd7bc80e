// An attacker for test/security/dos.test.ts, run as its own process so its sockets, CPU and memory
// are not the server's: `node dos-attacker.mjs <json>` with { mode, port, host, localAddress, ... }.
// It writes one JSON line when its sockets are open ("ready") and one with what it saw ("done").
// Every mode is bounded in count and in time (durationMs) and then exits by itself.
import http from "node:http";
import net from "node:net";

const opts = JSON.parse(process.argv[2] ?? "{}");
const { mode, port, host = "127.0.0.1", localAddress = "127.0.0.2", durationMs = 2000 } = opts;
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const say = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const sockets = new Set();

/** One HTTP/2 frame. */
function frame(type, flags, streamId, payload = Buffer.alloc(0)) {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK literal fields without indexing (names and values under 127 bytes). */
function hpack(fields) {
  const parts = [];
  for (const [name, value] of fields) parts.push(Buffer.from([0, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value));
  return Buffer.concat(parts);
}

const CHECK_HEADERS = (path) =>
  hpack([
    [":method", "POST"],
    [":scheme", "http"],
    [":path", path],
    [":authority", `${host}:${port}`],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
  ]);

/** A raw HTTP/2 connection that answers SETTINGS and PING and counts GOAWAY and RST_STREAM. */
function h2Connection() {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host, localAddress });
    sockets.add(socket);
    const conn = { socket, goaway: false, goawayCode: -1, resets: 0, closed: false, write: (b) => !socket.destroyed && socket.write(b) };
    let buf = Buffer.alloc(0);
    socket.on("error", () => {});
    socket.on("close", () => {
      conn.closed = true;
      sockets.delete(socket);
    });
    socket.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 9) {
        const length = buf.readUIntBE(0, 3);
        if (buf.length < 9 + length) break;
        const type = buf[3];
        const flags = buf[4];
        const payload = buf.subarray(9, 9 + length);
        buf = buf.subarray(9 + length);
        if (type === 4 && (flags & 1) === 0) conn.write(frame(4, 1, 0));
        else if (type === 6 && (flags & 1) === 0) conn.write(frame(6, 1, 0, payload));
        else if (type === 7) {
          conn.goaway = true;
          // The first GOAWAY says why; a second one (NO_ERROR) may follow as the socket closes.
          if (conn.goawayCode === -1) conn.goawayCode = payload.readUInt32BE(4);
        } else if (type === 3) conn.resets++;
      }
    });
    socket.on("connect", () => {
      socket.setNoDelay(true);
      conn.write(Buffer.concat([PREFACE, frame(4, 0, 0)]));
      resolve(conn);
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const until = Date.now() + durationMs;

async function manyStreams() {
  // Far more open streams than SETTINGS_MAX_CONCURRENT_STREAMS on one connection, never ended;
  // a connection the server ends is replaced, until durationMs.
  let opened = 0;
  let serverResets = 0;
  const goawayCodes = [];
  let connections = 0;
  let refusedConnections = 0;
  say({ ready: true });
  while (Date.now() < until && connections < opts.maxConnections) {
    const conn = await h2Connection();
    connections++;
    let id = 1;
    for (let i = 0; i < opts.streams && Date.now() < until && !conn.closed; i++, id += 2) {
      conn.write(frame(1, 4, id, CHECK_HEADERS("/grpc.health.v1.Health/Check")));
      opened++;
      if (i % 50 === 49) await sleep(5);
    }
    while (Date.now() < until && !conn.closed) await sleep(20);
    serverResets += conn.resets;
    if (conn.goawayCode >= 0) goawayCodes.push(conn.goawayCode);
    else refusedConnections++;
    conn.socket.destroy();
    await sleep(opts.reconnectMs ?? 50);
  }
  return { connections, opened, serverResets, goawayCodes, refusedConnections };
}

async function rapidReset() {
  // HEADERS then RST_STREAM(CANCEL) at once, over many connections, as fast as the socket takes it.
  const conns = await Promise.all(Array.from({ length: opts.connections }, () => h2Connection()));
  say({ ready: true });
  let sent = 0;
  const ids = conns.map(() => 1);
  const rst = Buffer.alloc(4);
  rst.writeUInt32BE(8); // CANCEL
  while (Date.now() < until && conns.some((c) => !c.closed) && sent < opts.maxResets) {
    conns.forEach((c, i) => {
      if (c.closed) return;
      const batch = [];
      for (let k = 0; k < opts.batch; k++) {
        batch.push(frame(1, 4, ids[i], CHECK_HEADERS("/grpc.health.v1.Health/Check")), frame(3, 0, ids[i], rst));
        ids[i] += 2;
        sent++;
      }
      c.write(Buffer.concat(batch));
    });
    await sleep(opts.pauseMs ?? 10);
  }
  const deadline = Date.now() + 2000;
  while (Date.now() < deadline && conns.some((c) => !c.closed)) await sleep(20);
  // The attacker keeps coming back until durationMs: while the address is cut off, each new
  // connection is refused before it can send a frame.
  let reconnects = 0;
  let reconnectsRefused = 0;
  while (Date.now() < until) {
    const again = await h2Connection();
    reconnects++;
    again.write(frame(1, 4, 1, CHECK_HEADERS("/grpc.health.v1.Health/Check")));
    await sleep(100);
    if (again.closed && again.goawayCode === -1) reconnectsRefused++;
    again.socket.destroy();
  }
  return {
    sent,
    cutOff: conns.filter((c) => c.goaway && c.goawayCode === 11).length,
    closed: conns.filter((c) => c.closed).length,
    reconnects,
    reconnectRefused: reconnects > 0 && reconnectsRefused === reconnects,
  };
}

async function idleSockets() {
  // Half of them never send a byte; the other half send the HTTP/2 preface and then nothing.
  const opened = [];
  for (let i = 0; i < opts.sockets; i++) {
    opened.push(
      new Promise((resolve) => {
        const socket = net.connect({ port, host, localAddress });
        sockets.add(socket);
        const s = { closed: false, openedAt: Date.now(), closedAt: 0 };
        socket.on("error", () => {});
        socket.on("data", () => {});
        socket.on("close", () => {
          s.closed = true;
          s.closedAt = Date.now();
          sockets.delete(socket);
        });
        socket.on("connect", () => {
          if (i % 2 === 1) socket.write(Buffer.concat([PREFACE, frame(4, 0, 0)]));
          resolve(s);
        });
      }),
    );
    if (i % 200 === 199) await sleep(5);
  }
  const all = await Promise.all(opened);
  say({ ready: true, open: all.filter((s) => !s.closed).length });
  while (Date.now() < until && all.some((s) => !s.closed)) await sleep(50);
  const lifetimes = all.filter((s) => s.closed).map((s) => s.closedAt - s.openedAt);
  return { sockets: all.length, closedByServer: lifetimes.length, maxLifetimeMs: Math.max(0, ...lifetimes) };
}

async function slowloris() {
  // Headers that never end, one header line every intervalMs, on `sockets` sockets at a time; a
  // socket the server closes is replaced until durationMs (at most `sockets` × 10 in all).
  const all = [];
  const open = () => {
    const socket = net.connect({ port, host, localAddress });
    sockets.add(socket);
    const s = { status: "", closed: false, openedAt: Date.now(), closedAt: 0 };
    let timer;
    socket.on("error", () => {});
    socket.on("data", (d) => {
      s.status ||= d.toString("latin1").split("\r\n")[0];
    });
    socket.on("close", () => {
      s.closed = true;
      s.closedAt = Date.now();
      clearInterval(timer);
      sockets.delete(socket);
      if (Date.now() < until && all.length < opts.sockets * 10) open();
    });
    socket.on("connect", () => {
      socket.write(`POST /handshake.v1.RoomService/JoinRoom HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\n`);
      timer = setInterval(() => !socket.destroyed && socket.write(`X-Slow-${Math.random().toString(36).slice(2, 8)}: 1\r\n`), opts.intervalMs);
    });
    all.push(s);
  };
  for (let i = 0; i < opts.sockets; i++) open();
  say({ ready: true });
  while (Date.now() < until) await sleep(50);
  // The last ones opened get their own timeout to run out.
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && all.some((s) => !s.closed)) await sleep(50);
  const lifetimes = all.filter((s) => s.closed).map((s) => s.closedAt - s.openedAt);
  return {
    sockets: all.length,
    closedByServer: lifetimes.length,
    got408: all.filter((s) => s.status.includes(" 408 ")).length,
    maxLifetimeMs: Math.max(0, ...lifetimes),
  };
}

async function roomFlood() {
  // JoinRoom with an empty room_id (a new room each time) as fast as answers come, over Connect
  // JSON on one keep-alive HTTP/1.1 connection: an anonymous client after every room slot.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress });
  const body = JSON.stringify({ roomId: "", profile: { displayName: "Flood", role: "PARTY_ROLE_CLIENT", currency: "GBP" } });
  const join = () =>
    new Promise((resolve) => {
      const req = http.request(
        { host, port, agent, method: "POST", path: "/handshake.v1.RoomService/JoinRoom", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d) => (text += d));
          res.on("end", () => resolve({ status: res.statusCode, retryAfter: res.headers["retry-after"], text }));
        },
      );
      req.on("error", (err) => resolve({ status: 0, text: String(err) }));
      req.end(body);
    });
  say({ ready: true });
  let created = 0;
  let refused = 0;
  let firstRefusal;
  for (let i = 0; i < opts.joins && Date.now() < until; i++) {
    const r = await join();
    if (r.status === 200) created++;
    else {
      refused++;
      firstRefusal ??= { status: r.status, retryAfter: r.retryAfter, ...JSON.parse(r.text || "{}") };
    }
  }
  agent.destroy();
  return { created, refused, firstRefusal };
}

const modes = { streams: manyStreams, reset: rapidReset, idle: idleSockets, slowloris, rooms: roomFlood };
const timer = setTimeout(() => process.exit(2), durationMs + 10_000);
modes[mode]()
  .then((result) => say({ done: true, ...result }))
  .catch((err) => say({ done: true, error: String(err) }))
  .finally(() => {
    for (const s of sockets) s.destroy();
    clearTimeout(timer);
    process.exit(0);
  });
