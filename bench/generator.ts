/**
 * The load generator, run in its own process by bench/run.ts: R rooms × 2 participants, each on
 * its own HTTP/2 connection, each streaming 20 ms frames in real time through AudioStream (or
 * through the floor relay), measuring relay latency at the receiving peer.
 *
 * It writes gRPC framing on `node:http2` by hand and keeps the per-frame work to one small
 * buffer and a few integer operations, so its own CPU stays low; it reports that CPU and its
 * event-loop delay so its stalls are never blamed on the server.
 *
 * Input: one JSON argument (GeneratorConfig). Output: JSON lines on stdout — {"type":"ready"},
 * {"type":"measure-start"}, {"type":"measure-end"}, then {"type":"result", ...GeneratorResult}.
 */
import http2 from "node:http2";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { WebSocket } from "ws";
import { AudioEncoding } from "../gen/handshake/v1/audio_pb.js";
import { PartyRole } from "../gen/handshake/v1/profile_pb.js";
import {
  AudioStreamRequestSchema,
  JoinRoomRequestSchema,
  JoinRoomResponseSchema,
  LeaveRoomRequestSchema,
} from "../gen/handshake/v1/room_service_pb.js";
import { AUDIO_STREAM_PATH, encodeFrameMessage, GrpcMessageReader, grpcMessage, parseFrame, type ParsedFrame } from "../src/server/grpc-h2/wire.js";
import { nowUs } from "./clock.js";
import { LatencyHistogram } from "./stats.js";

/** What the generator is told to do. */
export interface GeneratorConfig {
  /**
   * "server": Handshake's AudioStream (joins rooms first); "floor": the bench's node:http2 byte
   * relay; "ws-floor": the bench's WebSocket relay (one binary message per gRPC message).
   */
  target: "server" | "floor" | "ws-floor";
  port: number;
  rooms: number;
  /** Seconds of streaming, warm-up included. */
  seconds: number;
  /** Seconds at the start left out of latency, CPU and loop-delay figures. */
  warmupSeconds: number;
  /** PCM bytes per frame (640 = 20 ms of 16 kHz PCM16). */
  frameBytes: number;
  frameIntervalMs: number;
  /** Prefix of room ids, unique per run. */
  runId: string;
  /** Joins and stream opens in flight at once. */
  setupConcurrency: number;
}

/** What the generator measured. */
export interface GeneratorResult {
  rooms: number;
  streams: number;
  sent: number;
  received: number;
  lost: number;
  reordered: number;
  duplicates: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Frames whose latency was measured (after warm-up). */
  measured: number;
  generatorCpuPct: number;
  generatorLoopDelayP99Ms: number;
  /** Sends that were due more than one interval earlier (the generator fell behind). */
  lateSends: number;
  setupMs: number;
  /** Streams that ended with an error or a non-zero grpc-status, and the first few reasons. */
  streamErrors: number;
  errors: string[];
}

const FLOOR_PATH = "/bench.Floor/Relay";
/** Every room-scoped call names its room, so a router in front (bench/nodes.ts) keeps a room's calls on one node. */
const ROOM_HEADER = "handshake-room";
/** Phase groups spread over one interval, so participants do not all send at the same instant. */
const PHASES = 20;
/** Longest wait at the end for frames still in flight. */
const DRAIN_MS = 2000;

interface Participant {
  index: number;
  roomId: string;
  /** HTTP/2 targets: the participant's connection and AudioStream (or floor stream). */
  session: http2.ClientHttp2Session | undefined;
  stream: http2.ClientHttp2Stream | undefined;
  /** The WebSocket floor: the participant's socket. */
  socket: WebSocket | undefined;
  token: string;
  peer: Participant | undefined;
  sent: number;
  received: number;
  highestSeq: number;
  reordered: number;
  duplicates: number;
  ended: boolean;
}

