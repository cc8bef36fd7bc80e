import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createClient } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import {
  ContractStatus,
  EscrowHoldStatus,
  LineItemKind,
  MilestoneStatus,
  PaymentRail,
  PaymentStatus,
  type Contract,
} from "../../gen/handshake/v1/deal_pb.js";
import type { PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { NegotiationStyle, PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { AgentProfileSchema } from "../../gen/handshake/v1/profile_pb.js";
import { idempotencyKey } from "../../src/settlement/idempotency.js";
import { grpcTransport, startTestApp, type TestApp } from "../support/app.js";
import { startFakeStripe, type FakeStripe } from "../../src/payments/testing/fake-stripe-server.js";
import { sha256Hex } from "../support/hash.js";
import { draftedContract, joinRoom, roofDeal, startChildServer, startGate, type ChildServer, type Gate, type Person } from "../support/restart.js";
import { bindStripeIds } from "../support/stripe-ids.js";
import { attemptKeyPattern } from "../support/payment-fixtures.js";

type ProfileInit = MessageInitShape<typeof AgentProfileSchema>;

const NEGOTIATION_ENV = { NEGOTIATION_ROUND_TIMEOUT_MS: "20000", NEGOTIATION_TOTAL_TIMEOUT_MS: "60000" };

/** Everything a test started, torn down in reverse whatever happened. */
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "handshake-restart-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function testApp(dataDir: string, env: Record<string, string> = {}): Promise<TestApp> {
  const app = await startTestApp({ ...NEGOTIATION_ENV, ...env }, dataDir);
  cleanups.push(() => app.close());
  return app;
}

/** The Stripe ids the server would have bound (requests may not name them): the payee's account, the payer's card. */
function bindTestStripeIds(dataDir: string, provider: Person, client: Person): void {
  bindStripeIds(dataDir, provider.userId, { stripeAccountId: "acct_test1" });
  bindStripeIds(dataDir, client.userId, { stripeCustomerId: "cus_test1", stripePaymentMethodId: "pm_card_visa" });
}

/** Ends a person's panel stream; its server may already be gone. */
async function leave(...people: Person[]): Promise<void> {
  for (const p of people) await p.panel.stop();
}

const plumber: ProfileInit = {
  displayName: "Sam the plumber",
  role: PartyRole.PROVIDER,
  trade: "plumber",
  rates: [{ description: "boiler repair", amountMinor: 12_000n }],
  style: NegotiationStyle.BALANCED,
};
const alex: ProfileInit = { displayName: "Alex", role: PartyRole.CLIENT, maxAutoApproveMinor: 20_000n };

// The roof deal of test/fixtures/conversations/escrow-range-roofer-gbp.json, from test/support.
const roofer: ProfileInit = roofDeal.provider;
const omar: ProfileInit = roofDeal.client;
const talkRoofDeal = (provider: Person, client: Person) => roofDeal.talk(provider, client);

/** The roofer deal's two line items, checked against what the negotiation produced. */
function roofItems(contract: Contract) {
  const items = contract.terms?.lineItems ?? [];
  const callout = items.find((i) => i.kind === LineItemKind.IMMEDIATE);
  const repair = items.find((i) => i.kind === LineItemKind.ESCROW);
  expect(items).toHaveLength(2);
  expect(callout?.amountMinor).toBe(6_000n);
  expect(repair?.range).toMatchObject({ minMinor: 15_000n, maxMinor: 25_000n });
  return { callout: callout!, repair: repair! };
}

const contractIn = (statuses: ContractStatus[]) => (e: PanelEvent) => e.event.case === "contract" && statuses.includes(e.event.value.status);

describe("restarting the server", () => {
  it("lets the second party sign after a restart between the two signatures, and then pays", async () => {
    const dataDir = await tempDir();
    const first = await testApp(dataDir);
    const provider = await joinRoom(first.baseUrl, "restart-sign", plumber);
    const client = await joinRoom(first.baseUrl, "restart-sign", alex);
    await provider.say("Hi Alex, I can fix your boiler today.");
    await client.say("Great, how much will it cost?");
    await provider.say("It will be one hundred and twenty pounds for the repair.");
    await client.say("That sounds fair. Handshake.");
    const drafted = await draftedContract(provider);
    const afterFirst = await provider.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
    expect(afterFirst.contract?.status).toBe(ContractStatus.AWAITING_SIGNATURES);
    await leave(provider, client);
    await first.close();

    const second = await testApp(dataDir);
    const back = await joinRoom(second.baseUrl, "restart-sign", alex, client.userToken);
    expect(back.userId).toBe(client.userId);
    const stored = (await back.contracts.getContract({ contractId: drafted.id })).contract!;
    expect(stored.status).toBe(ContractStatus.AWAITING_SIGNATURES);
    expect(stored.signatures.map((s) => s.userId)).toEqual([provider.userId]);
    expect(stored.text).toBe(drafted.text);

    const signed = await back.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(stored.text) });
    expect(signed.contract?.signatures).toHaveLength(2);
    const paid = await back.panel.waitFor((e) => e.event.case === "payment" && e.event.value.status === PaymentStatus.SUCCEEDED, "payment");
    if (paid.event.case !== "payment") throw new Error("unreachable");
    const amount = paid.event.value.amountMinor;
    expect(amount).toBeGreaterThan(0n);
    expect(amount).toBeLessThanOrEqual(20_000n);
    await back.panel.waitFor(contractIn([ContractStatus.COMPLETED]), "completed contract");

    const final = (await back.contracts.getContract({ contractId: drafted.id })).contract!;
    expect(final.status).toBe(ContractStatus.COMPLETED);
    expect(final.payments).toEqual([expect.objectContaining({ status: PaymentStatus.SUCCEEDED, amountMinor: amount, payeeUserId: provider.userId })]);
    // The provider's long-lived token still names them on the restarted server.
    const providerBack = await joinRoom(second.baseUrl, "restart-sign", plumber, provider.userToken);
    expect(providerBack.userId).toBe(provider.userId);
    expect((await providerBack.contracts.getBalances({})).balances).toEqual([expect.objectContaining({ currency: "GBP", receivedMinor: amount })]);
    expect((await back.contracts.getBalances({})).balances).toEqual([
      expect.objectContaining({ currency: "GBP", availableMinor: -amount, heldMinor: 0n }),
    ]);
    await leave(back, providerBack);
  }, 60_000);

  it("keeps a signed contract with an escrow milestone listable and actionable after a restart", async () => {
    const dataDir = await tempDir();
    const first = await testApp(dataDir);
    const provider = await joinRoom(first.baseUrl, "restart-escrow", roofer);
    const client = await joinRoom(first.baseUrl, "restart-escrow", omar);
    await talkRoofDeal(provider, client);
    const drafted = await draftedContract(provider);
    const { callout, repair } = roofItems(drafted);
    await provider.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
    await client.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
    await client.panel.waitFor(contractIn([ContractStatus.ACTIVE]), "active contract");
    expect((await client.contracts.getBalances({})).balances).toEqual([expect.objectContaining({ heldMinor: 25_000n })]);
    await leave(provider, client);
    await first.close();

    const second = await testApp(dataDir);
    const clientBack = await joinRoom(second.baseUrl, "restart-escrow", omar, client.userToken);
    const providerBack = await joinRoom(second.baseUrl, "restart-escrow", roofer, provider.userToken);
    const listed = (await clientBack.contracts.listContracts({})).contracts;
    expect(listed.map((c) => c.id)).toEqual([drafted.id]);
    const contract = listed[0]!;
    expect(contract.status).toBe(ContractStatus.ACTIVE);
    expect(contract.signatures).toHaveLength(2);
    expect(contract.payments).toEqual([expect.objectContaining({ lineItemId: callout.id, status: PaymentStatus.SUCCEEDED, amountMinor: 6_000n })]);
    expect(contract.holds).toEqual([expect.objectContaining({ lineItemId: repair.id, status: EscrowHoldStatus.HELD, amountMinor: 25_000n })]);
    const milestone = contract.milestones.find((m) => m.lineItemId === repair.id)!;
    expect(milestone).toMatchObject({ status: MilestoneStatus.PENDING, minMinor: 15_000n, maxMinor: 25_000n });

    const proposed = await providerBack.contracts.proposeMilestoneAmount({ contractId: contract.id, milestoneId: milestone.id, amountMinor: 20_000n });
    expect(proposed.milestone?.status).toBe(MilestoneStatus.AMOUNT_PROPOSED);
    const approved = await clientBack.contracts.approveMilestoneAmount({ contractId: contract.id, milestoneId: milestone.id, amountMinor: 20_000n });
    expect(approved.milestone).toMatchObject({ status: MilestoneStatus.COMPLETED, capturedMinor: 20_000n });

    const final = (await providerBack.contracts.getContract({ contractId: contract.id })).contract!;
    expect(final.status).toBe(ContractStatus.COMPLETED);
    expect(final.holds).toEqual([expect.objectContaining({ status: EscrowHoldStatus.CAPTURED, capturedMinor: 20_000n })]);
    // £60 call-out plus £200 of the £250 hold; the other £50 went back to the client.
    expect((await providerBack.contracts.getBalances({})).balances).toEqual([expect.objectContaining({ currency: "GBP", receivedMinor: 26_000n })]);
    expect((await clientBack.contracts.getBalances({})).balances).toEqual([
      expect.objectContaining({ currency: "GBP", availableMinor: -26_000n, heldMinor: 0n }),
    ]);
    await leave(clientBack, providerBack);
  }, 60_000);

  describe("SIGKILL while a contract's payments are in flight at Stripe", () => {
    const isCreate = (r: { method: string; path: string }) => r.method === "POST" && r.path === "/v1/payment_intents";

    async function childServer(env: Record<string, string>): Promise<ChildServer> {
      const child = await startChildServer(env);
      cleanups.push(() => child.stop("SIGKILL"));
      return child;
    }

    it.each([
      { name: "Stripe carried out the first create but its answer never came back", afterExecuting: true },
      { name: "the first create never reached Stripe's API", afterExecuting: false },
    ])("resumes at start with the same keys and charges exactly once: $name", async ({ afterExecuting }) => {
      const fake: FakeStripe = await startFakeStripe();
      cleanups.push(() => fake.close());
      const gate: Gate = await startGate(fake.url);
      cleanups.push(() => gate.close());
      const dataDir = await tempDir();
      const env = { ...NEGOTIATION_ENV, DATA_DIR: dataDir, PAYMENT_RAIL: "stripe", STRIPE_SECRET_KEY: "sk_test_x", STRIPE_API_BASE: gate.url };
      const providerProfile = roofer;
      const clientProfile = omar;

      // The first PaymentIntent create is left hanging: the process is mid-call when it dies.
      fake.hangNext(isCreate, { afterExecuting });
      const first = await childServer(env);
      const provider = await joinRoom(first.baseUrl, "restart-kill", providerProfile);
      const client = await joinRoom(first.baseUrl, "restart-kill", clientProfile);
      bindTestStripeIds(dataDir, provider, client);
      await talkRoofDeal(provider, client);
      const drafted = await draftedContract(provider);
      const { callout, repair } = roofItems(drafted);
      await provider.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
      await client.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
      // The first request is the start-up check of the key; the first payment call follows it.
      await fake.waitForRequests(2);
      expect(fake.requests[0]).toMatchObject({ method: "GET", path: "/v1/balance" });
      const inFlight = fake.requests[1]!;
      expect(isCreate(inFlight)).toBe(true);
      await first.stop("SIGKILL");
      expect(first.process.signalCode).toBe("SIGKILL");
      await leave(provider, client);
      expect(fake.created()).toBe(afterExecuting ? 1 : 0);

      // A new process on the same database; its resumed Stripe calls wait until we watch the room.
      gate.pause();
      const second = await childServer(env);
      const clientBack = await joinRoom(second.baseUrl, "restart-kill", clientProfile, client.userToken);
      const providerBack = await joinRoom(second.baseUrl, "restart-kill", providerProfile, provider.userToken);
      expect(clientBack.userId).toBe(client.userId);
      gate.open();
      await clientBack.panel.waitFor(
        contractIn([ContractStatus.ACTIVE, ContractStatus.COMPLETED, ContractStatus.PAYMENT_FAILED]),
        "settled contract",
      );
      expect(second.logs.some((l) => l.msg === "resuming contract execution" && l.contractId === drafted.id)).toBe(true);

      const final = (await providerBack.contracts.getContract({ contractId: drafted.id })).contract!;
      expect(final.status).toBe(ContractStatus.ACTIVE);
      expect(final.payments).toEqual([
        expect.objectContaining({ lineItemId: callout.id, status: PaymentStatus.SUCCEEDED, amountMinor: 6_000n, rail: PaymentRail.STRIPE }),
      ]);
      expect(final.holds).toEqual([
        expect.objectContaining({ lineItemId: repair.id, status: EscrowHoldStatus.HELD, amountMinor: 25_000n, rail: PaymentRail.STRIPE }),
      ]);

      // Exactly one PaymentIntent per movement at Stripe, and it is the one the contract records.
      const payKey = idempotencyKey(drafted.id, callout.id, "pay");
      const holdKey = idempotencyKey(drafted.id, repair.id, "hold");
      expect(inFlight.idempotencyKey).toBe(payKey);
      expect(fake.created()).toBe(2);
      const intents = [...fake.intents.values()];
      expect(intents).toHaveLength(2);
      const payIntents = intents.filter((i) => i.metadata.line_item_id === callout.id);
      const holdIntents = intents.filter((i) => i.metadata.line_item_id === repair.id);
      expect(payIntents).toEqual([
        expect.objectContaining({ status: "succeeded", amount: 6_000, amount_received: 6_000, customer: "cus_test1", transfer_data: { destination: "acct_test1" } }),
      ]);
      expect(holdIntents).toEqual([expect.objectContaining({ status: "requires_capture", capture_method: "manual", amount_capturable: 25_000 })]);
      expect(final.payments[0]!.railReference).toBe(payIntents[0]!.id);
      expect(final.holds[0]!.railReference).toBe(holdIntents[0]!.id);

      const creates = fake.requests.filter(isCreate);
      const payCalls = creates.filter((r) => r.idempotencyKey === payKey);
      // The pending payment is looked up at Stripe first, by the metadata it was created with: carried
      // out before the kill, it is found and not sent again; otherwise it is sent again under its key.
      expect(fake.requests.some((r) => r.method === "GET" && r.path === "/v1/payment_intents/search")).toBe(true);
      expect(payCalls).toHaveLength(afterExecuting ? 1 : 2);
      if (!afterExecuting) expect(payCalls[1]!.rawBody).toBe(payCalls[0]!.rawBody);
      expect(creates.filter((r) => r.idempotencyKey === holdKey)).toHaveLength(1);
      expect(creates.every((r) => r.idempotencyKey === payKey || r.idempotencyKey === holdKey)).toBe(true);

      await leave(clientBack, providerBack);
      await second.stop("SIGTERM");
      expect(second.process.exitCode).toBe(0);
    }, 90_000);

    it("finishes an approved milestone capture that was in flight, at start, with the same key: captured once", async () => {
      const isCapture = (r: { method: string; path: string }) => r.method === "POST" && r.path.endsWith("/capture");
      const fake: FakeStripe = await startFakeStripe();
      cleanups.push(() => fake.close());
      const dataDir = await tempDir();
      const env = { ...NEGOTIATION_ENV, DATA_DIR: dataDir, PAYMENT_RAIL: "stripe", STRIPE_SECRET_KEY: "sk_test_x", STRIPE_API_BASE: fake.url };
      const providerProfile = roofer;
      const clientProfile = omar;

      const first = await childServer(env);
      const provider = await joinRoom(first.baseUrl, "restart-capture", providerProfile);
      const client = await joinRoom(first.baseUrl, "restart-capture", clientProfile);
      bindTestStripeIds(dataDir, provider, client);
      await talkRoofDeal(provider, client);
      const drafted = await draftedContract(provider);
      const { repair } = roofItems(drafted);
      await provider.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
      await client.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
      await client.panel.waitFor(contractIn([ContractStatus.ACTIVE]), "active contract");
      const milestone = (await provider.contracts.getContract({ contractId: drafted.id })).contract!.milestones.find((m) => m.lineItemId === repair.id)!;
      await provider.contracts.proposeMilestoneAmount({ contractId: drafted.id, milestoneId: milestone.id, amountMinor: 20_000n });

      // Stripe captures, but its answer never comes back: the process dies mid-call.
      fake.hangNext(isCapture, { afterExecuting: true });
      const approving = client.contracts.approveMilestoneAmount({ contractId: drafted.id, milestoneId: milestone.id, amountMinor: 20_000n }).catch((err: unknown) => err);
      await expect.poll(() => fake.requests.some(isCapture), { timeout: 10_000 }).toBe(true);
      await first.stop("SIGKILL");
      expect(await approving).toBeInstanceOf(Error);
      await leave(provider, client);

      // Nobody acts again: the new process finishes the capture on its own.
      const second = await childServer(env);
      const contractsBack = createClient(ContractService, grpcTransport(second.baseUrl, provider.userToken));
      await expect
        .poll(async () => (await contractsBack.getContract({ contractId: drafted.id })).contract!.status, { timeout: 15_000 })
        .toBe(ContractStatus.COMPLETED);
      const final = (await contractsBack.getContract({ contractId: drafted.id })).contract!;
      expect(final.milestones.find((m) => m.id === milestone.id)).toMatchObject({ status: MilestoneStatus.COMPLETED, capturedMinor: 20_000n });
      expect(final.holds).toEqual([expect.objectContaining({ lineItemId: repair.id, status: EscrowHoldStatus.CAPTURED, capturedMinor: 20_000n })]);
      expect(second.logs.some((l) => l.msg === "resuming an interrupted milestone capture" && l.contractId === drafted.id)).toBe(true);

      // Two capture calls with one key; the second answered from Stripe's idempotency cache.
      const captures = fake.requests.filter(isCapture);
      expect(captures).toHaveLength(2);
      expect(captures[0]!.idempotencyKey).toMatch(attemptKeyPattern(drafted.id, repair.id, "capture", 20_000n));
      expect(captures[1]!.idempotencyKey).toBe(captures[0]!.idempotencyKey);
      expect(captures[1]!.replayed).toBe(true);
      const hold = [...fake.intents.values()].find((i) => i.metadata.line_item_id === repair.id)!;
      expect(hold).toMatchObject({ status: "succeeded", amount_received: 20_000 });

      await second.stop("SIGTERM");
      expect(second.process.exitCode).toBe(0);
    }, 90_000);
  });
});
