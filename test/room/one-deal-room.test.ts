import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ContractStatus, NegotiationStatus, type Contract } from "../../gen/handshake/v1/deal_pb.js";
import { ApprovalStatus, SessionStatus, type ApprovalRequest, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { AgentProfileSchema, PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { TranscriptSource } from "../../gen/handshake/v1/transcript_pb.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError } from "../../src/core/errors.js";
import { silentLogger } from "../../src/core/log.js";
import { createContractDesk } from "../../src/deal/contracts.js";
import { createTemplateDrafter } from "../../src/deal/contract-template.js";
import { createNegotiationSession } from "../../src/deal/negotiation.js";
import { Room, type RoomStages } from "../../src/room/room.js";
import { createSqliteStore } from "../../src/store/sqlite-store.js";
import type { Store } from "../../src/store/store.js";
import { createTriggerDetector } from "../../src/trigger/trigger-detector.js";
import { createScriptedAgents, type ScriptedOffer } from "../support/scripted-agent.js";

const SAM = "usr_sam";
const ALEX = "usr_alex";
const ROUND_TIMEOUT_MS = 30_000;

let store: Store;
let room: Room;
let executed: string[];
let offer: ScriptedOffer;
let stages: RoomStages;

function stagesOf(): RoomStages {
  return stages;
}

/** Lets promise chains (tools, store, drafting) run; advances the fake clock by a millisecond a step. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await vi.advanceTimersByTimeAsync(1);
}

function say(userId: string, text: string): void {
  room.transcript(userId, { text, isFinal: true, startMs: 0, endMs: 1_000, confidence: 0.9, words: [] }, TranscriptSource.DEVICE);
}

function seen(userId: string): PanelEvent[] {
  return room.events.since(0n, userId);
}

type ValueOf<C> = Extract<PanelEvent["event"], { case: C }> extends { value: infer V } ? V : never;

/** The values of one kind of event that `userId` sees, oldest first. */
function of<C extends NonNullable<PanelEvent["event"]["case"]>>(userId: string, kind: C): ValueOf<C>[] {
  const out: ValueOf<C>[] = [];
  for (const e of seen(userId)) if (e.event.case === kind) out.push(e.event.value as ValueOf<C>);
  return out;
}

function latestContract(): Contract {
  const contract = room.deal().contract;
  if (!contract) throw new Error("no contract");
  return contract;
}

function approvals(userId: string): ApprovalRequest[] {
  return of(userId, "approvalRequest");
}

async function signBoth(contract: Contract): Promise<void> {
  await room.sign(SAM, contract.id, contract.textSha256);
  await room.sign(ALEX, contract.id, contract.textSha256);
  await settle();
}

async function setUp(alexLimitMinor: bigint): Promise<void> {
  const { factory } = createScriptedAgents(() => offer);
  const desk = createContractDesk({ store, drafter: createTemplateDrafter(), log: silentLogger });
  stages = {
    createTrigger: (options) => createTriggerDetector({ ...options, dualWindowMs: 10_000, armed: false }),
    createNegotiation: (options) => createNegotiationSession({ ...options, roundTimeoutMs: ROUND_TIMEOUT_MS, totalTimeoutMs: 120_000 }),
    agentFactory: factory,
    speechFactory: undefined,
    toSpeechPcm: () => (pcm) => Buffer.from(pcm),
    desk,
    executeContract: async (contract) => {
      executed.push(contract.id);
      room.contractExecuted(contract.id);
    },
    bankFor: () => undefined,
  };
  room = new Room(
    "room-1",
    undefined,
    stages,
    { eventLogSize: 2_000, subscriberQueueSize: 100, triggerKeyword: "handshake", triggerRequireBoth: false },
    silentLogger,
    undefined,
    () => {},
  );
  room.join(SAM, create(AgentProfileSchema, { displayName: "Sam", role: PartyRole.PROVIDER, currency: "GBP" }));
  room.join(ALEX, create(AgentProfileSchema, { displayName: "Alex", role: PartyRole.CLIENT, currency: "GBP", maxAutoApproveMinor: alexLimitMinor }));
}

beforeEach(async () => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] });
  vi.setSystemTime(1_700_000_000_000);
  store = await createSqliteStore({ path: ":memory:", log: silentLogger });
  for (const id of [SAM, ALEX]) await store.createUser({ id, createdAtMs: Date.now() });
  executed = [];
  offer = { description: "Boiler repair", amountMinor: 12_000, currency: "GBP" };
});

