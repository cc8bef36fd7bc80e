import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { bearer, startTestApp, testProfile, type TestApp } from "../support/app.js";
import { parseMetrics, sampleValue, scrape, type Sample } from "../support/metrics-text.js";
import { recordPanel } from "../support/panel.js";

/**
 * GET /metrics of a real server after calls over both ways in: connect-node (Connect over
 * HTTP/1.1, and unary gRPC) and the node:http2 fast path (native gRPC PanelStream).
 */

const JOIN = "handshake.v1.RoomService/JoinRoom";
const GET_ROOM = "handshake.v1.RoomService/GetRoom";
const PANEL = "handshake.v1.RoomService/PanelStream";
const DURATION_COUNT = "handshake_rpc_duration_seconds_count";
const STREAMS = "handshake_rpc_streams_open";

const connectTransport = (t: TestApp, token?: string): Transport => createConnectTransport({ baseUrl: t.baseUrl, httpVersion: "1.1", interceptors: token ? [bearer(token)] : [] });
const grpcTransport = (t: TestApp, token?: string): Transport => createGrpcTransport({ baseUrl: t.baseUrl, interceptors: token ? [bearer(token)] : [] });

/** Calls of `method` on `path` whatever their code: the sum of their counts. */
function callsOf(samples: Sample[], method: string, path: string): number {
  return samples.filter((s) => s.name === DURATION_COUNT && s.labels.method === method && s.labels.path === path).reduce((n, s) => n + s.value, 0);
}

describe("GET /metrics", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t.close();
  });

  it("counts and times calls by method, path and code, counts streams while they are open, and rooms live; never an id in a label", async () => {
    const before = await scrape(t.baseUrl);
    const anonymous = createClient(RoomService, connectTransport(t));
    const joined = await anonymous.joinRoom({ roomId: "metrics-room", profile: testProfile({ displayName: "Ada" }) });
    const refused = await createClient(RoomService, grpcTransport(t))
      .getRoom({ roomId: "metrics-room" })
      .then(() => "OK", (err: unknown) => ConnectError.from(err).code);
    expect(refused).toBe(Code.Unauthenticated);

    const fast = recordPanel(createClient(RoomService, grpcTransport(t, joined.sessionToken)), "metrics-room");
    const viaConnect = recordPanel(createClient(RoomService, connectTransport(t, joined.sessionToken)), "metrics-room");
    await Promise.all([fast.waitFor(() => true, "the fast path's first event"), viaConnect.waitFor(() => true, "connect's first event")]);

    const open = await scrape(t.baseUrl);
    const okJoins = { method: JOIN, path: "connect", code: "OK" };
    expect(sampleValue(open, DURATION_COUNT, okJoins) - sampleValue(before, DURATION_COUNT, okJoins)).toBe(1);
    // A unary gRPC call is served by connect-node: only the room streams take the fast path.
    const refusedGets = { method: GET_ROOM, path: "connect", code: "Unauthenticated" };
    expect(sampleValue(open, DURATION_COUNT, refusedGets) - sampleValue(before, DURATION_COUNT, refusedGets)).toBe(1);
    expect(sampleValue(open, STREAMS, { method: PANEL, path: "grpc-h2" })).toBe(1);
    expect(sampleValue(open, STREAMS, { method: PANEL, path: "connect" })).toBe(1);
    expect(sampleValue(open, "handshake_rooms_live")).toBe(1);
    // The histogram's buckets are cumulative and end in +Inf, which equals the count.
    expect(sampleValue(open, "handshake_rpc_duration_seconds_bucket", { ...okJoins, le: "+Inf" })).toBe(sampleValue(open, DURATION_COUNT, okJoins));

    await Promise.all([fast.stop(), viaConnect.stop()]);
    // The server sees each cancellation a moment after the client: await the scrape that shows it.
    await expect
      .poll(async () => {
        const after = await scrape(t.baseUrl);
        return {
          open: [sampleValue(after, STREAMS, { method: PANEL, path: "grpc-h2" }), sampleValue(after, STREAMS, { method: PANEL, path: "connect" })],
          ended: [callsOf(after, PANEL, "grpc-h2") - callsOf(before, PANEL, "grpc-h2"), callsOf(after, PANEL, "connect") - callsOf(before, PANEL, "connect")],
        };
      })
      .toEqual({ open: [0, 0], ended: [1, 1] });

    const after = await scrape(t.baseUrl);
    const ours = after.filter((s) => s.name.startsWith("handshake_"));
    for (const sample of ours) {
      for (const value of Object.values(sample.labels)) {
        for (const id of [joined.userId, "metrics-room", joined.sessionToken]) expect(value).not.toContain(id);
      }
    }
    // Node's own metrics come with them.
    expect(after.some((s) => s.name === "process_cpu_user_seconds_total")).toBe(true);
  });

  it("answers in the text exposition format, and HEAD with no body", async () => {
    const res = await fetch(`${t.baseUrl}/metrics`);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toContain("# TYPE handshake_rpc_duration_seconds histogram");
    expect(parseMetrics(text).length).toBeGreaterThan(0);
    const head = await fetch(`${t.baseUrl}/metrics`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
  });
});

describe("METRICS=off", () => {
  it("serves no /metrics, and calls still work", async () => {
    const t = await startTestApp({ METRICS: "off" });
    try {
      const joined = await createClient(RoomService, connectTransport(t)).joinRoom({ roomId: "quiet-room", profile: testProfile() });
      expect(joined.userId).toMatch(/^usr_/);
      expect((await fetch(`${t.baseUrl}/metrics`)).status).toBe(404);
    } finally {
      await t.close();
    }
  });
});