function emit(line: object): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** Pause between setup and the first frame, for the bench to read memory of connected, idle rooms. */
const CONNECTED_PAUSE_MS = 1000;

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? "{}") as GeneratorConfig;
  const errors: string[] = [];
  let streamErrors = 0;
  const noteError = (what: string) => {
    streamErrors++;
    if (errors.length < 5) errors.push(what);
  };
  const authority = `http://127.0.0.1:${config.port}`;
  const setupStarted = performance.now();

  const participants: Participant[] = [];
  for (let r = 0; r < config.rooms; r++) {
    const roomId = `${config.runId}-${r}`;
    const a = newParticipant(participants.length, roomId);
    participants.push(a);
    const b = newParticipant(participants.length, roomId);
    participants.push(b);
    a.peer = b;
    b.peer = a;
  }
  function newParticipant(index: number, roomId: string): Participant {
    return { index, roomId, session: undefined, stream: undefined, socket: undefined, token: "", peer: undefined, sent: 0, received: 0, highestSeq: -1, reordered: 0, duplicates: 0, ended: false };
  }

  /** Set once the generator itself starts closing connections. */
  let closing = false;
  const histogram = new LatencyHistogram();
  let measuring = false;
  const frame: ParsedFrame = { seq: 0, capturedAtUs: 0, pcmLength: 0 };

  const onFrame = (p: Participant, buf: Uint8Array, start: number, end: number) => {
    if (!parseFrame(buf, start, end, frame)) return;
    p.received++;
    if (frame.seq <= p.highestSeq) {
      if (frame.seq === p.highestSeq) p.duplicates++;
      else p.reordered++;
    } else p.highestSeq = frame.seq;
    if (measuring) histogram.record(nowUs() - frame.capturedAtUs);
  };

  await inBatches(participants, config.setupConcurrency, async (p) => {
    if (config.target === "ws-floor") {
      p.socket = await connectWebSocket(`ws://127.0.0.1:${config.port}/${encodeURIComponent(p.roomId)}`);
      const socket = p.socket;
      // Each message is one whole gRPC message, as the generator sends them.
      socket.on("message", (data: Buffer) => onFrame(p, data, 5, data.length));
      socket.on("error", (err) => noteError(`socket error: ${err.message}`));
      socket.on("close", (code: number) => {
        p.ended = true;
        // Closed by the relay before the generator closed it: that participant's frames stop.
        if (!closing) noteError(`socket closed by the relay (code ${code})`);
      });
      return;
    }
    p.session = await connect(authority);
    if (config.target === "server") p.token = await joinRoom(p.session, p.roomId, p.index % 2 === 0 ? "Ada" : "Bo");
  });
  const format = grpcMessage(
    toBinary(
      AudioStreamRequestSchema,
      create(AudioStreamRequestSchema, {
        message: { case: "format", value: { encoding: AudioEncoding.PCM16LE, sampleRateHz: 16000, channels: 1 } },
      }),
    ),
  );
  for (const p of participants) {
    if (!p.session) continue;
    const headers: http2.OutgoingHttpHeaders =
      config.target === "server"
        ? { ":method": "POST", ":path": AUDIO_STREAM_PATH, "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${p.token}`, [ROOM_HEADER]: p.roomId }
        : { ":method": "POST", ":path": FLOOR_PATH, "content-type": "application/grpc", te: "trailers", "x-room": p.roomId };
    const stream = p.session.request(headers);
    p.stream = stream;
    const reader = new GrpcMessageReader((buf, start, end) => onFrame(p, buf, start, end));
    stream.on("data", (chunk: Buffer) => reader.push(chunk));
    stream.on("trailers", (trailers) => {
      const status = trailers["grpc-status"];
      if (status !== undefined && status !== "0") noteError(`grpc-status ${String(status)}: ${decodeURIComponent(String(trailers["grpc-message"] ?? ""))}`);
    });
    stream.on("response", (h) => {
      const status = h["grpc-status"];
      if (status !== undefined && status !== "0") noteError(`grpc-status ${String(status)}: ${decodeURIComponent(String(h["grpc-message"] ?? ""))}`);
    });
    stream.on("error", (err) => noteError(`stream error: ${err.message}`));
    stream.on("close", () => {
      p.ended = true;
    });
    stream.write(format);
  }
  // The server registers a participant's sink once it has read their format header; a short
  // pause lets every stream get there before frames start (frames sent earlier would be lost).
  await new Promise((resolve) => setTimeout(resolve, 300 + config.rooms));
  const setupMs = Math.round(performance.now() - setupStarted);
  emit({ type: "ready", setupMs });
  // Every room is connected and idle: the bench reads the service's memory now, before any audio.
  await new Promise((resolve) => setTimeout(resolve, CONNECTED_PAUSE_MS));

  const pcm = Buffer.alloc(config.frameBytes);
  for (let i = 0; i < pcm.length; i += 2) pcm.writeInt16LE(Math.round(Math.sin(i / 20) * 3000), i);
  const interval = config.frameIntervalMs;
  const start = performance.now() + interval;
  const groups: Participant[][] = Array.from({ length: PHASES }, () => []);
  participants.forEach((p, i) => groups[i % PHASES]!.push(p));
  let lateSends = 0;
  let timers = 0;

  // Each phase group sends one frame per participant every interval, at its own offset; ticks
  // are counted as integers so every participant sends exactly seconds × 1000 / interval frames.
  const ticks = Math.round((config.seconds * 1000) / interval);
  const finished = new Promise<void>((resolve) => {
    groups.forEach((group, g) => {
      const offset = start + (g * interval) / PHASES;
      let tick = 0;
      timers++;
      const fire = () => {
        const now = performance.now();
        while (tick < ticks && offset + tick * interval <= now) {
          if (now - (offset + tick * interval) > interval) lateSends += group.length;
          for (const p of group) {
            if (p.ended) continue;
            if (p.stream) p.stream.write(encodeFrameMessage(p.sent, pcm, nowUs()));
            else if (p.socket) p.socket.send(encodeFrameMessage(p.sent, pcm, nowUs()));
            else continue;
            p.sent++;
          }
          tick++;
        }
        if (tick >= ticks) {
          if (--timers === 0) resolve();
          return;
        }
        setTimeout(fire, Math.max(0, offset + tick * interval - performance.now()));
      };
      setTimeout(fire, Math.max(0, offset - performance.now()));
    });
  });

  const loop = monitorEventLoopDelay({ resolution: 5 });
  let cpuAtStart = process.cpuUsage();
  let measureStartedAt = performance.now();
  const warmup = setTimeout(() => {
    measuring = true;
    cpuAtStart = process.cpuUsage();
    measureStartedAt = performance.now();
    loop.enable();
    emit({ type: "measure-start" });
  }, Math.max(0, start - performance.now() + config.warmupSeconds * 1000));

  await finished;
  clearTimeout(warmup);
  const cpu = process.cpuUsage(cpuAtStart);
  const measuredMs = performance.now() - measureStartedAt;
  loop.disable();
  measuring = false;
  emit({ type: "measure-end" });

  // Wait until every peer has what was sent to it, or the drain time is up.
  const drainUntil = performance.now() + DRAIN_MS;
  while (performance.now() < drainUntil && participants.some((p) => !p.ended && p.peer && p.received < p.peer.sent)) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  let sent = 0;
  let received = 0;
  let reordered = 0;
  let duplicates = 0;
  for (const p of participants) {
    sent += p.sent;
    received += p.received;
    reordered += p.reordered;
    duplicates += p.duplicates;
  }
  const result: GeneratorResult = {
    rooms: config.rooms,
    streams: participants.length,
    sent,
    received,
    lost: Math.max(0, sent - (received - duplicates)),
    reordered,
    duplicates,
    ...histogram.summary(),
    measured: histogram.count,
    generatorCpuPct: round1(((cpu.user + cpu.system) / 1000 / Math.max(1, measuredMs)) * 100),
    generatorLoopDelayP99Ms: round2(loop.count > 0 ? loop.percentile(99) / 1e6 : 0),
    lateSends,
    setupMs,
    streamErrors,
    errors,
  };
  closing = true;
  for (const p of participants) p.stream?.end();
  if (config.target === "server") {
    await inBatches(participants, config.setupConcurrency, (p) =>
      p.token && p.session ? leaveRoom(p.session, p.roomId, p.token).catch(() => undefined) : Promise.resolve(),
    );
  }
  await Promise.all(participants.map((p) => closeParticipant(p)));
  emit({ type: "result", ...result });
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/** Runs `fn` over `items`, at most `limit` at a time. */
async function inBatches<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  });
  await Promise.all(workers);
}

