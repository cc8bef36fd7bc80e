import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ContractStatus, EscrowHoldSchema, EscrowHoldStatus, LineItemKind, MilestoneStatus, SignatureSchema, type Contract } from "../../gen/handshake/v1/deal_pb.js";
import { withKillPoint } from "../../src/store/kill-point.js";
import type { Store } from "../../src/store/store.js";
import { CLIENT, PROVIDER, item, openStore, signedContract } from "../support/payment-fixtures.js";
import { describeEachStore } from "../support/store-backends.js";

// The store methods that make one decision one transaction: the last signature with its status,
// a settlement's intent with its decision, and its outcome (hold, milestone, status, intent gone).
// On SQLite and PostgreSQL alike.

describeEachStore((target) => {
  let store: Store;
  let contract: Contract;

  beforeEach(async () => {
    store = await openStore({}, await target.open());
    contract = await signedContract(
      store,
      [item({ id: "parts", description: "Parts", kind: LineItemKind.ESCROW, amountMinor: 5_000n })],
      { signers: [] },
    );
    await store.setContractStatus(contract.id, ContractStatus.AWAITING_SIGNATURES);
  });

  afterEach(async () => {
    await store.close();
  });

  const sign = (userId: string) =>
    store.addSignature(contract.id, create(SignatureSchema, { userId, textSha256: contract.textSha256, signedAtMs: 1n }), {
      statusWhenFullySigned: ContractStatus.EXECUTING,
    });

  describe("settlement records", () => {
    it("moves the contract to the given status in the transaction of its last signature, not before", async () => {
      expect((await sign(PROVIDER)).status).toBe(ContractStatus.AWAITING_SIGNATURES);
      expect((await store.getContract(contract.id))!.status).toBe(ContractStatus.AWAITING_SIGNATURES);
      expect((await sign(CLIENT)).status).toBe(ContractStatus.EXECUTING);
      expect((await store.getContract(contract.id))!.status).toBe(ContractStatus.EXECUTING);
    });

    it("records an intent with its decision, keeps the first for a key, and deletes it with the outcome", async () => {
      await store.recordHoldIntent(
        create(EscrowHoldSchema, {
          id: "hold_1", contractId: contract.id, lineItemId: "parts", payerUserId: CLIENT, payeeUserId: PROVIDER,
          amountMinor: 5_000n, currency: "GBP", status: EscrowHoldStatus.PENDING, idempotencyKey: "hold-key",
        }),
      );
      const hold = (await store.getContract(contract.id))!.holds[0]!;
      const milestone = contract.milestones[0]!;
      const intent = { idempotencyKey: "capture-key", contractId: contract.id, milestoneId: milestone.id, holdId: hold.id, action: "capture" as const, amountMinor: 5_000n, createdAtMs: 7 };
      await store.recordSettlementIntent(intent, { ...milestone, providerConfirmed: true, clientConfirmed: true });
      expect(await store.recordSettlementIntent({ ...intent, amountMinor: 1n })).toEqual(intent);
      expect(await store.listSettlementIntents()).toEqual([intent]);
      expect((await store.getContract(contract.id))!.milestones[0]).toMatchObject({ providerConfirmed: true, clientConfirmed: true });

      await store.recordSettlementOutcome({
        intentKey: intent.idempotencyKey,
        hold: { ...hold, status: EscrowHoldStatus.CAPTURED, capturedMinor: 5_000n },
        milestone: { ...milestone, status: MilestoneStatus.COMPLETED, capturedMinor: 5_000n },
        contractStatus: ContractStatus.COMPLETED,
      });
      const after = (await store.getContract(contract.id))!;
      expect(after.holds[0]).toMatchObject({ status: EscrowHoldStatus.CAPTURED, capturedMinor: 5_000n });
      expect(after.milestones[0]).toMatchObject({ status: MilestoneStatus.COMPLETED, capturedMinor: 5_000n });
      expect(after.status).toBe(ContractStatus.COMPLETED);
      expect(await store.listSettlementIntents()).toEqual([]);
    });

    it("writes nothing of an outcome whose hold does not exist", async () => {
      const milestone = contract.milestones[0]!;
      await expect(
        store.recordSettlementOutcome({
          hold: create(EscrowHoldSchema, { id: "hold_missing", contractId: contract.id, status: EscrowHoldStatus.CAPTURED }),
          milestone: { ...milestone, status: MilestoneStatus.COMPLETED },
          contractStatus: ContractStatus.COMPLETED,
        }),
      ).rejects.toThrow(/not found/);
      const after = (await store.getContract(contract.id))!;
      expect(after.milestones[0]!.status).toBe(MilestoneStatus.PENDING);
      expect(after.status).toBe(ContractStatus.AWAITING_SIGNATURES);
    });

    it("leaves the store untouched by the crash-test hook unless HANDSHAKE_KILL_AT_WRITE is set", () => {
      expect(withKillPoint(store, {})).toBe(store);
      expect(withKillPoint(store, { HANDSHAKE_KILL_AT_WRITE: "" })).toBe(store);
      expect(() => withKillPoint(store, { HANDSHAKE_KILL_AT_WRITE: "zero" })).toThrow(/positive integer/);
      expect(withKillPoint(store, { HANDSHAKE_KILL_AT_WRITE: "5" })).not.toBe(store);
    });
  });
});
