import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AudioFormatSchema, AudioEncoding } from "../../gen/handshake/v1/audio_pb.js";
import { ContractStatus, NegotiationStatus, PaymentStatus } from "../../gen/handshake/v1/deal_pb.js";
import { SessionStatus, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { NegotiationStyle, PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { grpcTransport, startTestApp, testProfile, type TestApp } from "../support/app.js";
import { sha256Hex } from "../support/hash.js";
import { joinPerson, type Person } from "../support/people.js";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ NEGOTIATION_ROUND_TIMEOUT_MS: "20000", NEGOTIATION_TOTAL_TIMEOUT_MS: "60000" });
});
afterAll(async () => {
  await t.close();
});

/** Joins `roomId` on the test app and opens the person's panel. */
const join = (roomId: string, profile: Parameters<typeof testProfile>[0]): Promise<Person> => joinPerson(t.baseUrl, roomId, profile);

const firstIndex = (events: PanelEvent[], match: (e: PanelEvent) => boolean) => events.findIndex(match);

async function signBoth(a: Person, b: Person): Promise<void> {
  const contractEvent = await a.panel.waitFor((e) => e.event.case === "contract", "contract");
  if (contractEvent.event.case !== "contract") throw new Error("unreachable");
  const contract = contractEvent.event.value;
  const hash = sha256Hex(contract.text);
  expect(contract.textSha256).toBe(hash);
  await a.room.signContract({ contractId: contract.id, textSha256: hash });
  await b.room.signContract({ contractId: contract.id, textSha256: hash });
}

