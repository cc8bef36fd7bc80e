import {
  ContractStatus,
  EscrowHoldStatus,
  LineItemKind,
  MilestoneStatus,
  PaymentStatus,
  type Contract,
  type EscrowHold,
  type Milestone,
} from "../../gen/handshake/v1/deal_pb.js";
import { ExecutionStepStatus } from "../../gen/handshake/v1/events_pb.js";
import type { Store } from "../store/store.js";
import type { SettlementEvents } from "./settlement-events.js";

/**
 * A contract's status from its payments, holds and milestones: EXECUTING while anything is not yet
 * answered by the rail, PAYMENT_FAILED when a payment or hold failed or lapsed (or a capture or
 * release failed), ACTIVE while holds wait for their milestones, COMPLETED when everything is settled.
 * Contracts not yet signed keep their status.
 */
export function deriveContractStatus(contract: Contract): ContractStatus {
  if (
    contract.status === ContractStatus.AWAITING_SIGNATURES ||
    contract.status === ContractStatus.UNSPECIFIED ||
    contract.status === ContractStatus.DECLINED
  ) {
    return contract.status;
  }
  let pending = false;
  let failed = false;
  let outstanding = false;
  for (const item of contract.terms?.lineItems ?? []) {
    if (item.kind === LineItemKind.IMMEDIATE) {
      // The latest attempt counts: a retry (RetryPayment) adds a record after the failed one.
      const payment = contract.payments.findLast((p) => p.lineItemId === item.id);
      if (!payment || payment.status === PaymentStatus.PENDING) pending = true;
      else if (payment.status === PaymentStatus.FAILED) failed = true;
      continue;
    }
    const hold = contract.holds.findLast((h) => h.lineItemId === item.id);
    const milestone = contract.milestones.find((m) => m.lineItemId === item.id);
    if (milestone?.status === MilestoneStatus.FAILED) failed = true;
    if (!hold || hold.status === EscrowHoldStatus.PENDING) pending = true;
    else if (hold.status === EscrowHoldStatus.FAILED || hold.status === EscrowHoldStatus.EXPIRED) failed = true;
    else if (hold.status === EscrowHoldStatus.HELD) outstanding = true;
  }
  if (pending) return ContractStatus.EXECUTING;
  if (failed) return ContractStatus.PAYMENT_FAILED;
  if (outstanding) return ContractStatus.ACTIVE;
  return ContractStatus.COMPLETED;
}

/**
 * The contract as it will stand once `changes` are recorded (a hold, a milestone), and its
 * derived status: what a settlement writes in the same transaction as its records.
 */
export function contractAfter(contract: Contract, changes: { hold?: EscrowHold; milestone?: Milestone }): { contract: Contract; status: ContractStatus } {
  const { hold, milestone } = changes;
  const after: Contract = {
    ...contract,
    holds: hold ? contract.holds.map((h) => (h.id === hold.id ? hold : h)) : contract.holds,
    milestones: milestone ? contract.milestones.map((m) => (m.id === milestone.id ? milestone : m)) : contract.milestones,
  };
  return { contract: after, status: deriveContractStatus(after) };
}

/**
 * Tells the room about a contract whose status is now `contract.status`: the contract itself,
 * then the "completed" step when it is COMPLETED (or ACTIVE, with `stepWhenActive`).
 */
export function announceStatus(events: SettlementEvents, contract: Contract, stepWhenActive: boolean): void {
  events.emit({ kind: "contract", roomId: contract.roomId, contractId: contract.id, contract });
  if (contract.status === ContractStatus.COMPLETED || (stepWhenActive && contract.status === ContractStatus.ACTIVE)) {
    const held = contract.holds.filter((h) => h.status === EscrowHoldStatus.HELD).length;
    events.step(contract, {
      step: "completed",
      status: ExecutionStepStatus.SUCCEEDED,
      detail: held > 0 ? `Payments made; ${held} escrow hold${held === 1 ? "" : "s"} wait for milestones` : "Every payment made and every milestone settled",
    });
  }
}

/** How `settleStatus` tells the room. */
export interface SettleOptions {
  /** Broadcast the contract even when its status did not change (the saga's last step does). */
  announce: boolean;
  /** Also send the "completed" step when the contract turns ACTIVE (payments made, holds waiting). */
  stepWhenActive: boolean;
}

/**
 * Recomputes and stores a contract's status from its records and broadcasts it when it changed
 * (or when asked). Returns the contract as stored, or undefined when it does not exist.
 */
export async function settleStatus(store: Store, events: SettlementEvents, contractId: string, options: SettleOptions): Promise<Contract | undefined> {
  const contract = await store.getContract(contractId);
  if (!contract) return undefined;
  const status = deriveContractStatus(contract);
  const changed = status !== contract.status;
  if (changed) {
    await store.setContractStatus(contract.id, status);
    contract.status = status;
  }
  if (changed || options.announce) announceStatus(events, contract, options.stepWhenActive);
  return contract;
}
