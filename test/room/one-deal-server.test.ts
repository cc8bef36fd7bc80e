import { createHash } from "node:crypto";
import { scriptedGutterClaude } from "../support/scripted-claude.js";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import { ContractStatus, NegotiationStatus, PaymentStatus, type Contract } from "../../gen/handshake/v1/deal_pb.js";
import { ApprovalStatus, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { startFakeAnthropic, type FakeAnthropic } from "../../src/agents/claude/testing/fake-anthropic.js";
import { grpcTransport, startTestApp, testProfile, type TestApp } from "../support/app.js";
import { recordPanel, type PanelRecorder } from "../support/panel.js";

interface Person {
  userId: string;
  room: ReturnType<typeof createClient<typeof RoomService>>;
  contracts: ReturnType<typeof createClient<typeof ContractService>>;
  panel: PanelRecorder;
  say(text: string): Promise<void>;
}

async function join(app: TestApp, roomId: string, profile: Parameters<typeof testProfile>[0]): Promise<Person> {
  const anonymous = createClient(RoomService, grpcTransport(app.baseUrl));
  const joined = await anonymous.joinRoom({ roomId, profile: testProfile(profile) });
  const transport = grpcTransport(app.baseUrl, joined.sessionToken);
  const room = createClient(RoomService, transport);
  const panel = recordPanel(room, roomId);
  let start = 0;
  return {
    userId: joined.userId,
    room,
    contracts: createClient(ContractService, transport),
    panel,
    async say(text: string) {
      const end = start + text.length * 60;
      await room.sendAudio({ transcript: { text, isFinal: true, startMs: start, endMs: end, confidence: 0.95 } });
      start = end + 500;
      // Seen on the speaker's own panel: the room has taken the words (and fired, or not) by then.
      await panel.waitFor((e) => e.event.case === "transcript" && e.event.value.isFinal && e.event.value.text === text, `transcript "${text}"`);
    },
  };
}

const isContract = (status: ContractStatus) => (e: PanelEvent) => e.event.case === "contract" && e.event.value.status === status;

async function contractOn(person: Person, status: ContractStatus, notId?: string): Promise<Contract> {
  const event = await person.panel.waitFor((e) => isContract(status)(e) && (e.event.value as Contract).id !== notId, "contract");
  if (event.event.case !== "contract") throw new Error("unreachable");
  return event.event.value;
}

async function signBoth(a: Person, b: Person, contract: Contract): Promise<void> {
  const hash = createHash("sha256").update(contract.text, "utf8").digest("hex");
  await a.room.signContract({ contractId: contract.id, textSha256: hash });
  await b.room.signContract({ contractId: contract.id, textSha256: hash });
}

async function codeOf(call: Promise<unknown>): Promise<Code | undefined> {
  try {
    await call;
    return undefined;
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

const triggers = (p: Person) => p.panel.events.filter((e) => e.event.case === "trigger");

describe("one agreement, one deal, through the real server (offline engines)", () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ NEGOTIATION_ROUND_TIMEOUT_MS: "20000", NEGOTIATION_TOTAL_TIMEOUT_MS: "60000" });
  });
  afterAll(async () => {
    await app.close();
  });

  it("both saying the keyword one after the other gives one contract and one set of payments", async () => {
    const sam = await join(app, "one-deal-1", { displayName: "Sam", role: PartyRole.PROVIDER, trade: "plumber", rates: [{ description: "boiler repair", amountMinor: 12_000n }] });
    const alex = await join(app, "one-deal-1", { displayName: "Alex", role: PartyRole.CLIENT, maxAutoApproveMinor: 20_000n });
    await sam.say("I can fix your boiler today for one hundred and twenty pounds.");
    await alex.say("OK, handshake.");
    const contract = await contractOn(alex, ContractStatus.AWAITING_SIGNATURES);
    await signBoth(sam, alex, contract);
    await alex.panel.waitFor((e) => e.event.case === "payment" && e.event.value.status === PaymentStatus.SUCCEEDED, "payment");
    await alex.panel.waitFor((e) => e.event.case === "roomStatus" && e.event.value.triggerArmed && e.event.value.contractId === contract.id, "re-armed");

    await sam.say("Handshake!");
    await alex.say("Great, see you at ten.");
    expect(triggers(alex)).toHaveLength(1);
    const listed = await alex.contracts.listContracts({});
    expect(listed.contracts.map((c) => c.id)).toEqual([contract.id]);
    const paid = listed.contracts[0]!.terms!.totalMinor;
    expect((await sam.contracts.getBalances({})).balances).toEqual([expect.objectContaining({ currency: "GBP", receivedMinor: paid })]);
    expect((await alex.contracts.getBalances({})).balances).toEqual([expect.objectContaining({ currency: "GBP", availableMinor: -paid })]);
    await sam.panel.stop();
    await alex.panel.stop();
  });

  it("a negated keyword does not trigger", async () => {
    const sam = await join(app, "one-deal-2", { displayName: "Sam", role: PartyRole.PROVIDER, trade: "roofer" });
    const alex = await join(app, "one-deal-2", { displayName: "Alex", role: PartyRole.CLIENT });
    await alex.room.setTriggerKeyword({ roomId: "one-deal-2", keyword: "shake on it", requireBoth: false });
    await sam.say("The roof repair is two hundred pounds.");
    await alex.say("Let's not shake on it yet, I want a second quote.");
    await sam.say("Before we shake on it, I'll have a look at the chimney too.");
    expect(triggers(alex)).toHaveLength(0);
    expect((await alex.room.getRoom({ roomId: "one-deal-2" })).room?.activeNegotiationId).toBe("");
    await sam.panel.stop();
    await alex.panel.stop();
  });

  it("a declined contract pays nothing, is shown to both with the reason, and the room makes a second deal", async () => {
    const sam = await join(app, "one-deal-3", { displayName: "Sam", role: PartyRole.PROVIDER, trade: "painter" });
    // A limit well above both deals: this test is about declining, not mandates.
    const alex = await join(app, "one-deal-3", { displayName: "Alex", role: PartyRole.CLIENT, maxAutoApproveMinor: 200_000n });
    await sam.say("Painting the kitchen is two hundred and fifty pounds.");
    await alex.say("Handshake.");
    const first = await contractOn(alex, ContractStatus.AWAITING_SIGNATURES);

    expect(await codeOf(alex.room.declineContract({ contractId: first.id, reason: "" }))).toBe(Code.InvalidArgument);
    const eve = await join(app, "one-deal-3-elsewhere", { displayName: "Eve", role: PartyRole.CLIENT });
    expect(await codeOf(eve.room.declineContract({ contractId: first.id, reason: "Not my deal" }))).toBe(Code.PermissionDenied);
    await eve.panel.stop();
    expect(await codeOf(alex.room.declineContract({ contractId: first.id, reason: "x".repeat(501) }))).toBe(Code.InvalidArgument);
    const declined = await alex.room.declineContract({ contractId: first.id, reason: "I want the hallway done as well." });
    expect(declined.contract).toMatchObject({ status: ContractStatus.DECLINED, declinedReason: "I want the hallway done as well.", declinedByUserId: alex.userId });
    const seenBySam = await contractOn(sam, ContractStatus.DECLINED);
    expect(seenBySam.declinedReason).toBe("I want the hallway done as well.");
    const hash = createHash("sha256").update(first.text, "utf8").digest("hex");
    expect(await codeOf(sam.room.signContract({ contractId: first.id, textSha256: hash }))).toBe(Code.FailedPrecondition);
    await alex.panel.waitFor((e) => e.event.case === "roomStatus" && e.event.value.triggerArmed && e.event.value.contractId === first.id, "re-armed");

    await sam.say("Kitchen and hallway, two hundred and ninety pounds then.");
    await alex.say("Handshake.");
    const second = await contractOn(alex, ContractStatus.AWAITING_SIGNATURES, first.id);
    await signBoth(sam, alex, second);
    await alex.panel.waitFor((e) => e.event.case === "payment" && e.event.value.status === PaymentStatus.SUCCEEDED, "payment");
    expect(await codeOf(alex.room.declineContract({ contractId: second.id, reason: "Changed my mind" }))).toBe(Code.FailedPrecondition);

    const listed = await alex.contracts.listContracts({});
    expect(listed.contracts.map((c) => [c.id, c.status])).toEqual([
      [second.id, ContractStatus.COMPLETED],
      [first.id, ContractStatus.DECLINED],
    ]);
    expect((await sam.contracts.getBalances({})).balances).toEqual([expect.objectContaining({ receivedMinor: second.terms!.totalMinor })]);
    await sam.panel.stop();
    await alex.panel.stop();
  });
});

