import { create } from "@bufbuild/protobuf";
import {
  ContractStatus,
  EscrowHoldStatus,
  LineItemKind,
  MilestoneSchema,
  MilestoneStatus,
  PaymentStatus,
  type Contract,
  type EscrowHold,
  type Milestone,
} from "../../gen/handshake/v1/deal_pb.js";
import { ExecutionStepStatus } from "../../gen/handshake/v1/events_pb.js";
import { FailedPreconditionError, InvalidArgumentError } from "../core/errors.js";
import { formatMoney } from "../core/money.js";
import { holdAmountOf, milestoneAfterHold, partiesOf } from "../deal/milestones-rules.js";
import { PaymentRailError } from "../payments/rail.js";
import { idempotencyKey } from "./idempotency.js";
import { moneyStep, type StepContext } from "./money-step.js";
import { askRail, railPartiesFor, railRequestFor } from "./rail-call.js";

/** How one completed step of the saga is undone. */
export interface UndoStep {
  lineItemId: string;
  /** `release` returns a hold to the payer; `refund` would return an immediate payment. */
  action: "release" | "refund";
  /** The rail reference to undo. */
  railReference: string;
  amountMinor: bigint;
  currency: string;
  /** The key the undo is sent with, derived like every other key. */
  idempotencyKey: string;
  /** False for refunds: no rail offers them yet, so they are never run automatically. */
  supported: boolean;
}

/**
 * The compensation of each completed step, newest first: every HELD hold is undone by a release,
 * every SUCCEEDED immediate payment would be undone by a refund (not supported by the rails).
 */
export function undoPlan(contract: Contract): UndoStep[] {
  const steps: UndoStep[] = [];
  for (const item of contract.terms?.lineItems ?? []) {
    const hold = contract.holds.find((h) => h.lineItemId === item.id && h.status === EscrowHoldStatus.HELD);
    if (hold) {
      steps.push({
        lineItemId: item.id,
        action: "release",
        railReference: hold.railReference,
        amountMinor: hold.amountMinor,
        currency: hold.currency,
        idempotencyKey: idempotencyKey(contract.id, item.id, "release"),
        supported: true,
      });
    }
    const payment = contract.payments.find((p) => p.lineItemId === item.id && p.status === PaymentStatus.SUCCEEDED);
    if (payment) {
      steps.push({
        lineItemId: item.id,
        action: "refund",
        railReference: payment.railReference,
        amountMinor: payment.amountMinor,
        currency: payment.currency,
        // Refunds have no action of their own yet; the key space stays "pay"-derived so it never collides.
        idempotencyKey: `${idempotencyKey(contract.id, item.id, "pay")}:refund`,
        supported: false,
      });
    }
  }
  return steps.reverse();
}

/** Refuses to move money for a contract not signed by every party, or with malformed terms. */
export function validateForExecution(contract: Contract): void {
  const unsigned = contract.parties.filter((p) => !contract.signatures.some((s) => s.userId === p.userId && s.textSha256 === contract.textSha256));
  if (contract.parties.length === 0 || unsigned.length > 0) {
    throw new FailedPreconditionError(`contract ${contract.id} is not signed by every party; no money moves before that`);
  }
  const terms = contract.terms;
  if (!terms || terms.lineItems.length === 0) throw new InvalidArgumentError(`contract ${contract.id} has no line items`);
  if (!/^[A-Z]{3}$/.test(terms.currency)) throw new InvalidArgumentError(`contract ${contract.id} has no valid currency`);
  const ids = new Set<string>();
  for (const item of terms.lineItems) {
    if (!item.id || ids.has(item.id)) throw new InvalidArgumentError(`line item id "${item.id}" is empty or repeated`);
    ids.add(item.id);
    if (item.kind === LineItemKind.UNSPECIFIED) throw new InvalidArgumentError(`line item ${item.id} has no payment kind`);
    if (holdAmountOf(item) <= 0n) throw new InvalidArgumentError(`line item ${item.id} has no positive amount`);
    if (item.range && (item.range.minMinor <= 0n || item.range.minMinor > item.range.maxMinor)) {
      throw new InvalidArgumentError(`line item ${item.id} has an invalid price range`);
    }
  }
}

/** Makes sure every escrow or conditional item has its milestone (drafting normally made them). */
async function ensureMilestones(ctx: StepContext, contract: Contract): Promise<void> {
  for (const item of contract.terms?.lineItems ?? []) {
    if (item.kind === LineItemKind.IMMEDIATE) continue;
    if (contract.milestones.some((m) => m.lineItemId === item.id)) continue;
    const milestone = create(MilestoneSchema, {
      id: `${contract.id}_${item.id}_milestone`,
      contractId: contract.id,
      lineItemId: item.id,
      terms: item.milestone ?? { title: item.description },
      status: MilestoneStatus.PENDING,
      minMinor: item.range?.minMinor ?? item.amountMinor,
      maxMinor: holdAmountOf(item),
      currency: contract.terms?.currency ?? "",
      updatedAtMs: BigInt(ctx.now()),
    });
    await ctx.store.saveMilestone(milestone);
    contract.milestones.push(milestone);
  }
}

