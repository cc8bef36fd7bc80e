import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { bearer, startTestApp, testProfile, type TestApp } from "../support/app.js";

const run = promisify(execFile);
const BUF = path.resolve("node_modules/.bin/buf");

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t.close();
});

/** Loads the contracts at run time, as a client without generated code would. */
function loadRoomService(): grpc.ServiceClientConstructor {
  const definition = protoLoader.loadSync("handshake/v1/room_service.proto", {
    keepCase: true,
    includeDirs: [path.resolve("proto")],
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    handshake: { v1: { RoomService: grpc.ServiceClientConstructor } };
  };
  return pkg.handshake.v1.RoomService;
}

type Unary = (req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void;

describe("grpc-js client with .proto files loaded at run time", () => {
  const RoomServiceClient = loadRoomService();
  const connect = () => new RoomServiceClient(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure()) as unknown as Record<string, Unary> & grpc.Client;
  const join = (client: Record<string, Unary>, roomId: string, name: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) =>
      client.JoinRoom!(
        { room_id: roomId, profile: { display_name: name, currency: "GBP", role: "PARTY_ROLE_CLIENT" } },
        new grpc.Metadata(),
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );

  it("makes unary, server-streaming and bidi calls", async () => {
    const a = connect();
    const b = connect();
    try {
      const joinedA = await join(a, "grpcjs-room", "Ada");
      expect(joinedA.user_id).toMatch(/^usr_/);
      expect((joinedA.room as { participants: unknown[] }).participants).toHaveLength(1);
      const joinedB = await join(b, "grpcjs-room", "Bo");
      const mdA = new grpc.Metadata();
      mdA.set("authorization", `Bearer ${joinedA.session_token as string}`);
      const mdB = new grpc.Metadata();
      mdB.set("authorization", `Bearer ${joinedB.session_token as string}`);

      // Server streaming: the panel starts with the room's history, in order.
      const panel = (a as unknown as { PanelStream: (req: object, md: grpc.Metadata) => grpc.ClientReadableStream<{ event: { seq: string; event: string } }> }).PanelStream(
        { room_id: "grpcjs-room", after_seq: 0 },
        mdA,
      );
      const seqs: number[] = [];
      const cases: string[] = [];
      await new Promise<void>((resolve, reject) => {
        panel.on("data", (msg) => {
          seqs.push(Number(msg.event.seq));
          cases.push(msg.event.event);
          if (seqs.length === 2) resolve();
        });
        panel.on("error", reject);
      });
      expect(seqs).toEqual([1, 2]);
      expect(cases).toEqual(["room_status", "room_status"]);
      panel.cancel();

      // Bidi: B listens, A sends a format and a frame, B receives them unchanged.
      type Duplex = grpc.ClientDuplexStream<object, { message: string; peer_format?: object; peer_frame?: { seq: string; pcm: Buffer } }>;
      const streamB = (b as unknown as { AudioStream: (md: grpc.Metadata) => Duplex }).AudioStream(mdB);
      streamB.write({ format: { encoding: "AUDIO_ENCODING_PCM16LE", sample_rate_hz: 16000, channels: 1 } });
      const received = new Promise<{ seq: string; pcm: Buffer }>((resolve, reject) => {
        streamB.on("data", (msg) => {
          if (msg.message === "peer_frame" && msg.peer_frame) resolve(msg.peer_frame);
        });
        streamB.on("error", (err: grpc.ServiceError) => {
          if (err.code !== grpc.status.CANCELLED) reject(err);
        });
      });
      const streamA = (a as unknown as { AudioStream: (md: grpc.Metadata) => Duplex }).AudioStream(mdA);
      streamA.on("error", () => {});
      streamA.write({ format: { encoding: "AUDIO_ENCODING_PCM16LE", sample_rate_hz: 16000, channels: 1 } });
      const pcm = Buffer.alloc(640, 7);
      // B's sink may register a moment after its format message; resend until it arrives.
      let seq = 0;
      const sender = setInterval(() => streamA.write({ frame: { seq: seq++, pcm, captured_at_us: 1 } }), 20);
      const frame = await received.finally(() => clearInterval(sender));
      expect(Buffer.from(frame.pcm).equals(pcm)).toBe(true);
      streamA.end();
      streamB.cancel();
    } finally {
      a.close();
      b.close();
    }
  });

  it("refuses an AudioStream whose first message is not the format", async () => {
    const a = connect();
    try {
      const joined = await join(a, "grpcjs-bad-audio", "Ada");
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${joined.session_token as string}`);
      const stream = (a as unknown as { AudioStream: (md: grpc.Metadata) => grpc.ClientDuplexStream<object, object> }).AudioStream(md);
      const error = new Promise<grpc.ServiceError>((resolve) => stream.on("error", resolve));
      stream.on("data", () => {});
      stream.write({ frame: { seq: 0, pcm: Buffer.alloc(640) } });
      const err = await error;
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toMatch(/format header/);
    } finally {
      a.close();
    }
  });
});

describe("Connect-Web over HTTP/1.1, as a browser", () => {
  it("makes unary and server-streaming calls with the Connect protocol", async () => {
    const transport = createConnectTransport({ baseUrl: t.baseUrl });
    const room = createClient(RoomService, transport);
    const joined = await room.joinRoom({ roomId: "web-room", profile: testProfile({ displayName: "Web" }) });
    const authed = createClient(RoomService, createConnectTransport({ baseUrl: t.baseUrl, interceptors: [bearer(joined.sessionToken)] }));
    const got = await authed.getRoom({ roomId: "web-room" });
    expect(got.room?.participants.map((p) => p.displayName)).toEqual(["Web"]);
    const controller = new AbortController();
    const events = [];
    for await (const res of authed.panelStream({ roomId: "web-room", afterSeq: 0n }, { signal: controller.signal })) {
      events.push(res.event);
      if (events.length === 1) break;
    }
    expect(events[0]?.seq).toBe(1n);
    expect(events[0]?.event.case).toBe("roomStatus");
  });

  it("makes unary calls with gRPC-Web", async () => {
    const room = createClient(RoomService, createGrpcWebTransport({ baseUrl: t.baseUrl }));
    const joined = await room.joinRoom({ roomId: "grpcweb-room", profile: testProfile({ displayName: "GW" }) });
    expect(joined.room?.roomId).toBe("grpcweb-room");
  });
});

describe("buf curl", () => {
  let n = 0;
  const joinBody = () => JSON.stringify({ roomId: `curl-room-${n++}`, profile: { displayName: "Curl", currency: "GBP" } });
  const method = "handshake.v1.RoomService/JoinRoom";

  it("calls over gRPC (HTTP/2) and Connect (HTTP/1.1) with --schema proto", async () => {
    const grpcOut = await run(BUF, ["curl", "--schema", "proto", "--protocol", "grpc", "--http2-prior-knowledge", "-d", joinBody(), `${t.baseUrl}/${method}`]);
    expect(JSON.parse(grpcOut.stdout).userId).toMatch(/^usr_/);
    const connectOut = await run(BUF, ["curl", "--schema", "proto", "--protocol", "connect", "-d", joinBody(), `${t.baseUrl}/${method}`]);
    expect(JSON.parse(connectOut.stdout).room.roomId).toMatch(/^curl-room-/);
  });

  it("works through reflection alone and lists the services", async () => {
    const list = await run(BUF, ["curl", "--http2-prior-knowledge", "--list-services", t.baseUrl]);
    expect(list.stdout.split("\n")).toEqual(expect.arrayContaining(["handshake.v1.RoomService", "handshake.v1.ContractService", "grpc.health.v1.Health"]));
    const out = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", joinBody(), `${t.baseUrl}/${method}`]);
    expect(JSON.parse(out.stdout).sessionToken).toBeTruthy();
  });

  it("answers health Check with SERVING", async () => {
    const out = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", "{}", `${t.baseUrl}/grpc.health.v1.Health/Check`]);
    expect(JSON.parse(out.stdout)).toEqual({ status: "SERVING" });
  });
});

describe("Python client on Debian's python3-grpcio", () => {
  it("joins a room and reads the panel stream through generated stubs", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "handshake-py-"));
    try {
      await run("/usr/bin/python3", ["-m", "grpc_tools.protoc", "-Iproto", `--python_out=${dir}`, `--grpc_python_out=${dir}`, ...PROTO_FILES]);
      const script = path.join(dir, "client.py");
      await writeFile(script, PYTHON_CLIENT);
      const { stdout } = await run("/usr/bin/python3", [script, `127.0.0.1:${t.port}`], { env: { ...process.env, PYTHONPATH: dir } });
      const lines = stdout.trim().split("\n");
      expect(lines[0]).toMatch(/^joined usr_/);
      expect(lines[1]).toBe("event 1 room_status participants=1");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** Every contract file, as the README's snippet compiles them: a new import is never missed. */
const PROTO_FILES = readdirSync("proto/handshake/v1")
  .filter((f) => f.endsWith(".proto"))
  .map((f) => `handshake/v1/${f}`);

const PYTHON_CLIENT = `
import sys, grpc
from handshake.v1 import room_service_pb2 as rs, room_service_pb2_grpc as rsg, profile_pb2 as pf

channel = grpc.insecure_channel(sys.argv[1])
stub = rsg.RoomServiceStub(channel)
joined = stub.JoinRoom(rs.JoinRoomRequest(room_id="python-room", profile=pf.AgentProfile(display_name="Py", currency="GBP")))
print("joined", joined.user_id)
md = [("authorization", "Bearer " + joined.session_token)]
stream = stub.PanelStream(rs.PanelStreamRequest(room_id="python-room", after_seq=0), metadata=md)
for res in stream:
    print("event", res.event.seq, res.event.WhichOneof("event"), "participants=%d" % len(res.event.room_status.participants))
    break
stream.cancel()
channel.close()
`;