describe("mandates through the real server (Claude engine against the local Messages API)", () => {
  let fake: FakeAnthropic;
  let app: TestApp;
  beforeAll(async () => {
    fake = await startFakeAnthropic({ validKey: "sk-ant-test" });
    fake.reply(...Array.from({ length: 400 }, () => scriptedGutterClaude));
    app = await startTestApp({
      AGENT_ENGINE: "claude",
      ANTHROPIC_API_KEY: "sk-ant-test",
      ANTHROPIC_BASE_URL: fake.url,
      ANTHROPIC_MODEL: "claude-test",
      NEGOTIATION_ROUND_TIMEOUT_MS: "60000",
      NEGOTIATION_TOTAL_TIMEOUT_MS: "120000",
    });
  });
  afterAll(async () => {
    await app.close();
    await fake.close();
  });

  async function pairAboveLimit(roomId: string): Promise<{ sam: Person; alex: Person }> {
    const sam = await join(app, roomId, { displayName: "Sam", role: PartyRole.PROVIDER, trade: "roofer" });
    const alex = await join(app, roomId, { displayName: "Alex", role: PartyRole.CLIENT, maxAutoApproveMinor: 10_000n });
    await alex.say("Can you fix the gutter?");
    await sam.say("Four hundred and fifty pounds for the gutter repair.");
    await sam.say("Handshake.");
    return { sam, alex };
  }

  async function pendingApproval(alex: Person) {
    const event = await alex.panel.waitFor((e) => e.event.case === "approvalRequest" && e.event.value.status === ApprovalStatus.PENDING, "approval request");
    if (event.event.case !== "approvalRequest") throw new Error("unreachable");
    return event.event.value;
  }

  it("asks only the paying person; only they may answer, once; approved, the deal is signed and paid", async () => {
    const { sam, alex } = await pairAboveLimit("mandate-1");
    const request = await pendingApproval(alex);
    expect(request).toMatchObject({ userId: alex.userId, amountMinor: 45_000n, limitMinor: 10_000n, currency: "GBP" });
    expect(sam.panel.events.some((e) => e.event.case === "approvalRequest")).toBe(false);

    expect(await codeOf(sam.room.answerApproval({ approvalId: request.id, approve: true }))).toBe(Code.PermissionDenied);
    expect(await codeOf(alex.room.answerApproval({ approvalId: "apr_unknown", approve: true }))).toBe(Code.NotFound);
    expect(await codeOf(alex.room.answerApproval({ approvalId: "", approve: true }))).toBe(Code.InvalidArgument);
    const answered = await alex.room.answerApproval({ approvalId: request.id, approve: true });
    expect(answered.approval?.status).toBe(ApprovalStatus.APPROVED);
    expect(await codeOf(alex.room.answerApproval({ approvalId: request.id, approve: false }))).toBe(Code.FailedPrecondition);

    const contract = await contractOn(alex, ContractStatus.AWAITING_SIGNATURES);
    expect(contract.terms?.totalMinor).toBe(45_000n);
    await signBoth(sam, alex, contract);
    await alex.panel.waitFor((e) => e.event.case === "payment" && e.event.value.status === PaymentStatus.SUCCEEDED, "payment");
    expect(sam.panel.events.some((e) => e.event.case === "approvalRequest")).toBe(false);
    await sam.panel.stop();
    await alex.panel.stop();
  });

  it("declined, the negotiation ends with nothing agreed and the room re-arms", async () => {
    const { sam, alex } = await pairAboveLimit("mandate-2");
    const request = await pendingApproval(alex);
    const answered = await alex.room.answerApproval({ approvalId: request.id, approve: false });
    expect(answered.approval?.status).toBe(ApprovalStatus.DECLINED);
    const ended = await alex.panel.waitFor((e) => e.event.case === "negotiation" && e.event.value.status === NegotiationStatus.REJECTED, "rejected");
    if (ended.event.case !== "negotiation") throw new Error("unreachable");
    expect(ended.event.value.rounds.at(-1)?.fromUserId).toBe(alex.userId);
    await alex.panel.waitFor((e) => e.event.case === "roomStatus" && e.event.value.triggerArmed, "re-armed");
    expect(alex.panel.events.some((e) => e.event.case === "contract")).toBe(false);
    expect((await alex.contracts.listContracts({})).contracts).toHaveLength(0);
    await sam.panel.stop();
    await alex.panel.stop();
  });
});
