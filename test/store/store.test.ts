import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ContractStatus,
  EscrowHoldStatus,
  MilestoneStatus,
  NegotiationRoundSchema,
  NegotiationSchema,
  NegotiationStatus,
  PaymentStatus,
  RoundAction,
  SignatureSchema,
} from "../../gen/handshake/v1/deal_pb.js";
import { PanelEventSchema, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { AgentProfileSchema, EscrowPreference, NegotiationStyle, PartyRole, RateUnit } from "../../gen/handshake/v1/profile_pb.js";
import { InvalidCursorError } from "../../src/store/cursor.js";
import {
  availableAccount,
  EXTERNAL_FUNDING_ACCOUNT,
  heldAccount,
  MAX_CONTRACT_PAGE,
  receivedAccount,
} from "../../src/store/sqlite-store.js";
import { StoreConflictError, type LedgerTransaction, type Store } from "../../src/store/store.js";
import { describeEachStore } from "../support/store-backends.js";
import { sampleContract, sampleHold, samplePayment } from "../support/store.js";

// Every case runs against SQLite and PostgreSQL: the two stores answer alike.
describeEachStore((target) => {
  let store: Store;

  beforeEach(async () => {
    store = await target.open();
  });

  afterEach(async () => {
    await store.close();
  });

  /** Closes and reopens the store on the same data, as a restart would. */
  async function restart(): Promise<void> {
    await store.close();
    store = await target.open();
  }

  function event(roomId: string, seq: bigint, text: string): PanelEvent {
    return create(PanelEventSchema, {
      seq,
      atMs: 1_700_000_000_000n + seq,
      roomId,
      event: { case: "error", value: { stage: "test", code: "x", message: text, retryable: false } },
    });
  }

  function fundingTx(key: string, userId: string, amount: bigint, currency = "GBP"): LedgerTransaction {
    return {
      id: `tx-${key}`,
      idempotencyKey: key,
      memo: "top-up",
      atMs: 1_700_000_000_000,
      legs: [
        { account: EXTERNAL_FUNDING_ACCOUNT, currency, amountMinor: -amount },
        { account: availableAccount(userId), currency, amountMinor: amount },
      ],
    };
  }

  describe("users, profiles and secrets", () => {
    it("round-trips a user and refuses a second one with the same id", async () => {
      await store.createUser({ id: "u1", createdAtMs: 1_700_000_000_123 });
      expect(await store.getUser("u1")).toEqual({ id: "u1", createdAtMs: 1_700_000_000_123 });
      expect(await store.getUser("nobody")).toBeUndefined();
      await expect(store.createUser({ id: "u1", createdAtMs: 1 })).rejects.toBeInstanceOf(StoreConflictError);
    });

    it("round-trips a profile, including the write-only Monzo token, and overwrites it", async () => {
      await store.createUser({ id: "u1", createdAtMs: 1 });
      const profile = create(AgentProfileSchema, {
        displayName: "Pat",
        role: PartyRole.PROVIDER,
        trade: "plumber",
        experienceYears: 12,
        rates: [{ description: "call-out", amountMinor: 6_000n, unit: RateUnit.JOB }],
        style: NegotiationStyle.AGGRESSIVE,
        currency: "GBP",
        maxAutoApproveMinor: 9_007_199_254_740_993n, // above 2^53: must not pass through a double
        escrowPreference: EscrowPreference.ABOVE_THRESHOLD,
        escrowThresholdMinor: 10_000n,
        contextDocuments: [{ title: "prices", text: "boiler £2000" }],
        monzoAccessToken: "secret-token",
      });
      await store.saveProfile("u1", profile);
      expect(await store.getProfile("u1")).toEqual(profile);
      const empty = create(AgentProfileSchema, {});
      await store.saveProfile("u1", empty);
      expect(await store.getProfile("u1")).toEqual(empty);
      expect(await store.getProfile("u2")).toBeUndefined();
    });

    it("refuses a profile for an unknown user", async () => {
      await expect(store.saveProfile("ghost", create(AgentProfileSchema, {}))).rejects.toThrow(/does not exist/);
    });

    it("keeps the first value of a secret", async () => {
      expect(await store.getOrCreateSecret("jwt", "first")).toBe("first");
      expect(await store.getOrCreateSecret("jwt", "second")).toBe("first");
      await restart();
      expect(await store.getOrCreateSecret("jwt", "third")).toBe("first");
    });
  });

  describe("negotiations", () => {
    it("round-trips a negotiation with its rounds and replaces them on save", async () => {
      const contract = sampleContract({ id: "c1", providerId: "p", clientId: "c", createdAtMs: 1_000n });
      const negotiation = create(NegotiationSchema, {
        id: "n1",
        roomId: "room-1",
        status: NegotiationStatus.OPEN,
        initiatorUserId: "c",
        maxRounds: 5,
        startedAtMs: 1_000n,
        expiresAtMs: 61_000n,
        rounds: [{ number: 1, fromUserId: "p", action: RoundAction.PROPOSE, proposal: contract.terms, reason: "opening", atMs: 1_100n }],
        currentProposal: contract.terms,
      });
      await store.saveNegotiation(negotiation);
      expect(await store.getNegotiation("n1")).toEqual(negotiation);

      negotiation.rounds.push(create(NegotiationRoundSchema, { number: 2, fromUserId: "c", action: RoundAction.ACCEPT, reason: "fine", atMs: 1_200n }));
      negotiation.status = NegotiationStatus.AGREED;
      await store.saveNegotiation(negotiation);
      const stored = await store.getNegotiation("n1");
      expect(stored).toEqual(negotiation);
      expect(stored?.rounds.map((r) => r.action)).toEqual([RoundAction.PROPOSE, RoundAction.ACCEPT]);
      expect(await store.getNegotiation("n2")).toBeUndefined();
    });
  });

  describe("contracts", () => {
    it("round-trips a drafted contract with its milestones", async () => {
      const contract = sampleContract({ id: "c1", providerId: "p", clientId: "c", createdAtMs: 1_700_000_000_000n });
      await store.insertContract(contract);
      expect(await store.getContract("c1")).toEqual(contract);
      expect(await store.getContract("c2")).toBeUndefined();
    });

    it("refuses a second contract with the same id and a hash that is not the text's", async () => {
      const contract = sampleContract({ id: "c1", providerId: "p", clientId: "c", createdAtMs: 1n });
      await store.insertContract(contract);
      await expect(store.insertContract({ ...contract, text: "changed", textSha256: contract.textSha256 })).rejects.toThrow(/SHA-256/);
      const again = sampleContract({ id: "c1", providerId: "p", clientId: "c", createdAtMs: 2n });
      await expect(store.insertContract(again)).rejects.toBeInstanceOf(StoreConflictError);
      expect((await store.getContract("c1"))?.createdAtMs).toBe(1n);
    });

    it("writes a contract whole or not at all", async () => {
      const contract = sampleContract({ id: "c1", providerId: "p", clientId: "c", createdAtMs: 1n });
      // The second milestone names another contract: the whole insert must roll back.
      contract.milestones.push({ ...contract.milestones[0]!, id: "ms-other", contractId: "c9" });
      await expect(store.insertContract(contract)).rejects.toThrow(/belongs to contract c9/);
      expect(await store.getContract("c1")).toBeUndefined();
      expect((await store.listContractsForUser("p", { limit: 10 })).contracts).toEqual([]);
    });

    it("adds signatures once per party and only for the contract's hash", async () => {
      const contract = sampleContract({ id: "c1", providerId: "p", clientId: "c", createdAtMs: 1n });
      await store.insertContract(contract);
      const sig = create(SignatureSchema, { userId: "p", textSha256: contract.textSha256, signedAtMs: 5n });
      const afterFirst = await store.addSignature("c1", sig);
      expect(afterFirst.signatures).toEqual([sig]);

      await expect(store.addSignature("c1", { ...sig, signedAtMs: 6n })).rejects.toBeInstanceOf(StoreConflictError);
      await expect(store.addSignature("c1", { ...sig, userId: "stranger" })).rejects.toThrow(/not a party/);
      await expect(store.addSignature("c1", { ...sig, userId: "c", textSha256: "0".repeat(64) })).rejects.toThrow(/is for text/);
      await expect(store.addSignature("nope", sig)).rejects.toThrow(/not found/);

      const second = create(SignatureSchema, { userId: "c", textSha256: contract.textSha256, signedAtMs: 7n });
      const signed = await store.addSignature("c1", second);
      expect(signed.signatures).toEqual([sig, second]);
      expect((await store.getContract("c1"))?.signatures).toEqual([sig, second]);
    });

    it("assembles payments, holds and milestones, and finds executing contracts", async () => {
      const contract = sampleContract({ id: "c1", providerId: "p", clientId: "c", createdAtMs: 1n });
      await store.insertContract(contract);
      await store.insertContract(sampleContract({ id: "c2", providerId: "p", clientId: "c", createdAtMs: 2n }));
      const payment = await store.recordPaymentIntent(samplePayment(contract));
      const hold = await store.recordHoldIntent(sampleHold(contract));
      await store.setContractStatus("c1", ContractStatus.EXECUTING);

      const executing = await store.listExecutingContracts();
      expect(executing.map((c) => c.id)).toEqual(["c1"]);
      expect(executing[0]).toEqual({ ...contract, status: ContractStatus.EXECUTING, payments: [payment], holds: [hold] });
      expect(await store.listContractsWithStatus(ContractStatus.ACTIVE)).toEqual([]);
      await store.setContractStatus("c1", ContractStatus.ACTIVE);
      expect((await store.listContractsWithStatus(ContractStatus.ACTIVE)).map((c) => c.id)).toEqual(["c1"]);
      expect(await store.listExecutingContracts()).toEqual([]);
      await expect(store.setContractStatus("nope", ContractStatus.ACTIVE)).rejects.toThrow(/not found/);
    });

    it("saves milestone changes and refuses moving a milestone to another contract", async () => {
      const contract = sampleContract({ id: "c1", providerId: "p", clientId: "c", createdAtMs: 1n });
      await store.insertContract(contract);
      await store.insertContract(sampleContract({ id: "c2", providerId: "p", clientId: "c", createdAtMs: 2n }));
      const milestone = {
        ...contract.milestones[0]!,
        status: MilestoneStatus.AMOUNT_PROPOSED,
        providerConfirmed: true,
        proposedAmountMinor: 15_000n,
        updatedAtMs: 99n,
      };
      await store.saveMilestone(milestone);
      expect((await store.getContract("c1"))?.milestones).toEqual([milestone]);

      const cleared = { ...milestone, proposedAmountMinor: 0n, clientConfirmed: true, status: MilestoneStatus.COMPLETED, capturedMinor: 15_000n };
      await store.saveMilestone(cleared);
      expect((await store.getContract("c1"))?.milestones).toEqual([cleared]);

      await expect(store.saveMilestone({ ...milestone, contractId: "c2" })).rejects.toBeInstanceOf(StoreConflictError);
      await expect(store.saveMilestone({ ...milestone, id: "ms-new", contractId: "ghost" })).rejects.toThrow(/does not exist/);
    });

    it("pages a user's contracts newest first with an opaque cursor", async () => {
      // 7 contracts for "a" (two share a timestamp, so the id breaks the tie), 2 for someone else.
      const ids = ["k1", "k2", "k3", "k4", "k5", "k6", "k7"];
      for (const [i, id] of ids.entries()) {
        await store.insertContract(sampleContract({ id, providerId: i % 2 ? "a" : "b", clientId: i % 2 ? "b" : "a", createdAtMs: BigInt(i === 6 ? 5 : i) }));
      }
      await store.insertContract(sampleContract({ id: "x1", providerId: "b", clientId: "z", createdAtMs: 100n }));
      await store.insertContract(sampleContract({ id: "x2", providerId: "y", clientId: "z", createdAtMs: 101n }));

      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await store.listContractsForUser("a", cursor === undefined ? { limit: 3 } : { limit: 3, cursor });
        expect(page.contracts.length).toBeLessThanOrEqual(3);
        seen.push(...page.contracts.map((c) => c.id));
        cursor = page.nextCursor;
        pages++;
      } while (cursor !== undefined);
      // Created at: k1 0, k2 1, k3 2, k4 3, k5 4, k6 5, k7 5 → newest first, id descending on ties.
      expect(seen).toEqual(["k7", "k6", "k5", "k4", "k3", "k2", "k1"]);
      expect(pages).toBe(3);

      const exact = await store.listContractsForUser("z", { limit: 2 });
      expect(exact.contracts.map((c) => c.id)).toEqual(["x2", "x1"]);
      expect(exact.nextCursor).toBeUndefined();
      const full = (await store.listContractsForUser("a", { limit: 1 })).contracts[0];
      expect(full).toEqual(await store.getContract("k7"));

      await expect(store.listContractsForUser("a", { limit: 3, cursor: "not-a-cursor" })).rejects.toBeInstanceOf(InvalidCursorError);
      await expect(store.listContractsForUser("a", { limit: 0 })).rejects.toBeInstanceOf(RangeError);
      expect((await store.listContractsForUser("a", { limit: MAX_CONTRACT_PAGE + 50 })).contracts).toHaveLength(7);
      expect(await store.listContractsForUser("nobody", { limit: 5 })).toEqual({ contracts: [] });
    });
  });

  describe("payment and hold intents", () => {
    it("records a payment intent once per idempotency key and its result", async () => {
      const contract = sampleContract({ id: "c1", providerId: "p", clientId: "c", createdAtMs: 1n });
      await store.insertContract(contract);
      const intent = samplePayment(contract);
      expect(await store.recordPaymentIntent(intent)).toEqual(intent);
      expect(await store.recordPaymentIntent(intent)).toEqual(intent);
      // A retry with a new id but the same key gets the first record back.
      expect(await store.recordPaymentIntent({ ...intent, id: "pay-retry", amountMinor: 1n })).toEqual(intent);
      expect(await store.listPendingIntents()).toEqual({ payments: [intent], holds: [] });

      const result = { ...intent, status: PaymentStatus.SUCCEEDED, railReference: "ltx-1", updatedAtMs: 50n };
      await store.recordPaymentResult(result);
      expect(await store.getPaymentByRailReference("ltx-1")).toEqual(result);
      expect(await store.getPaymentByRailReference("")).toBeUndefined();
      expect(await store.getPaymentByRailReference("other")).toBeUndefined();
      expect(await store.listPendingIntents()).toEqual({ payments: [], holds: [] });
      expect((await store.getContract("c1"))?.payments).toEqual([result]);

      await expect(store.recordPaymentResult({ ...result, id: "ghost" })).rejects.toThrow(/not found/);
      await expect(store.recordPaymentIntent({ ...intent, idempotencyKey: "other-key" })).rejects.toBeInstanceOf(StoreConflictError);
      await expect(store.recordPaymentIntent({ ...intent, id: "p2", idempotencyKey: "k2", contractId: "ghost" })).rejects.toThrow(/does not exist/);
      await expect(store.recordPaymentIntent({ ...intent, id: "p3", idempotencyKey: "" })).rejects.toThrow(/must not be empty/);
    });

    it("records a hold intent once per idempotency key, and its result with capture and expiry", async () => {
      const contract = sampleContract({ id: "c1", providerId: "p", clientId: "c", createdAtMs: 1n });
      await store.insertContract(contract);
      const intent = sampleHold(contract);
      expect(await store.recordHoldIntent(intent)).toEqual(intent);
      expect(await store.recordHoldIntent(intent)).toEqual(intent);
      expect(await store.recordHoldIntent({ ...intent, id: "hold-retry" })).toEqual(intent);
      expect((await store.listPendingIntents()).holds).toEqual([intent]);

      const held = { ...intent, status: EscrowHoldStatus.HELD, railReference: "pi_123", expiresAtMs: 1_800_000_000_000n, updatedAtMs: 60n };
      await store.recordHoldResult(held);
      expect(await store.getHoldByRailReference("pi_123")).toEqual(held);
      const captured = { ...held, status: EscrowHoldStatus.CAPTURED, capturedMinor: 15_000n, updatedAtMs: 70n };
      await store.recordHoldResult(captured);
      expect((await store.getContract("c1"))?.holds).toEqual([captured]);
      expect(await store.getHoldByRailReference("")).toBeUndefined();
      expect((await store.listPendingIntents()).holds).toEqual([]);
      await expect(store.recordHoldResult({ ...captured, id: "ghost" })).rejects.toThrow(/not found/);
    });
  });

  describe("ledger", () => {
    it("posts balanced transactions once per key and sums balances exactly", async () => {
      const big = 9_007_199_254_740_993n; // 2^53 + 1
      const first = await store.postLedgerTransaction(fundingTx("fund-1", "u1", big));
      expect(first.replayed).toBe(false);
      expect(await store.postLedgerTransaction(fundingTx("fund-1", "u1", big))).toEqual({ transaction: first.transaction, replayed: true });
      const replay = await store.postLedgerTransaction({ ...fundingTx("fund-1", "u1", 1n), id: "tx-other" });
      expect(replay.replayed).toBe(true);
      expect(replay.transaction).toEqual(first.transaction);
      expect(await store.getLedgerBalance(availableAccount("u1"), "GBP")).toBe(big);
      expect(await store.getLedgerBalance(EXTERNAL_FUNDING_ACCOUNT, "GBP")).toBe(-big);
      expect(await store.getLedgerBalance(availableAccount("u1"), "EUR")).toBe(0n);
    });

    it("refuses unbalanced and malformed transactions and writes nothing for them", async () => {
      const tx = fundingTx("bad", "u1", 100n);
      tx.legs[1]!.amountMinor = 99n;
      await expect(store.postLedgerTransaction(tx)).rejects.toThrow(/unbalanced/);
      // Balanced in total but not per currency.
      await expect(
        store.postLedgerTransaction({
          ...fundingTx("mixed", "u1", 100n),
          legs: [
            { account: "a", currency: "GBP", amountMinor: -100n },
            { account: "b", currency: "EUR", amountMinor: 100n },
          ],
        }),
      ).rejects.toThrow(/unbalanced/);
      await expect(store.postLedgerTransaction({ ...fundingTx("empty", "u1", 1n), legs: [] })).rejects.toThrow(/no legs/);
      await expect(store.postLedgerTransaction(fundingTx("lower", "u1", 1n, "gbp"))).rejects.toThrow(/ISO 4217/);
      await expect(store.postLedgerTransaction({ ...fundingTx("", "u1", 1n) })).rejects.toThrow(/must not be empty/);
      expect(await store.getLedgerBalance(availableAccount("u1"), "GBP")).toBe(0n);

      await store.postLedgerTransaction(fundingTx("ok", "u1", 5n));
      await expect(store.postLedgerTransaction({ ...fundingTx("ok-2", "u1", 5n), id: "tx-ok" })).rejects.toBeInstanceOf(StoreConflictError);
    });

    it("reports a user's available, held and received balances per currency", async () => {
      await store.postLedgerTransaction(fundingTx("fund-gbp", "payer", 100_000n));
      await store.postLedgerTransaction(fundingTx("fund-eur", "payer", 700n, "EUR"));
      await store.postLedgerTransaction({
        id: "tx-hold",
        idempotencyKey: "c1:item-2:hold",
        memo: "hold",
        atMs: 2,
        legs: [
          { account: availableAccount("payer"), currency: "GBP", amountMinor: -20_000n },
          { account: heldAccount("payer"), currency: "GBP", amountMinor: 20_000n },
        ],
      });
      await store.postLedgerTransaction({
        id: "tx-capture",
        idempotencyKey: "c1:item-2:capture",
        memo: "capture",
        atMs: 3,
        legs: [
          { account: heldAccount("payer"), currency: "GBP", amountMinor: -15_000n },
          { account: receivedAccount("payee"), currency: "GBP", amountMinor: 15_000n },
          { account: heldAccount("payer"), currency: "GBP", amountMinor: -5_000n },
          { account: availableAccount("payer"), currency: "GBP", amountMinor: 5_000n },
        ],
      });
      await store.postLedgerTransaction({
        id: "tx-hold-2",
        idempotencyKey: "c2:item-2:hold",
        memo: "hold",
        atMs: 4,
        legs: [
          { account: availableAccount("payer"), currency: "GBP", amountMinor: -1_000n },
          { account: heldAccount("payer"), currency: "GBP", amountMinor: 1_000n },
        ],
      });
      const payer = await store.getBalances("payer");
      expect(payer.map((b) => [b.currency, b.availableMinor, b.heldMinor, b.receivedMinor])).toEqual([
        ["EUR", 700n, 0n, 0n],
        ["GBP", 84_000n, 1_000n, 0n],
      ]);
      const payee = await store.getBalances("payee");
      expect(payee.map((b) => [b.currency, b.availableMinor, b.heldMinor, b.receivedMinor])).toEqual([["GBP", 0n, 0n, 15_000n]]);
      expect(await store.getBalances("stranger")).toEqual([]);
    });
  });

  describe("room event log", () => {
    it("appends, trims to the newest `keep`, and loads after a sequence number in order", async () => {
      await store.appendRoomEvents("r1", [event("r1", 1n, "a"), event("r1", 2n, "b"), event("r1", 3n, "c")], 4);
      await store.appendRoomEvents("r2", [event("r2", 1n, "other")], 4);
      await store.appendRoomEvents("r1", [event("r1", 4n, "d"), event("r1", 5n, "e"), event("r1", 6n, "f")], 4);

      const kept = await store.loadRoomEvents("r1", 0n);
      expect(kept.map((e) => e.seq)).toEqual([3n, 4n, 5n, 6n]);
      expect(kept[0]).toEqual(event("r1", 3n, "c"));
      expect((await store.loadRoomEvents("r1", 4n)).map((e) => e.seq)).toEqual([5n, 6n]);
      expect(await store.loadRoomEvents("r1", 6n)).toEqual([]);
      expect(await store.lastRoomSeq("r1")).toBe(6n);
      expect(await store.loadRoomEvents("r2", 0n)).toEqual([event("r2", 1n, "other")]);
      expect(await store.lastRoomSeq("empty")).toBe(0n);
    });

    it("refuses a sequence number twice, atomically", async () => {
      await store.appendRoomEvents("r1", [event("r1", 1n, "a")], 10);
      await expect(store.appendRoomEvents("r1", [event("r1", 2n, "b"), event("r1", 1n, "again")], 10)).rejects.toBeInstanceOf(StoreConflictError);
      expect((await store.loadRoomEvents("r1", 0n)).map((e) => e.seq)).toEqual([1n]);
      await expect(store.appendRoomEvents("r1", [event("r1", 0n, "zero")], 10)).rejects.toBeInstanceOf(RangeError);
      await expect(store.appendRoomEvents("r1", [], 0)).rejects.toBeInstanceOf(RangeError);
    });
  });

  describe("lifetime", () => {
    it("keeps everything across close and reopen", async () => {
      await store.createUser({ id: "p", createdAtMs: 1 });
      const contract = sampleContract({ id: "c1", providerId: "p", clientId: "c", createdAtMs: 10n });
      await store.insertContract(contract);
      const signed = await store.addSignature("c1", { ...create(SignatureSchema, {}), userId: "p", textSha256: contract.textSha256, signedAtMs: 11n });
      await store.recordPaymentIntent(samplePayment(contract));
      await store.recordHoldIntent(sampleHold(contract));
      await store.postLedgerTransaction(fundingTx("f", "c", 500n));
      await store.appendRoomEvents("room-1", [event("room-1", 1n, "x")], 10);
      const before = await store.getContract("c1");

      await restart();
      expect(await store.getUser("p")).toEqual({ id: "p", createdAtMs: 1 });
      expect(await store.getContract("c1")).toEqual(before);
      expect(before?.signatures).toEqual(signed.signatures);
      expect((await store.listPendingIntents()).payments).toHaveLength(1);
      expect(await store.getLedgerBalance(availableAccount("c"), "GBP")).toBe(500n);
      expect(await store.lastRoomSeq("room-1")).toBe(1n);
    });

    it("closes twice without error and refuses use after close", async () => {
      await store.close();
      await store.close();
      await expect(store.getUser("u")).rejects.toThrow(/closed/);
      store = await target.open();
    });

    it.runIf(target.kind === "sqlite")("runs in WAL mode with foreign keys on", async () => {
      const { default: Database } = await import("better-sqlite3");
      const db = new Database(target.location().databasePath, { readonly: true });
      try {
        expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
      } finally {
        db.close();
      }
      // Foreign keys are per connection: the store's own connection shows them by refusing orphans.
      await expect(store.recordHoldIntent(sampleHold(sampleContract({ id: "ghost", providerId: "p", clientId: "c", createdAtMs: 1n })))).rejects.toThrow(
        /does not exist/,
      );
    });
  });
});
