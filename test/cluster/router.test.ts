import net from "node:net";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { bearer, startTestApp, testProfile, type TestApp } from "../support/app.js";
import { grpcJsRoomClient, type GrpcJsPanelAnswer } from "../support/grpc-js.js";
import { ROOM_HEADER, roomHeader } from "../support/people.js";
import { startRouter, type Router } from "../support/router.js";

/** The response header in which the router names the node that served a call. */
const NODE_HEADER = "handshake-node";

/** Reads a grpc-js PanelStream until `count` events arrived; resolves with their seqs and cases. */
function firstEvents(stream: grpc.ClientReadableStream<GrpcJsPanelAnswer>, count: number): Promise<{ seqs: number[]; cases: string[] }> {
  const seqs: number[] = [];
  const cases: string[] = [];
  return new Promise((resolve, reject) => {
    stream.on("data", (answer: GrpcJsPanelAnswer) => {
      seqs.push(Number(answer.event.seq));
      cases.push(answer.event.event);
      if (seqs.length === count) resolve({ seqs: [...seqs], cases: [...cases] });
    });
    stream.on("error", reject);
  });
}

describe("one node behind the router", () => {
  let node: TestApp;
  let router: Router;
  beforeAll(async () => {
    node = await startTestApp({ NODE_ID: "solo" });
    router = await startRouter({ nodes: [{ id: "solo", port: node.port }] });
  });
  afterAll(async () => {
    await router?.stop();
    await node?.close();
  });

  it("carries grpc-js calls over h2c: unary, server streaming, and a status in trailers", async () => {
    const a = grpcJsRoomClient(`127.0.0.1:${router.port}`);
    const b = grpcJsRoomClient(`127.0.0.1:${router.port}`);
    try {
      const room = { [ROOM_HEADER]: "router-grpcjs" };
      const joinedA = await a.joinRoom("router-grpcjs", "Ada", room);
      const panel = a.panelStream("router-grpcjs", { ...room, authorization: `Bearer ${joinedA.session_token}` });
      // One event is Ada's join; the second arrives while the stream is open: Bo's join, relayed live.
      const events = firstEvents(panel, 2);
      await b.joinRoom("router-grpcjs", "Bo", room);
      expect(await events).toEqual({ seqs: [1, 2], cases: ["room_status", "room_status"] });
      panel.cancel();

      // A refused call's status and message come back in trailers, unchanged by the router.
      const refused = await a.getRoomStatus("router-grpcjs", { ...room, authorization: "Bearer not-a-token" });
      expect(refused.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(refused.details).not.toBe("");
    } finally {
      a.close();
      b.close();
    }
  });

  it("carries Connect over HTTP/1.1, as a browser calls: unary and a server stream", async () => {
    const room = roomHeader("router-connect");
    const anonymous = createClient(RoomService, createConnectTransport({ baseUrl: router.url, interceptors: [room] }));
    let servedBy: string | null = null;
    const joined = await anonymous.joinRoom(
      { roomId: "router-connect", profile: testProfile({ displayName: "Web" }) },
      { onHeader: (headers) => (servedBy = headers.get(NODE_HEADER)) },
    );
    expect(servedBy).toBe("solo");
    const authed = createClient(RoomService, createConnectTransport({ baseUrl: router.url, interceptors: [room, bearer(joined.sessionToken)] }));
    const controller = new AbortController();
    const seqs: bigint[] = [];
    const reading = (async () => {
      for await (const answer of authed.panelStream({ roomId: "router-connect", afterSeq: 0n }, { signal: controller.signal })) {
        if (answer.event) seqs.push(answer.event.seq);
        if (seqs.length === 1) {
          // A second event while the stream is open proves the router does not hold the response back.
          await anonymous.joinRoom({ roomId: "router-connect", profile: testProfile({ displayName: "Bo" }) });
        }
        if (seqs.length === 2) {
          // Events already on the wire may still be yielded after an abort: stop reading here.
          controller.abort();
          break;
        }
      }
    })().catch((err: unknown) => {
      if (!controller.signal.aborted) throw err;
    });
    await reading;
    expect(seqs).toEqual([1n, 2n]);
  });
});

describe("two nodes behind the router", () => {
  let nodes: TestApp[] = [];
  let router: Router | undefined;
  afterEach(async () => {
    await router?.stop();
    await Promise.all(nodes.map((n) => n.close()));
    nodes = [];
    router = undefined;
  });

  /** JoinRoom through the router with the room header; resolves with the node that answered. */
  async function joinVia(url: string, roomId: string, name: string): Promise<string> {
    const client = createClient(RoomService, createConnectTransport({ baseUrl: url, interceptors: [roomHeader(roomId)] }));
    let servedBy = "";
    await client.joinRoom({ roomId, profile: testProfile({ displayName: name }) }, { onHeader: (h) => (servedBy = h.get(NODE_HEADER) ?? "") });
    return servedBy;
  }

  it("keeps every call of a room on one node, spreads rooms over nodes, and moves a room when its node goes", async () => {
    nodes = [await startTestApp({ NODE_ID: "n1" }), await startTestApp({ NODE_ID: "n2" })];
    router = await startRouter({ nodes: [{ id: "n1", port: nodes[0]!.port }, { id: "n2", port: nodes[1]!.port }] });
    const rooms = Array.from({ length: 8 }, (_, i) => `sticky-${i}`);
    const placed = new Map<string, string>();
    for (const roomId of rooms) placed.set(roomId, await joinVia(router.url, roomId, "Ada"));
    // The second member of each room reaches the node that holds the first: each room has two people.
    for (const roomId of rooms) expect(await joinVia(router.url, roomId, "Bo")).toBe(placed.get(roomId));
    expect(new Set(placed.values())).toEqual(new Set(["n1", "n2"]));
    expect(await router.runtime("show table nodes")).toContain("key=sticky-0");

    // The node of sticky-0 stops: the room's next call goes to the other node (redispatch), and stays there.
    const lost = placed.get("sticky-0")!;
    const survivor = lost === "n1" ? "n2" : "n1";
    const lostIndex = lost === "n1" ? 0 : 1;
    const lostPort = nodes[lostIndex]!.port;
    await nodes[lostIndex]!.close();
    expect(await joinVia(router.url, "sticky-0", "Cy")).toBe(survivor);
    expect(await joinVia(router.url, "sticky-0", "Di")).toBe(survivor);
    expect(await router.runtime("show table nodes")).toMatch(new RegExp(`key=sticky-0 .*server_key=${survivor}`));

    // The lost node comes back on its address: the room stays where it moved to (its new home holds it now).
    nodes[lostIndex] = await startTestApp({ NODE_ID: lost, PORT: String(lostPort) });
    await router.waitForNodes([lost, survivor]);
    const again = createClient(RoomService, createConnectTransport({ baseUrl: router.url, interceptors: [roomHeader("sticky-0")] }));
    // No token, so the node refuses the call; the router's header on the refusal says who refused it.
    const refusal = await again.getRoom({ roomId: "sticky-0" }).then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
    expect(refusal?.code).toBe(Code.Unauthenticated);
    expect(refusal?.metadata.get(NODE_HEADER)).toBe(survivor);
  });

  it("pins a room whose code the node chose to that node, from the code in JoinRoom's answer", async () => {
    nodes = [await startTestApp({ NODE_ID: "n1" }), await startTestApp({ NODE_ID: "n2" })];
    router = await startRouter({ nodes: [{ id: "n1", port: nodes[0]!.port }, { id: "n2", port: nodes[1]!.port }] });
    const anonymous = createClient(RoomService, createConnectTransport({ baseUrl: router.url }));
    // Several new rooms, so some codes' hash points at the other node than the one that made them.
    for (let i = 0; i < 6; i++) {
      let madeBy = "";
      const made = await anonymous.joinRoom({ roomId: "", profile: testProfile({ displayName: "Ada" }) }, { onHeader: (h) => (madeBy = h.get(NODE_HEADER) ?? "") });
      const code = made.room!.roomId;
      expect(code).not.toBe("");
      expect(await joinVia(router.url, code, "Bo")).toBe(madeBy);
    }
  });

  it("takes a node list on reload without dropping an open stream", async () => {
    nodes = [await startTestApp({ NODE_ID: "n1" })];
    router = await startRouter({ nodes: [{ id: "n1", port: nodes[0]!.port }] });
    const client = grpcJsRoomClient(`127.0.0.1:${router.port}`);
    try {
      const room = { [ROOM_HEADER]: "reload-room" };
      const joined = await client.joinRoom("reload-room", "Ada", room);
      const panel = client.panelStream("reload-room", { ...room, authorization: `Bearer ${joined.session_token}` });
      const events = firstEvents(panel, 2);
      nodes.push(await startTestApp({ NODE_ID: "n2" }));
      await router.reload([{ id: "n1", port: nodes[0]!.port }, { id: "n2", port: nodes[1]!.port }]);
      expect((await router.upNodes()).sort()).toEqual(["n1", "n2"]);
      // The stream opened before the reload still delivers, through the old worker: Bo joins at n1
      // directly (the new table starts empty and the hash may send the room elsewhere).
      const direct = createClient(RoomService, createConnectTransport({ baseUrl: nodes[0]!.baseUrl }));
      await direct.joinRoom({ roomId: "reload-room", profile: testProfile({ displayName: "Bo" }) });
      expect(await events).toEqual({ seqs: [1, 2], cases: ["room_status", "room_status"] });
      panel.cancel();
    } finally {
      client.close();
    }
  });
});

it("limits connections per client address at the router, where the client's address is known", async () => {
  const node = await startTestApp({ NODE_ID: "limited" });
  const router = await startRouter({ nodes: [{ id: "limited", port: node.port }], maxConnectionsPerAddress: 2 });
  const sockets: net.Socket[] = [];
  try {
    /** A TCP connection to the router; resolves once it is open, or once the router ended it. */
    const open = async () => {
      const socket = net.connect(router.port, "127.0.0.1");
      socket.on("error", () => {});
      sockets.push(socket);
      await new Promise((resolve) => {
        socket.once("connect", resolve);
        socket.once("close", resolve);
      });
      return socket;
    };
    const kept = [await open(), await open()];
    const third = await open();
    // The router resets the connection over the limit at once, before any request.
    if (!third.destroyed) await new Promise((resolve) => third.once("close", resolve));
    expect(third.destroyed).toBe(true);
    expect(kept.map((s) => s.destroyed)).toEqual([false, false]);
  } finally {
    for (const socket of sockets) socket.destroy();
    await router.stop();
    await node.close();
  }
});
