import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startOtlpSink, type OtlpSink } from "../../bench/otlp-sink.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { startTelemetry, type Telemetry } from "../../src/compose/telemetry.js";
import { grpcTransport, startTestApp, testProfile, type TestApp } from "../support/app.js";

describe("tracing over OTLP/HTTP to a local receiver (bench/otlp-sink.ts)", () => {
  let sink: OtlpSink;
  let telemetry: Telemetry | undefined;
  let t: TestApp;
  beforeAll(async () => {
    sink = await startOtlpSink();
    t = await startTestApp();
  });
  afterAll(async () => {
    await telemetry?.shutdown();
    await t.close();
    await sink.close();
  });

  it("stays off without OTEL_EXPORTER_OTLP_ENDPOINT", () => {
    expect(startTelemetry({ env: {} })).toBeUndefined();
  });

  it("exports the spans of served calls to OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces when it is set", async () => {
    telemetry = startTelemetry({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: `${sink.url}/` } });
    expect(telemetry).toBeDefined();
    await createClient(RoomService, grpcTransport(t.baseUrl)).joinRoom({ roomId: "otlp-room", profile: testProfile() });
    await telemetry!.flush();
    expect(sink.requests).toBeGreaterThanOrEqual(1);
    expect(sink.spanNames).toContain("handshake.v1.RoomService/JoinRoom");
  });
});
