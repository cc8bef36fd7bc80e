import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { ContractStatus, LineItemKind, type Contract } from "../../gen/handshake/v1/deal_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { TranscriptSource } from "../../gen/handshake/v1/transcript_pb.js";
import { PanelEventSchema } from "../../gen/handshake/v1/events_pb.js";
import { loadDialogue } from "../../clients/cli/dialogue.js";
import { ContractTextMismatchError, contractTextHash, createParticipant, dealProgress, type Participant } from "../../clients/cli/participant.js";
import { encodeWav } from "../../clients/shared/wav.js";
import { startTestApp, testProfile, type TestApp } from "../support/app.js";

const DIALOGUE = path.resolve("test/fixtures/dialogues/boiler-repair.json");

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function pair(baseUrl: string, roomId: string, notices: string[] = []): [Participant, Participant] {
  const provider = createParticipant({
    serverUrl: baseUrl,
    roomId,
    autoSign: true,
    profile: testProfile({ displayName: "Sam", role: PartyRole.PROVIDER, trade: "plumber", maxAutoApproveMinor: 0n }),
    reconnectDelayMs: { min: 20, max: 200 },
    onNotice: (m) => notices.push(`provider: ${m}`),
  });
  const client = createParticipant({
    serverUrl: baseUrl,
    roomId,
    autoSign: true,
    profile: testProfile({ displayName: "Alex", role: PartyRole.CLIENT, maxAutoApproveMinor: 25_000n }),
    reconnectDelayMs: { min: 20, max: 200 },
    onNotice: (m) => notices.push(`client: ${m}`),
  });
  cleanups.push(async () => {
    await Promise.all([provider.close(), client.close()]);
  });
  return [provider, client];
}

