import { setTimeout as delay } from "node:timers/promises";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTelemetry, type Telemetry } from "../../src/compose/telemetry.js";
import { AudioEncoding } from "../../gen/handshake/v1/audio_pb.js";
import { bearerHeaders, startTestApp, type TestApp } from "../support/app.js";
import { connectRaw, rawAudioCall } from "../support/raw-grpc.js";
import { joinAs } from "../support/security.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { paidDeal } from "../support/deal-run.js";
import { sha256Hex } from "../support/hash.js";
import { recordingLogger, repeatedKeys, type LogLine } from "../support/log-lines.js";

const SIGN = "handshake.v1.RoomService/SignContract";
const SEND_AUDIO = "handshake.v1.RoomService/SendAudio";
const PANEL = "handshake.v1.RoomService/PanelStream";
const AUDIO_STREAM = "handshake.v1.RoomService/AudioStream";

/** Every attribute value of a span and of its events, as text. */
function attributeTexts(span: ReadableSpan): string[] {
  const values = [...Object.values(span.attributes), ...span.events.flatMap((e) => Object.values(e.attributes ?? {}))];
  return values.map((v) => String(v));
}

describe("one deal's trace through the real server (in-memory span exporter)", () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;
  let t: TestApp;
  let lines: LogLine[];
  let spans: ReadableSpan[];
  let secrets: string[];
  let contractId: string;

  beforeAll(async () => {
    telemetry = startTelemetry({ env: {}, exporter })!;
    const recording = recordingLogger("debug");
    lines = recording.lines;
    t = await startTestApp({ NEGOTIATION_ROUND_TIMEOUT_MS: "20000", NEGOTIATION_TOTAL_TIMEOUT_MS: "60000" }, undefined, recording.log);
    const { provider, client, contract } = await paidDeal(t, "trace-room");
    contractId = contract.id;
    secrets = [provider.sessionToken, provider.userToken, client.sessionToken, client.userToken, "Sam", "Alex", "boiler", "hundred", "Handshake.", contract.text];
    await Promise.all([provider.panel.stop(), client.panel.stop()]);
    // The deal's root span ends once its payments ran, just after the payment event, and the panels'
    // spans when the server has seen them cancelled: wait for both, bounded.
    for (let i = 0; i < 200; i++) {
      await telemetry.flush();
      const names = exporter.getFinishedSpans().map((s) => s.name);
      if (names.includes("deal") && names.filter((n) => n === PANEL).length === 2) break;
      await delay(25);
    }
    // A copy: the exporter keeps adding to its own array as later tests run.
    spans = [...exporter.getFinishedSpans()];
  });
  afterAll(async () => {
    await t?.close();
    await telemetry?.shutdown();
  });

  const named = (name: string) => spans.filter((s) => s.name === name);
  const one = (name: string) => {
    const found = named(name);
    expect(found, name).toHaveLength(1);
    return found[0]!;
  };

  it("has a root span at the trigger with negotiation, drafting, both signatures and the execution as its children, and the rail call under the execution", () => {
    const deal = one("deal");
    expect(deal.parentSpanContext).toBeUndefined();
    expect(deal.attributes["handshake.deal.outcome"]).toBe("executed");
    const dealId = deal.spanContext().spanId;
    const traceId = deal.spanContext().traceId;
    const negotiation = one("negotiation");
    expect(negotiation.attributes["handshake.negotiation.outcome"]).toBe("agreed");
    expect(negotiation.events.filter((e) => e.name === "round").length).toBeGreaterThanOrEqual(1);
    const signatures = named("contract.signature");
    expect(signatures).toHaveLength(2);
    const execution = one("payment.execution");
    for (const child of [negotiation, one("contract.draft"), ...signatures, execution]) {
      expect(child.spanContext().traceId, child.name).toBe(traceId);
      expect(child.parentSpanContext?.spanId, child.name).toBe(dealId);
    }
    const pays = named("payment.pay");
    expect(pays.length).toBeGreaterThanOrEqual(1);
    for (const pay of pays) {
      expect(pay.parentSpanContext?.spanId).toBe(execution.spanContext().spanId);
      expect(pay.attributes).toMatchObject({ "handshake.rail": "ledger", "handshake.payment.action": "pay", "handshake.payment.outcome": "succeeded" });
    }
  });

  it("links the trigger to the SendAudio call that carried the words, and each signature to its SignContract call", () => {
    const rpcSpans = (method: string) => spans.filter((s) => s.name === method);
    const sendAudioIds = new Set(rpcSpans(SEND_AUDIO).map((s) => s.spanContext().spanId));
    const signIds = new Set(rpcSpans(SIGN).map((s) => s.spanContext().spanId));
    expect(signIds.size).toBe(2);
    const dealLinks = one("deal").links.map((l) => l.context.spanId);
    expect(dealLinks).toHaveLength(1);
    expect(sendAudioIds.has(dealLinks[0]!)).toBe(true);
    for (const signature of named("contract.signature")) {
      expect(signature.links).toHaveLength(1);
      expect(signIds.has(signature.links[0]!.context.spanId)).toBe(true);
    }
    for (const rpc of rpcSpans(SIGN)) expect(rpc.attributes).toMatchObject({ "rpc.service": "handshake.v1.RoomService", "rpc.method": "SignContract", "rpc.grpc.status_code": 0 });
  });

  it("has a server span for each PanelStream the native gRPC fast path served, ended with the call's status, and its log line names that trace", () => {
    const panels = named(PANEL);
    expect(panels).toHaveLength(2);
    for (const panel of panels) expect(panel.attributes).toMatchObject({ "handshake.path": "grpc-h2", "rpc.system": "grpc", "rpc.grpc.status_code": 1 });
    const panelLines = lines.filter((l) => l.fields.msg === "rpc" && l.fields.method === PANEL);
    expect(panelLines.map((l) => l.fields.traceId).sort()).toEqual(panels.map((p) => p.spanContext().traceId).sort());
  });

  it("puts no transcript text, token, name or contract text in any span name or attribute", () => {
    expect(spans.length).toBeGreaterThan(10);
    for (const span of spans) {
      for (const text of [span.name, ...attributeTexts(span)]) {
        for (const secret of secrets) expect(text.includes(secret), `${span.name}: ${text}`).toBe(false);
      }
    }
  });

  it("writes the trace id of the call or deal into its log lines, logs each money movement once, and repeats no key in any line", () => {
    const signLines = lines.filter((l) => l.fields.msg === "rpc" && l.fields.method === SIGN);
    const signTraces = new Set(spans.filter((s) => s.name === SIGN).map((s) => s.spanContext().traceId));
    expect(signLines).toHaveLength(2);
    for (const line of signLines) expect(signTraces.has(line.fields.traceId as string)).toBe(true);

    const movements = lines.filter((l) => l.fields.msg === "money movement");
    expect(movements).toHaveLength(named("payment.pay").length);
    for (const movement of movements) {
      expect(movement.fields).toMatchObject({ contractId, rail: "ledger", action: "pay", outcome: "succeeded", currency: "GBP", traceId: one("deal").spanContext().traceId });
      expect(movement.fields.lineItemId).toEqual(expect.any(String));
      expect(movement.fields.idempotencyKey).toEqual(expect.any(String));
      expect(BigInt(movement.fields.amountMinor as string)).toBeGreaterThan(0n);
    }
    expect(lines.length).toBeGreaterThan(10);
    for (const line of lines) expect(repeatedKeys(line.raw), line.raw).toEqual([]);
  });
  // Last: it adds spans and log lines the tests above read.
  it("links a deal triggered over a native AudioStream (transcripts from the device, on the fast path) to the AudioStream call that carried the words", async () => {
    const roomId = "trace-native";
    const provider = await joinAs(t, roomId, { displayName: "Sam the plumber", role: PartyRole.PROVIDER, trade: "plumber", rates: [{ description: "boiler repair", amountMinor: 12_000n }] });
    const client = await joinAs(t, roomId, { displayName: "Alex", role: PartyRole.CLIENT, maxAutoApproveMinor: 20_000n });
    const session = connectRaw(t.port);
    const open = (token: string) => {
      const call = rawAudioCall(session, { ...bearerHeaders(token), "handshake-room": roomId });
      call.send({ message: { case: "format", value: { encoding: AudioEncoding.PCM16LE, sampleRateHz: 16000, channels: 1 } } });
      return call;
    };
    const providerAudio = open(provider.sessionToken);
    const clientAudio = open(client.sessionToken);
    providerAudio.send({ message: { case: "transcript", value: { text: "I can fix the boiler for one hundred and twenty pounds.", isFinal: true, confidence: 0.9 } } });
    await client.panel.waitFor((e) => e.event.case === "transcript" && e.event.value.text.includes("boiler"), "the offer");
    clientAudio.send({ message: { case: "transcript", value: { text: "That sounds fair. Handshake.", isFinal: true, confidence: 0.9 } } });
    const drafted = await provider.panel.waitFor((e) => e.event.case === "contract", "contract");
    if (drafted.event.case !== "contract") throw new Error("unreachable");
    const textSha256 = sha256Hex(drafted.event.value.text);
    await provider.room.signContract({ contractId: drafted.event.value.id, textSha256 });
    await client.room.signContract({ contractId: drafted.event.value.id, textSha256 });
    await client.panel.waitFor((e) => e.event.case === "payment", "payment");
    for (const call of [providerAudio, clientAudio]) call.stream.end();
    await Promise.all([providerAudio.status, clientAudio.status, provider.panel.stop(), client.panel.stop()]);
    session.close();
    const finished = async (check: (all: ReadableSpan[]) => boolean) => {
      for (let i = 0; i < 200; i++) {
        await telemetry.flush();
        if (check(exporter.getFinishedSpans())) break;
        await delay(25);
      }
      return exporter.getFinishedSpans();
    };
    const all = await finished((found) => found.filter((s) => s.name === AUDIO_STREAM).length === 2 && found.filter((s) => s.name === "deal").length === 2);
    const audioIds = new Set(all.filter((s) => s.name === AUDIO_STREAM).map((s) => s.spanContext().spanId));
    expect(audioIds.size).toBe(2);
    const nativeDeal = all.filter((s) => s.name === "deal").find((s) => s.spanContext().traceId !== one("deal").spanContext().traceId)!;
    expect(nativeDeal.links).toHaveLength(1);
    expect(audioIds.has(nativeDeal.links[0]!.context.spanId)).toBe(true);
  });
});
