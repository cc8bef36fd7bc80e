import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { NegotiationStatus } from "../../gen/handshake/v1/deal_pb.js";
import { SessionStatus, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { TranscriptSource } from "../../gen/handshake/v1/transcript_pb.js";
import { silentLogger } from "../../src/core/log.js";
import { Room } from "../../src/room/room.js";
import { clientProfile, createFakeRoomStages, oneItemProposal, providerProfile, testRoomSettings, type FakeRoomStages } from "../support/room-stages.js";

const SAM = "u_sam";
const ALEX = "u_alex";
const ROUND_TIMEOUT_MS = 20_000;
const TOTAL_TIMEOUT_MS = 60_000;

let fakes: FakeRoomStages;
let room: Room;
let events: PanelEvent[];

function makeRoom(): Room {
  const made = new Room("room-1", undefined, fakes.stages, testRoomSettings(), silentLogger, undefined, () => {});
  // Every event the room appends, in order, as a panel reader would see it.
  made.events.listen(0n, SAM, { queued: () => 0, event: (e) => void events.push(e), ended: () => {} });
  return made;
}

function pairBoth(): void {
  room.join(SAM, providerProfile());
  room.join(ALEX, clientProfile());
}

const say = (userId: string, text: string) => room.transcript(userId, { text, isFinal: true, startMs: 0, endMs: 1000, words: [], confidence: 0.9 }, TranscriptSource.DEVICE);
const negotiations = () => events.flatMap((e) => (e.event.case === "negotiation" ? [e.event.value] : []));
const sessions = () => room.status().participants.map((p) => p.sessionStatus);

beforeEach(() => {
  vi.useFakeTimers({ now: 1_700_000_000_000 });
  fakes = createFakeRoomStages({ roundTimeoutMs: ROUND_TIMEOUT_MS, totalTimeoutMs: TOTAL_TIMEOUT_MS });
  events = [];
  room = makeRoom();
});

afterEach(async () => {
  await room.destroy();
  vi.useRealTimers();
});

describe("Room: pairing", () => {
  it("arms the trigger and starts an agent and a speech engine per member only when the second person joins", () => {
    room.join(SAM, providerProfile());
    expect(room.status()).toMatchObject({ paired: false, triggerArmed: false });
    expect(fakes.agents).toHaveLength(0);
    room.join(ALEX, clientProfile());
    expect(room.status()).toMatchObject({ paired: true, triggerArmed: true });
    expect(fakes.agents.map((a) => a.deps.userId)).toEqual([SAM, ALEX]);
    expect(fakes.agentOf(SAM).deps.peer).toMatchObject({ userId: ALEX, displayName: "Alex" });
    expect(fakes.speech.engines.map((e) => e.participant.userId)).toEqual([SAM, ALEX]);
    expect(sessions()).toEqual([SessionStatus.ACTIVE, SessionStatus.ACTIVE]);
  });

  it("refuses a third person and treats a repeated join as a profile refresh", () => {
    pairBoth();
    expect(() => room.join("u_third", clientProfile())).toThrow(/room is full/);
    room.join(ALEX, { ...clientProfile(), displayName: "Alexandra" });
    expect(room.size).toBe(2);
    expect(fakes.agents).toHaveLength(2);
  });

  it("gives each agent the final words of both people, its own marked self", () => {
    pairBoth();
    say(SAM, "I can fix the boiler.");
    room.transcript(ALEX, { text: "how mu", isFinal: false, startMs: 0, endMs: 500, words: [], confidence: 0.5 }, TranscriptSource.DEVICE);
    expect(fakes.agentOf(SAM).transcripts.map((t) => [t.entry.text, t.speaker])).toEqual([["I can fix the boiler.", "self"]]);
    expect(fakes.agentOf(ALEX).transcripts.map((t) => [t.entry.text, t.speaker])).toEqual([["I can fix the boiler.", "peer"]]);
    expect(fakes.triggers[0]!.fed.map((e) => e.text)).toEqual(["I can fix the boiler."]);
  });
});

describe("Room: the trigger re-arms when a negotiation ends without a deal", () => {
  it("a trigger opens one negotiation and disarms; when the opening offer is not made in time it expires and the trigger re-arms", async () => {
    pairBoth();
    const trigger = fakes.triggers[0]!;
    expect(trigger.fire(SAM)).toBe(true);
    const opened = room.status();
    expect(opened.triggerArmed).toBe(false);
    expect(opened.activeNegotiationId).not.toBe("");
    expect(fakes.agentOf(SAM).started).toHaveLength(1);
    expect(fakes.agentOf(ALEX).started).toHaveLength(0);
    expect(sessions()).toEqual([SessionStatus.NEGOTIATING, SessionStatus.NEGOTIATING]);
    // Disarmed: saying the keyword again starts nothing.
    expect(trigger.fire(ALEX)).toBe(false);

    await vi.advanceTimersByTimeAsync(ROUND_TIMEOUT_MS - 1);
    expect(room.status().activeNegotiationId).toBe(opened.activeNegotiationId);
    await vi.advanceTimersByTimeAsync(1);
    expect(negotiations().at(-1)).toMatchObject({ id: opened.activeNegotiationId, status: NegotiationStatus.EXPIRED });
    expect(room.status()).toMatchObject({ triggerArmed: true, activeNegotiationId: "" });
    expect(room.deal().negotiation?.status).toBe(NegotiationStatus.EXPIRED);
    expect(trigger.fire(ALEX)).toBe(true);
    expect(fakes.agentOf(ALEX).started).toHaveLength(1);
  });

  it("the total timeout ends a negotiation whose offers keep coming in time, and the trigger re-arms", async () => {
    pairBoth();
    fakes.triggers[0]!.fire(SAM);
    const session = fakes.agentOf(SAM).deps.negotiation()!;
    session.propose(SAM, oneItemProposal(SAM, ALEX, 15_000n), "opening");
    for (const [who, amount] of [[ALEX, 11_000n], [SAM, 14_000n], [ALEX, 12_000n]] as const) {
      await vi.advanceTimersByTimeAsync(ROUND_TIMEOUT_MS - 5_000);
      session.counter(who, oneItemProposal(SAM, ALEX, amount), "closer");
    }
    await vi.advanceTimersByTimeAsync(TOTAL_TIMEOUT_MS - 3 * (ROUND_TIMEOUT_MS - 5_000) - 1);
    expect(room.status().triggerArmed).toBe(false);
    expect(negotiations().at(-1)).toMatchObject({ status: NegotiationStatus.OPEN });
    await vi.advanceTimersByTimeAsync(1);
    expect(negotiations().at(-1)).toMatchObject({ status: NegotiationStatus.EXPIRED });
    expect(room.status()).toMatchObject({ triggerArmed: true, activeNegotiationId: "" });
  });

  it("a rejected offer ends the negotiation and re-arms the trigger; the agent saw the peer's move first", () => {
    pairBoth();
    fakes.triggers[0]!.fire(SAM);
    const negotiation = fakes.agentOf(SAM).deps.negotiation()!;
    negotiation.propose(SAM, oneItemProposal(SAM, ALEX), "my usual rate");
    expect(fakes.agentOf(ALEX).peerMoves).toHaveLength(1);
    expect(fakes.agentOf(SAM).peerMoves).toHaveLength(0);
    fakes.agentOf(ALEX).deps.negotiation()!.reject(ALEX, "too dear");
    expect(negotiations().at(-1)?.status).toBe(NegotiationStatus.REJECTED);
    expect(room.status()).toMatchObject({ triggerArmed: true, activeNegotiationId: "" });
    expect(fakes.agentOf(SAM).deps.negotiation()).toBeUndefined();
  });

  it("an agreed offer drafts one contract and keeps the trigger disarmed until the contract has been paid", async () => {
    pairBoth();
    fakes.triggers[0]!.fire(SAM);
    fakes.agentOf(SAM).deps.negotiation()!.propose(SAM, oneItemProposal(SAM, ALEX), "my usual rate");
    fakes.agentOf(ALEX).deps.negotiation()!.accept(ALEX, "fair");
    await vi.advanceTimersByTimeAsync(0);
    expect(fakes.drafted).toHaveLength(1);
    const contract = fakes.drafted[0]!;
    expect(room.status()).toMatchObject({ contractId: contract.id, triggerArmed: false, activeNegotiationId: "" });
    expect(fakes.triggers[0]!.dealsMade).toBe(1);
    expect(events.filter((e) => e.event.case === "contract")).toHaveLength(1);
    // The negotiation's timers died with it: nothing expires later.
    await vi.advanceTimersByTimeAsync(TOTAL_TIMEOUT_MS * 2);
    expect(negotiations().at(-1)?.status).toBe(NegotiationStatus.AGREED);

    room.contractExecuted(contract.id);
    expect(room.status().triggerArmed).toBe(true);
  });
});

describe("Room: leaving", () => {
  it("unpairs: the open negotiation ends, agents and speech engines stop, the trigger disarms; a new pair starts fresh", async () => {
    pairBoth();
    fakes.triggers[0]!.fire(SAM);
    const [samAgent, alexAgent] = fakes.agents as [(typeof fakes.agents)[0], (typeof fakes.agents)[0]];
    const samSpeech = fakes.speech.engineFor(SAM)!;
    await room.leave(SAM);
    expect(room.status()).toMatchObject({ paired: false, triggerArmed: false, activeNegotiationId: "" });
    expect([samAgent.stopped, alexAgent.stopped]).toEqual([true, true]);
    expect(samSpeech.stopped).toBe(true);
    expect(sessions()).toEqual([SessionStatus.DISCOVERING]);
    // The closed negotiation's timers are gone too: no expiry event arrives later.
    const before = negotiations().length;
    await vi.advanceTimersByTimeAsync(TOTAL_TIMEOUT_MS * 2);
    expect(negotiations()).toHaveLength(before);

    room.join("u_kim", providerProfile());
    expect(room.status()).toMatchObject({ paired: true, triggerArmed: true });
    expect(fakes.agentOf(ALEX)).not.toBe(alexAgent);
  });

  it("destroy stops everything, ends panel readers and is safe to call twice", async () => {
    pairBoth();
    const read = (async () => {
      for await (const _ of room.events.subscribe(0n, ALEX, new AbortController().signal));
    })();
    await room.destroy();
    await room.destroy();
    await expect(read).rejects.toThrow(/room closed/);
    expect(fakes.triggers[0]!.closed).toBe(true);
    expect(fakes.agents.every((a) => a.stopped)).toBe(true);
    expect(fakes.speech.engines.every((e) => e.stopped)).toBe(true);
  });
});