afterEach(async () => {
  await room.destroy();
  await store.close();
  vi.useRealTimers();
});

describe("one agreement gives one contract", () => {
  it("the peer's keyword right after the first confirms it; later, the same talk does not start a second deal", async () => {
    await setUp(50_000n);
    say(SAM, "I can fix the boiler for one hundred and twenty pounds.");
    say(ALEX, "OK, handshake.");
    await settle();
    await signBoth(latestContract());
    expect(executed).toHaveLength(1);
    expect(room.status().triggerArmed).toBe(true);

    vi.advanceTimersByTime(300);
    say(SAM, "Handshake!");
    await settle();
    vi.advanceTimersByTime(60_000);
    say(ALEX, "Brilliant, thanks.");
    say(ALEX, "Handshake.");
    await settle();

    expect(of(ALEX, "trigger")).toHaveLength(1);
    expect(new Set(of(ALEX, "contract").map((c) => c.id)).size).toBe(1);
    expect(executed).toHaveLength(1);
    // Both keywords came after the contract with nothing new priced: each is told why nothing started.
    const errors = of(ALEX, "error").filter((e) => e.stage === "trigger");
    expect(errors.map((e) => e.code)).toEqual(["no_new_terms", "no_new_terms"]);
    expect(of(SAM, "error").some((e) => e.code === "no_new_terms")).toBe(true);

    // New priced terms after the contract: a second, separate deal.
    offer = { description: "Radiator service", amountMinor: 6_000, currency: "GBP" };
    say(SAM, "I can service the radiators too, sixty pounds.");
    say(ALEX, "Handshake.");
    await settle();
    const second = latestContract();
    expect(second.terms?.totalMinor).toBe(6_000n);
    await signBoth(second);
    expect(executed).toHaveLength(2);
  });

  it("a negated keyword does not trigger", async () => {
    await setUp(50_000n);
    room.setTriggerKeyword("shake on it", false);
    say(SAM, "Eighty pounds for the gutters.");
    say(ALEX, "Let's not shake on it yet, I want to ask my partner.");
    say(SAM, "Before we shake on it, I'll check the ladder.");
    await settle();
    expect(of(ALEX, "trigger")).toHaveLength(0);
    expect(room.deal().negotiation).toBeUndefined();
    say(ALEX, "OK, let's shake on it.");
    await settle();
    expect(of(ALEX, "trigger")).toHaveLength(1);
  });

  it("a keyword while a contract waits for signatures says so on the panel", async () => {
    await setUp(50_000n);
    say(SAM, "It's one hundred and twenty pounds.");
    say(ALEX, "Handshake.");
    await settle();
    expect(latestContract().status).toBe(ContractStatus.AWAITING_SIGNATURES);
    vi.advanceTimersByTime(30_000);
    say(SAM, "Handshake?");
    expect(of(SAM, "error").map((e) => e.code)).toContain("contract_pending");
    expect(of(SAM, "trigger")).toHaveLength(1);
  });
});