describe("a room from join to payment on the embedded defaults", () => {
  it("talks, triggers, negotiates, drafts, signs and pays, in order, for both people", async () => {
    const provider = await join("pipeline-1", {
      displayName: "Sam the plumber",
      role: PartyRole.PROVIDER,
      trade: "plumber",
      rates: [{ description: "boiler repair", amountMinor: 12_000n }],
      style: NegotiationStyle.BALANCED,
    });
    const client = await join("pipeline-1", { displayName: "Alex", role: PartyRole.CLIENT, maxAutoApproveMinor: 20_000n });
    await provider.say("Hi Alex, I can fix your boiler today.");
    await client.say("Great, how much will it cost?");
    await provider.say("It will be one hundred and twenty pounds for the repair.");
    await client.say("That sounds fair. Handshake.");

    await signBoth(provider, client);
    const completed = (e: PanelEvent) =>
      e.event.case === "roomStatus" && e.event.value.participants.length === 2 &&
      e.event.value.participants.every((p) => p.sessionStatus === SessionStatus.COMPLETED);
    for (const person of [provider, client]) {
      await person.panel.waitFor(completed, "completed sessions");
      const events = person.panel.events;
      expect(events.map((e) => e.seq)).toEqual([...events.map((e) => e.seq)].sort((x, y) => Number(x - y)));
      const order = [
        firstIndex(events, (e) => e.event.case === "transcript" && e.event.value.text.includes("one hundred and twenty")),
        firstIndex(events, (e) => e.event.case === "trigger"),
        firstIndex(events, (e) => e.event.case === "negotiation" && e.event.value.status === NegotiationStatus.AGREED),
        firstIndex(events, (e) => e.event.case === "contract" && e.event.value.status === ContractStatus.AWAITING_SIGNATURES),
        firstIndex(events, (e) => e.event.case === "executionStep" && e.event.value.step === "signature"),
        firstIndex(events, (e) => e.event.case === "payment" && e.event.value.status === PaymentStatus.SUCCEEDED),
        firstIndex(events, completed),
      ];
      expect(order.every((i) => i >= 0)).toBe(true);
      expect([...order].sort((x, y) => x - y)).toEqual(order);
      // Agent messages reach only their own user.
      for (const e of events) if (e.visibleToUserId) expect(e.visibleToUserId).toBe(person.userId);
    }

    const agreed = (await client.panel.waitFor((e) => e.event.case === "negotiation" && e.event.value.status === NegotiationStatus.AGREED)).event;
    if (agreed.case !== "negotiation") throw new Error("unreachable");
    const terms = agreed.value.currentProposal!;
    expect(terms.providerUserId).toBe(provider.userId);
    expect(terms.clientUserId).toBe(client.userId);
    expect(terms.currency).toBe("GBP");
    expect(terms.totalMinor).toBeGreaterThan(0n);
    expect(terms.totalMinor).toBeLessThanOrEqual(20_000n);

    const providerBalances = (await provider.contracts.getBalances({})).balances;
    const clientBalances = (await client.contracts.getBalances({})).balances;
    expect(providerBalances).toEqual([expect.objectContaining({ currency: "GBP", receivedMinor: terms.totalMinor })]);
    expect(clientBalances).toEqual([expect.objectContaining({ currency: "GBP", availableMinor: -terms.totalMinor, heldMinor: 0n })]);

    const listed = await client.contracts.listContracts({});
    expect(listed.contracts).toHaveLength(1);
    expect(listed.contracts[0]?.status).toBe(ContractStatus.COMPLETED);
    expect(listed.contracts[0]?.signatures).toHaveLength(2);
    await provider.panel.stop();
    await client.panel.stop();
  });

  it("re-arms the trigger after a rejected negotiation, and the second trigger reaches a deal", async () => {
    const provider = await join("pipeline-2", {
      displayName: "Jo the painter",
      role: PartyRole.PROVIDER,
      trade: "painter",
      rates: [{ description: "painting", amountMinor: 90_000n }],
      style: NegotiationStyle.AGGRESSIVE,
    });
    const client = await join("pipeline-2", { displayName: "Kim", role: PartyRole.CLIENT, maxAutoApproveMinor: 30_000n });
    await provider.say("Painting the whole house will cost nine hundred pounds.");
    await client.say("Handshake.");
    // £900 is above Kim's £300 limit: her agent asks her, and she says no.
    const asked = await client.panel.waitFor((e) => e.event.case === "approvalRequest", "approval request");
    if (asked.event.case !== "approvalRequest") throw new Error("unreachable");
    await client.room.answerApproval({ approvalId: asked.event.value.id, approve: false });
    await client.panel.waitFor(
      (e) => e.event.case === "negotiation" && (e.event.value.status === NegotiationStatus.REJECTED || e.event.value.status === NegotiationStatus.EXPIRED),
      "rejected negotiation",
    );
    await client.panel.waitFor(
      (e) => e.event.case === "roomStatus" && e.event.value.triggerArmed && e.event.value.participants.every((p) => p.sessionStatus === SessionStatus.ACTIVE),
      "re-armed trigger",
    );
    const rejectedAt = client.panel.events.length;
    await provider.say("Fine, just the kitchen then, for two hundred and fifty pounds.");
    await client.say("Handshake.");
    await signBoth(provider, client);
    await client.panel.waitFor((e) => e.event.case === "payment" && e.event.value.status === PaymentStatus.SUCCEEDED, "payment");
    const triggers = client.panel.events.filter((e) => e.event.case === "trigger");
    expect(triggers).toHaveLength(2);
    const agreed = client.panel.events.slice(rejectedAt).find((e) => e.event.case === "negotiation" && e.event.value.status === NegotiationStatus.AGREED);
    expect(agreed).toBeDefined();
    await provider.panel.stop();
    await client.panel.stop();
  });

  it("frees rooms: 1,000 rooms created and left in sequence, then a join still works", async () => {
    const local = await startTestApp({ MAX_ROOMS: "5" });
    try {
      const anonymous = createClient(RoomService, grpcTransport(local.baseUrl));
      for (let i = 0; i < 1000; i++) {
        const joined = await anonymous.joinRoom({ roomId: `churn-${i}`, profile: testProfile() });
        await createClient(RoomService, grpcTransport(local.baseUrl, joined.sessionToken)).leaveRoom({ roomId: `churn-${i}` });
      }
      expect(local.app.deps.rooms.size).toBe(0);
      const last = await anonymous.joinRoom({ roomId: "after-churn", profile: testProfile() });
      expect(last.room?.participants).toHaveLength(1);
    } finally {
      await local.close();
    }
  });

  it("relays a participant's audio unchanged to the other participant", async () => {
    const a = await join("relay-room", { displayName: "A" });
    const b = await join("relay-room", { displayName: "B" });
    const controller = new AbortController();
    const received = (async () => {
      for await (const res of b.room.receiveAudio({ roomId: "relay-room" }, { signal: controller.signal })) {
        if (res.message.case === "peerFrame") return res.message.value;
      }
      return undefined;
    })();
    const format = create(AudioFormatSchema, { encoding: AudioEncoding.PCM16LE, sampleRateHz: 16000, channels: 1 });
    const pcm = new Uint8Array(640).map((_, i) => i % 251);
    // ReceiveAudio registers asynchronously; keep sending numbered frames until one arrives.
    let seq = 0n;
    const timer = setInterval(() => void a.room.sendAudio({ format, frames: [{ seq: seq++, pcm, capturedAtUs: 42n }] }), 20);
    const frame = await received.finally(() => clearInterval(timer));
    controller.abort();
    expect(frame?.pcm).toEqual(pcm);
    expect(frame?.capturedAtUs).toBe(42n);
    await a.panel.stop();
    await b.panel.stop();
  });
});