describe("participant library", () => {
  it("resumes the panel after a server restart from its last seq, rejoins, and still completes the deal", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "handshake-resume-"));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    let app: TestApp = await startTestApp({}, dataDir);
    cleanups.push(() => app.close());
    const notices: string[] = [];
    const [provider, client] = pair(app.baseUrl, "resume-room", notices);
    await provider.join();
    await client.join();
    const dialogue = await loadDialogue(DIALOGUE);
    // The small talk before any price, then the server goes away and comes back on the same port.
    const firstPart = dialogue.slice(0, 3);
    await Promise.all([provider.runDialogue(firstPart), client.runDialogue(firstPart)]);
    const seenBefore = provider.lastSeq;
    const userIds = [provider.userId, client.userId];
    await app.close();
    app = await startTestApp({ PORT: String(app.port) }, dataDir);

    // Both come back as the same users and see the room paired again, after what they had seen.
    for (const p of [provider, client]) {
      await p.waitUntil(() =>
        p.history.some((e) => e.seq > seenBefore && e.event.case === "roomStatus" && e.event.value.paired) ? true : undefined,
      );
    }
    expect([provider.userId, client.userId]).toEqual(userIds);
    // The first one back finds no live room and joins again; the other may then find the room
    // rebuilt with both members and resume its stream without a join.
    expect(notices.some((n) => /^(provider|client): rejoined room resume-room/.test(n))).toBe(true);

    const rest = dialogue.slice(3);
    const [outcome] = await Promise.all([provider.waitForDeal(), client.waitForDeal(), provider.runDialogue(rest), client.runDialogue(rest)]);
    expect(outcome.contract.status).toBe(ContractStatus.ACTIVE);
    expect(outcome.contract.signatures.map((s) => s.userId).sort()).toEqual([...userIds].sort());

    // No event twice, none out of order, and every line of the dialogue exactly once.
    for (const p of [provider, client]) {
      const seqs = p.history.map((e) => e.seq);
      expect(new Set(seqs).size).toBe(seqs.length);
      expect(seqs).toEqual([...seqs].sort((a, b) => (a < b ? -1 : 1)));
      const said = p.history.flatMap((e) => (e.event.case === "transcript" && e.event.value.isFinal ? [e.event.value.text] : []));
      expect(said).toEqual(dialogue.map((l) => l.text));
    }
  });

  it("streams a WAV over AudioStream to the peer as 20 ms frames of 16 kHz PCM16", async () => {
    const app = await startTestApp();
    cleanups.push(() => app.close());
    const [speaker, listener] = pair(app.baseUrl, "audio-room");
    await speaker.join();
    await listener.join();
    // The listener opens its own AudioStream (by saying something) so the server has a sink for it.
    listener.say("hello");
    await listener.waitFor((e) => (e.event.case === "transcript" && e.event.value.speakerUserId === listener.userId ? true : undefined));
    // 0.5 s of a 440 Hz tone at 48 kHz stereo: resampled to 16 kHz mono, that is 25 frames.
    const rate = 48_000;
    const samples = new Int16Array(rate / 2 * 2);
    for (let i = 0; i < rate / 2; i++) {
      const v = Math.round(Math.sin((2 * Math.PI * 440 * i) / rate) * 8000);
      samples[2 * i] = v;
      samples[2 * i + 1] = v;
    }
    const wav = stereoWav(samples, rate);
    const frames = await speaker.streamWav(wav, { realtime: false });
    expect(frames).toBe(25);
    await listener.waitUntil(() => (listener.peerFramesReceived >= 25 ? true : undefined));
    expect(listener.peerFramesReceived).toBe(25);
    // Device transcripts arrive marked as such.
    const hello = listener.history.find((e) => e.event.case === "transcript");
    expect(hello?.event.case === "transcript" && hello.event.value.source).toBe(TranscriptSource.DEVICE);
  });

  it("refuses to sign a contract whose text does not hash to its hash, without asking the server", async () => {
    const app = await startTestApp();
    cleanups.push(() => app.close());
    const [provider] = pair(app.baseUrl, "hash-room");
    const contract = { id: "ctr_x", text: "I will pay £1", textSha256: contractTextHash("I will pay £100") } as Contract;
    await expect(provider.sign(contract)).rejects.toBeInstanceOf(ContractTextMismatchError);
    expect(contractTextHash("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });
});

describe("dealProgress", () => {
  const event = (init: Parameters<typeof create<typeof PanelEventSchema>>[1]) => create(PanelEventSchema, init);
  const contract = (status: ContractStatus) => ({
    id: "c1",
    status,
    terms: {
      currency: "GBP",
      totalMinor: 300n,
      lineItems: [
        { id: "item-1", kind: LineItemKind.IMMEDIATE, amountMinor: 100n },
        { id: "item-2", kind: LineItemKind.ESCROW, amountMinor: 200n },
      ],
    },
  });

  it("is complete only when the contract is active and every item is paid or held", () => {
    const events = [event({ seq: 1n, event: { case: "contract", value: contract(ContractStatus.EXECUTING) } })];
    expect(dealProgress(events).state).toBe("pending");
    events.push(event({ seq: 2n, event: { case: "payment", value: { id: "p1", contractId: "c1", lineItemId: "item-1", status: 2 } } }));
    events.push(event({ seq: 3n, event: { case: "contract", value: contract(ContractStatus.ACTIVE) } }));
    expect(dealProgress(events).state).toBe("pending");
    events.push(event({ seq: 4n, event: { case: "escrowHold", value: { id: "h1", contractId: "c1", lineItemId: "item-2", status: 2 } } }));
    const progress = dealProgress(events);
    expect(progress.state).toBe("complete");
    if (progress.state === "complete") expect(progress.outcome.holds.map((h) => h.id)).toEqual(["h1"]);
  });

  it("fails on a rejected negotiation or a failed payment, and a new negotiation clears the rejection", () => {
    const rejected = [event({ seq: 1n, event: { case: "negotiation", value: { status: 3, endReason: "too expensive" } } })];
    expect(dealProgress(rejected)).toEqual({ state: "failed", reason: "negotiation rejected: too expensive" });
    expect(dealProgress(rejected, false).state).toBe("pending");
    rejected.push(event({ seq: 2n, event: { case: "negotiation", value: { status: 1 } } }));
    expect(dealProgress(rejected).state).toBe("pending");
    const failed = [
      event({ seq: 1n, event: { case: "payment", value: { id: "p1", contractId: "c1", status: 3, failureReason: "card declined" } } }),
      event({ seq: 2n, event: { case: "contract", value: { ...contract(ContractStatus.PAYMENT_FAILED), payments: [{ id: "p1", contractId: "c1", status: 3, failureReason: "card declined" }] } } }),
    ];
    expect(dealProgress(failed)).toEqual({ state: "failed", reason: "payment failed: card declined" });
  });
});

/** A PCM16 stereo WAV, to check that the participant mixes down and resamples. */
function stereoWav(interleaved: Int16Array, rate: number): Uint8Array {
  const mono = encodeWav(interleaved, rate);
  const view = new DataView(mono.buffer);
  view.setUint16(22, 2, true); // channels
  view.setUint32(28, rate * 4, true); // byte rate
  view.setUint16(32, 4, true); // block align
  return mono;
}