describe("mandates: above the max auto-approve the agent asks its person", () => {
  it("asks only its own person; only they may answer, once; approved, the deal goes on", async () => {
    await setUp(10_000n);
    offer = { description: "Gutter repair", amountMinor: 45_000, currency: "GBP" };
    say(SAM, "The gutter repair is four hundred and fifty pounds.");
    say(ALEX, "Handshake.");
    await settle();
    const [pending] = approvals(ALEX);
    expect(pending).toMatchObject({
      userId: ALEX,
      amountMinor: 45_000n,
      limitMinor: 10_000n,
      currency: "GBP",
      status: ApprovalStatus.PENDING,
      summary: "Pay £450.00 to Sam for Gutter repair",
    });
    expect(approvals(SAM)).toHaveLength(0);
    expect(room.deal().negotiation?.status).toBe(NegotiationStatus.OPEN);

    expect(() => room.answerApproval(SAM, pending!.id, true)).toThrow(PermissionDeniedError);
    expect(() => room.answerApproval(ALEX, "apr_unknown", true)).toThrow(NotFoundError);
    const answered = room.answerApproval(ALEX, pending!.id, true);
    expect(answered.status).toBe(ApprovalStatus.APPROVED);
    expect(() => room.answerApproval(ALEX, pending!.id, false)).toThrow(FailedPreconditionError);
    await settle();

    expect(room.deal().negotiation?.status).toBe(NegotiationStatus.AGREED);
    expect(latestContract().terms?.totalMinor).toBe(45_000n);
    expect(approvals(ALEX).map((a) => a.status)).toEqual([ApprovalStatus.PENDING, ApprovalStatus.APPROVED]);
  });

  it("declined, the agent walks away, the negotiation ends and the room re-arms (asked on accepting)", async () => {
    await setUp(10_000n);
    offer = { description: "Gutter repair", amountMinor: 45_000, currency: "GBP" };
    say(ALEX, "Four hundred and fifty pounds for the gutters?");
    // Sam triggers, so Sam's agent proposes and Alex's agent is asked while accepting.
    say(SAM, "Handshake.");
    await settle();
    const [pending] = approvals(ALEX);
    expect(room.deal().negotiation?.rounds).toHaveLength(1);
    room.answerApproval(ALEX, pending!.id, false);
    await settle();
    const negotiation = room.deal().negotiation;
    expect(negotiation?.status).toBe(NegotiationStatus.REJECTED);
    expect(negotiation?.rounds.at(-1)?.fromUserId).toBe(ALEX);
    expect(room.deal().contract).toBeUndefined();
    expect(room.status().triggerArmed).toBe(true);
  });

  it("unanswered, the round timeout expires the negotiation and the request", async () => {
    await setUp(10_000n);
    offer = { description: "Gutter repair", amountMinor: 45_000, currency: "GBP" };
    say(SAM, "Four hundred and fifty pounds.");
    say(ALEX, "Handshake.");
    await settle();
    const [pending] = approvals(ALEX);
    await vi.advanceTimersByTimeAsync(ROUND_TIMEOUT_MS);
    await settle();
    expect(room.deal().negotiation?.status).toBe(NegotiationStatus.EXPIRED);
    expect(approvals(ALEX).at(-1)).toMatchObject({ id: pending!.id, status: ApprovalStatus.EXPIRED });
    expect(() => room.answerApproval(ALEX, pending!.id, true)).toThrow(FailedPreconditionError);
    expect(room.status().triggerArmed).toBe(true);
  });

  it("a person leaving while their agent waits expires the request and the leave completes", async () => {
    await setUp(10_000n);
    offer = { description: "Gutter repair", amountMinor: 45_000, currency: "GBP" };
    say(SAM, "Four hundred and fifty pounds.");
    say(ALEX, "Handshake.");
    await settle();
    const [pending] = approvals(ALEX);
    expect(pending?.status).toBe(ApprovalStatus.PENDING);
    await room.leave(ALEX);
    expect(room.size).toBe(1);
    expect(room.events.since(0n, ALEX).filter((e) => e.event.case === "approvalRequest").at(-1)?.event.value).toMatchObject({ status: ApprovalStatus.EXPIRED });
  });

  it("a room rebuilt from its log shows requests that were pending as expired", async () => {
    await setUp(10_000n);
    offer = { description: "Gutter repair", amountMinor: 45_000, currency: "GBP" };
    say(SAM, "Four hundred and fifty pounds.");
    say(ALEX, "Handshake.");
    await settle();
    const [pending] = approvals(ALEX);
    const log = room.events.since(0n, ALEX).concat(room.events.since(0n, SAM).filter((e) => e.visibleToUserId === SAM));
    const rebuilt = new Room(
      "room-1",
      undefined,
      { ...stagesOf(), agentFactory: createScriptedAgents(() => offer).factory },
      { eventLogSize: 2_000, subscriberQueueSize: 100, triggerKeyword: "handshake", triggerRequireBoth: false },
      silentLogger,
      { lastSeq: room.events.latestSeq, events: log.sort((a, b) => Number(a.seq - b.seq)) },
      () => {},
    );
    const seenAfter = rebuilt.events.since(0n, ALEX).filter((e) => e.event.case === "approvalRequest").map((e) => e.event.value as ApprovalRequest);
    expect(seenAfter.at(-1)).toMatchObject({ id: pending!.id, status: ApprovalStatus.EXPIRED });
    expect(() => rebuilt.answerApproval(ALEX, pending!.id, true)).toThrow(NotFoundError);
    await rebuilt.destroy();
  });

  it("within the limit nobody is asked", async () => {
    await setUp(50_000n);
    say(SAM, "One hundred and twenty pounds.");
    say(ALEX, "Handshake.");
    await settle();
    expect(approvals(ALEX)).toHaveLength(0);
    expect(room.deal().negotiation?.status).toBe(NegotiationStatus.AGREED);
  });
});