/** Closes a participant's connection; forced after a second. */
function closeParticipant(p: Participant): Promise<void> {
  return new Promise<void>((resolve) => {
    const { session, socket } = p;
    const t = setTimeout(() => {
      session?.destroy();
      socket?.terminate();
      resolve();
    }, 1000);
    const done = () => {
      clearTimeout(t);
      resolve();
    };
    if (session) session.close(done);
    else if (socket && socket.readyState !== WebSocket.CLOSED) {
      socket.once("close", done);
      socket.close();
    } else done();
  });
}

/** Opens a WebSocket (no compression, as the floor runs); resolves once it is open. */
function connectWebSocket(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false });
    socket.once("open", () => {
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}

function connect(authority: string): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(authority);
    session.once("connect", () => {
      session.off("error", reject);
      session.on("error", () => {});
      resolve(session);
    });
    session.once("error", reject);
  });
}

/** JoinRoom as a unary gRPC call; returns the session token. */
async function joinRoom(session: http2.ClientHttp2Session, roomId: string, name: string): Promise<string> {
  const request = create(JoinRoomRequestSchema, { roomId, profile: { displayName: name, role: PartyRole.CLIENT, currency: "GBP" } });
  const body = await unary(session, "JoinRoom", toBinary(JoinRoomRequestSchema, request), { [ROOM_HEADER]: roomId });
  return fromBinary(JoinRoomResponseSchema, body).sessionToken;
}