/**
 * The forward saga: marks the contract EXECUTING, then runs the pay or hold step of every item
 * not yet answered, in the order of the terms, then `settle`s the status. Safe to run again after
 * a crash: answered steps are skipped and interrupted ones retried with their key. The caller
 * holds the contract's lock.
 */
export async function runSaga(ctx: StepContext, contract: Contract, settle: (contractId: string) => Promise<Contract>): Promise<Contract> {
  validateForExecution(contract);
  const parties = partiesOf(contract);
  const railParties = await railPartiesFor(ctx.store, parties);
  if (contract.status !== ContractStatus.EXECUTING) {
    await ctx.store.setContractStatus(contract.id, ContractStatus.EXECUTING);
    contract.status = ContractStatus.EXECUTING;
    ctx.events.emit({ kind: "contract", roomId: contract.roomId, contractId: contract.id, contract });
  }
  await ensureMilestones(ctx, contract);
  for (const item of contract.terms?.lineItems ?? []) {
    await moneyStep(ctx, item.kind === LineItemKind.IMMEDIATE ? "pay" : "hold", contract, item, parties, railParties);
  }
  return settle(contract.id);
}

/**
 * Compensation: runs the supported undo steps of `undoPlan` (releases of HELD holds, newest first)
 * and records each released hold. Immediate payments stay paid: no rail offers refunds.
 */
export async function undoSaga(ctx: StepContext, contract: Contract): Promise<void> {
  const { store, rail, events, now } = ctx;
  const railParties = await railPartiesFor(store, partiesOf(contract));
  const settledMilestones: Milestone[] = [];
  for (const undo of undoPlan(contract)) {
    if (!undo.supported) continue;
    const hold = contract.holds.find((h) => h.lineItemId === undo.lineItemId && h.railReference === undo.railReference)!;
    const item = contract.terms!.lineItems.find((i) => i.id === undo.lineItemId)!;
    const milestone = contract.milestones.find((m) => m.lineItemId === item.id);
    // The undo is a release like the provider's: its intent first, so a crash mid-call is finished at start.
    if (milestone) {
      await store.recordSettlementIntent({
        idempotencyKey: undo.idempotencyKey,
        contractId: contract.id,
        milestoneId: milestone.id,
        holdId: hold.id,
        action: "release",
        amountMinor: undo.amountMinor,
        createdAtMs: now(),
      });
    }
    const answer = await askRail(() => rail.release(undo.railReference, railRequestFor(contract, item, railParties, undo.idempotencyKey, undo.amountMinor)));
    const money = formatMoney(undo.amountMinor, undo.currency);
    if (answer instanceof PaymentRailError || answer.status !== "released") {
      const reason = answer instanceof PaymentRailError ? answer.message : `unexpected rail answer: ${answer.status}`;
      if (milestone) await store.recordSettlementOutcome({ intentKey: undo.idempotencyKey, milestone });
      events.step(contract, { step: "release", lineItemId: item.id, userId: hold.payerUserId, status: ExecutionStepStatus.FAILED, detail: `Releasing ${money} failed: ${reason}` });
      events.panelError(contract, "release_failed", `Releasing the escrow hold of ${money} failed: ${reason}`, answer instanceof PaymentRailError && answer.retryable);
      continue;
    }
    const released: EscrowHold = { ...hold, status: EscrowHoldStatus.RELEASED, capturedMinor: 0n, failureReason: "", updatedAtMs: BigInt(now()) };
    const next = milestone && milestoneAfterHold(milestone, released);
    if (milestone) {
      // Hold and milestone released together; the milestone is announced with the others after the loop.
      if (next) next.updatedAtMs = BigInt(now());
      await store.recordSettlementOutcome({ intentKey: undo.idempotencyKey, hold: released, milestone: next ?? milestone });
      if (next) settledMilestones.push(next);
    } else {
      await store.recordHoldResult(released);
    }
    events.emit({ kind: "hold", roomId: contract.roomId, contractId: contract.id, hold: released });
    events.step(contract, { step: "release", lineItemId: item.id, userId: hold.payerUserId, status: ExecutionStepStatus.SUCCEEDED, detail: `${money} returned to the client` });
  }
  for (const milestone of settledMilestones) events.emit({ kind: "milestone", roomId: contract.roomId, contractId: contract.id, milestone });
}