describe("declining a drafted contract", () => {
  it("a decline racing the last signature: exactly one wins, and money moves only if the signature did", async () => {
    await setUp(50_000n);
    say(SAM, "One hundred and twenty pounds.");
    say(ALEX, "Handshake.");
    await settle();
    const contract = latestContract();
    await room.sign(SAM, contract.id, contract.textSha256);
    const [signed, declined] = await Promise.allSettled([
      room.decline(ALEX, contract.id, "Changed my mind."),
      room.sign(ALEX, contract.id, contract.textSha256),
    ]);
    await settle();
    expect([signed.status, declined.status].sort()).toEqual(["fulfilled", "rejected"]);
    const stored = await store.getContract(contract.id);
    // The decline was asked first and runs first: the signature after it is refused, nothing is paid.
    expect(stored?.status).toBe(ContractStatus.DECLINED);
    expect(executed).toHaveLength(0);
  });

  it("checks the reason and who declines, pays nothing, re-arms, and the same terms can be agreed again", async () => {
    await setUp(50_000n);
    say(SAM, "One hundred and twenty pounds for the boiler.");
    say(ALEX, "Handshake.");
    await settle();
    const contract = latestContract();
    await room.sign(SAM, contract.id, contract.textSha256);

    await expect(room.decline(ALEX, contract.id, "  ")).rejects.toThrow(InvalidArgumentError);
    await expect(room.decline(ALEX, contract.id, "x".repeat(501))).rejects.toThrow(InvalidArgumentError);
    await expect(room.decline("usr_stranger", contract.id, "Not mine")).rejects.toThrow(PermissionDeniedError);

    const declined = await room.decline(ALEX, contract.id, "The date is wrong.");
    expect(declined).toMatchObject({ status: ContractStatus.DECLINED, declinedReason: "The date is wrong.", declinedByUserId: ALEX });
    for (const user of [SAM, ALEX]) expect(of(user, "contract").at(-1)).toMatchObject({ id: contract.id, status: ContractStatus.DECLINED });
    expect((await store.getContract(contract.id))?.declinedReason).toBe("The date is wrong.");
    await expect(room.sign(ALEX, contract.id, contract.textSha256)).rejects.toThrow(FailedPreconditionError);
    await expect(room.decline(SAM, contract.id, "Again")).rejects.toThrow(FailedPreconditionError);
    expect(executed).toHaveLength(0);
    const status = room.status();
    expect(status.triggerArmed).toBe(true);
    expect(status.participants.every((p) => p.sessionStatus === SessionStatus.ACTIVE)).toBe(true);

    // The declined terms were never paid, so the same talk may be agreed again (after the confirmation window).
    vi.advanceTimersByTime(30_000);
    say(ALEX, "Handshake.");
    await settle();
    const second = latestContract();
    expect(second.id).not.toBe(contract.id);
    await signBoth(second);
    expect(executed).toEqual([second.id]);
    await expect(room.decline(ALEX, second.id, "Too late")).rejects.toThrow(FailedPreconditionError);
  });
});