/** LeaveRoom, as a person's app does when the call ends (so rooms do not linger into later phases). */
async function leaveRoom(session: http2.ClientHttp2Session, roomId: string, token: string): Promise<void> {
  await unary(session, "LeaveRoom", toBinary(LeaveRoomRequestSchema, create(LeaveRoomRequestSchema, { roomId })), { authorization: `Bearer ${token}`, [ROOM_HEADER]: roomId });
}

/** One unary RoomService call in gRPC framing; resolves with the response message's bytes. */
async function unary(session: http2.ClientHttp2Session, method: string, body: Uint8Array, headers: http2.OutgoingHttpHeaders): Promise<Buffer> {
  const stream = session.request({ ":method": "POST", ":path": `/handshake.v1.RoomService/${method}`, "content-type": "application/grpc", te: "trailers", ...headers });
  const chunks: Buffer[] = [];
  let status: string | undefined;
  let message = "";
  stream.on("response", (h) => {
    if (h["grpc-status"] !== undefined) {
      status = String(h["grpc-status"]);
      message = String(h["grpc-message"] ?? "");
    }
  });
  stream.on("trailers", (t) => {
    status = String(t["grpc-status"]);
    message = String(t["grpc-message"] ?? "");
  });
  stream.on("data", (c: Buffer) => chunks.push(c));
  stream.end(grpcMessage(body));
  await new Promise<void>((resolve, reject) => {
    stream.on("close", resolve);
    stream.on("error", reject);
  });
  if (status !== "0") throw new Error(`${method} failed: grpc-status ${status ?? "none"} ${decodeURIComponent(message)}`);
  const all = Buffer.concat(chunks);
  return all.subarray(5, 5 + all.readUInt32BE(1));
}

main().catch((err: unknown) => {
  process.stderr.write(`generator failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
