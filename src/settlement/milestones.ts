import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import {
  ContractStatus,
  EscrowHoldStatus,
  MilestoneStatus,
  type Contract,
  type EscrowHold,
  type LineItem,
  type Milestone,
} from "../../gen/handshake/v1/deal_pb.js";
import { ExecutionStepSchema, ExecutionStepStatus, PanelErrorSchema } from "../../gen/handshake/v1/events_pb.js";
import { silentLogger } from "../core/log.js";
import { PaymentRailError, type PaymentRail, type RailRequest } from "../payments/rail.js";
import type { Store } from "../store/store.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError } from "../core/errors.js";
import {
  deriveContractStatus,
  partiesOf,
  railPartiesFor,
  sharedContractLock,
  type ContractParties,
  type ExecutionEventListener,
  type KeyedLock,
  askRail,
} from "./execution.js";
import { idempotencyKey } from "./idempotency.js";
import { formatMoney } from "../core/money.js";

/** Options of the milestone service. */
export interface MilestoneServiceOptions {
  store: Store;
  rail: PaymentRail;
  onEvent: ExecutionEventListener;
  /** Clock, Unix ms. */
  now?: () => number;
  /** Shared with the executor by default, so a contract's money is touched by one task at a time. */
  lock?: KeyedLock;
  log?: Logger;
}

/**
 * Milestone actions of the parties, each returning the milestone as it now stands. Errors are
 * the deal layer's named errors: NotFoundError, PermissionDeniedError, FailedPreconditionError,
 * InvalidArgumentError. A capture or release the rail refuses is not thrown: the milestone comes
 * back FAILED with its reason (also broadcast), and the same action may be tried again.
 */
export interface MilestoneService {
  /** A party says the milestone is done; when both have (fixed amount), the hold is captured in full. */
  confirm(userId: string, contractId: string, milestoneId: string): Promise<Milestone>;
  /** The provider proposes the final amount of a ranged milestone, within [min, max]. */
  proposeAmount(userId: string, contractId: string, milestoneId: string, amountMinor: bigint): Promise<Milestone>;
  /** The client approves the proposed amount (must equal it): that much is captured, the rest released. */
  approveAmount(userId: string, contractId: string, milestoneId: string, amountMinor: bigint): Promise<Milestone>;
  /** The provider releases the hold back to the client. */
  release(userId: string, contractId: string, milestoneId: string): Promise<Milestone>;
  /**
   * At start-up: finishes captures the parties had decided (both confirmed, or an amount
   * approved) but the process died during, with the same idempotency key, so the rail answers
   * with its first outcome if it had already moved the money. Resolves with the milestones it
   * settled or failed.
   */
  resumeInterrupted(contractId: string): Promise<Milestone[]>;
}

/** Everything one action needs, read in one go under the contract's lock. */
interface Scene {
  contract: Contract;
  parties: ContractParties;
  role: "client" | "provider";
  milestone: Milestone;
  item: LineItem;
  hold: EscrowHold | undefined;
  /** The final amount is a range, agreed by proposal and approval. */
  ranged: boolean;
}

/**
 * Creates the milestone service. Rules: only the contract's parties act (else PermissionDenied).
 * A fixed-amount milestone is captured in full once provider and client have both confirmed. A
 * ranged one needs a final amount: the provider proposes it (which also counts as the provider's
 * confirmation), the client approves exactly that amount (their confirmation), and it is captured,
 * the rest released. A client's plain confirm of a ranged milestone is refused (FailedPrecondition)
 * because it carries no amount. The provider may release the hold instead, refunding the client.
 *
 * Idempotent: repeating an action that already took effect returns the milestone unchanged and
 * never captures twice (the capture key is derived from contract + line item, and settled
 * milestones are final). The confirmation is saved before the capture call, so if the process
 * dies in between, `resumeInterrupted` at the next start (or confirming again) retries the capture
 * with the same key.
 */
export function createMilestoneService(options: MilestoneServiceOptions): MilestoneService {
  const { store, rail } = options;
  const now = options.now ?? Date.now;
  const lock = options.lock ?? sharedContractLock;
  const log = (options.log ?? silentLogger).child({ component: "milestones" });

  const emit: ExecutionEventListener = (event) => {
    try {
      options.onEvent(event);
    } catch (err) {
      log.error({ err, kind: event.kind, contractId: event.contractId }, "milestone event listener threw");
    }
  };

  async function scene(userId: string, contractId: string, milestoneId: string): Promise<Scene> {
    const contract = await store.getContract(contractId);
    if (!contract) throw new NotFoundError(`contract ${contractId} not found`);
    if (!contract.parties.some((p) => p.userId === userId)) {
      throw new PermissionDeniedError("you are not a party to this contract");
    }
    return sceneOf(contract, userId, milestoneId);
  }

  function sceneOf(contract: Contract, userId: string, milestoneId: string): Scene {
    const parties = partiesOf(contract);
    const milestone = contract.milestones.find((m) => m.id === milestoneId);
    if (!milestone) throw new NotFoundError(`milestone ${milestoneId} not found in contract ${contract.id}`);
    const item = contract.terms?.lineItems.find((i) => i.id === milestone.lineItemId);
    if (!item) throw new NotFoundError(`line item ${milestone.lineItemId} of milestone ${milestoneId} not found`);
    const role = userId === parties.providerUserId ? "provider" : "client";
    const hold = contract.holds.find((h) => h.lineItemId === milestone.lineItemId);
    return { contract, parties, role, milestone, item, hold, ranged: milestone.minMinor < milestone.maxMinor };
  }

  function isSettled(milestone: Milestone): boolean {
    return milestone.status === MilestoneStatus.COMPLETED || milestone.status === MilestoneStatus.RELEASED;
  }

  function requireHeld(s: Scene): EscrowHold {
    if (!s.hold || s.hold.status !== EscrowHoldStatus.HELD) {
      const state = s.hold ? EscrowHoldStatus[s.hold.status].toLowerCase() : "not placed";
      throw new FailedPreconditionError(`the escrow hold for this milestone is not in place (it is ${state})`);
    }
    return s.hold;
  }

  async function save(s: Scene, milestone: Milestone): Promise<Milestone> {
    milestone.updatedAtMs = BigInt(now());
    await store.saveMilestone(milestone);
    emit({ kind: "milestone", roomId: s.contract.roomId, contractId: s.contract.id, milestone });
    return milestone;
  }

  function step(s: Scene, name: string, status: ExecutionStepStatus, detail: string): void {
    emit({
      kind: "step",
      roomId: s.contract.roomId,
      contractId: s.contract.id,
      step: create(ExecutionStepSchema, {
        contractId: s.contract.id,
        step: name,
        lineItemId: s.item.id,
        userId: s.parties.clientUserId,
        status,
        detail,
      }),
    });
  }

  async function request(s: Scene, hold: EscrowHold, action: "capture" | "release", amountMinor: bigint): Promise<RailRequest> {
    return {
      ...(await railPartiesFor(store, s.parties)),
      idempotencyKey: idempotencyKey(s.contract.id, s.item.id, action),
      amountMinor,
      currency: hold.currency,
      description: `${s.contract.title}: ${s.item.description}`.slice(0, 500),
      contractId: s.contract.id,
      lineItemId: s.item.id,
    };
  }

  /** Records a refused capture or release on the milestone (the hold stays as it was). */
  async function failed(s: Scene, milestone: Milestone, what: string, reason: string, retryable: boolean): Promise<Milestone> {
    const result = await save(s, { ...milestone, status: MilestoneStatus.FAILED, failureReason: reason });
    step(s, what, ExecutionStepStatus.FAILED, `${what === "capture" ? "Paying out" : "Releasing"} "${s.item.description}" failed: ${reason}`);
    emit({
      kind: "error",
      roomId: s.contract.roomId,
      contractId: s.contract.id,
      error: create(PanelErrorSchema, { stage: "payment", code: `${what}_failed`, message: `${what === "capture" ? "Paying out" : "Releasing"} "${s.item.description}" failed: ${reason}`, retryable }),
    });
    log.warn({ contractId: s.contract.id, milestoneId: milestone.id, what, reason }, "milestone settlement refused by the rail");
    await settleContract(s.contract.id);
    return result;
  }

  async function capture(s: Scene, milestone: Milestone, amountMinor: bigint): Promise<Milestone> {
    const hold = requireHeld(s);
    const money = formatMoney(amountMinor, hold.currency);
    step(s, "capture", ExecutionStepStatus.STARTED, `Paying ${money} to ${s.parties.providerName} from escrow`);
    const answer = await askRail(async () => rail.capture(hold.railReference, await request(s, hold, "capture", amountMinor)));
    if (answer instanceof PaymentRailError) return failed(s, milestone, "capture", answer.message, answer.retryable);
    if (answer.status !== "captured" && answer.status !== "succeeded") {
      return failed(s, milestone, "capture", answer.failureReason || `unexpected rail answer: ${answer.status}`, false);
    }
    const captured = answer.capturedMinor ?? amountMinor;
    const updatedHold: EscrowHold = { ...hold, status: EscrowHoldStatus.CAPTURED, capturedMinor: captured, failureReason: "", updatedAtMs: BigInt(now()) };
    await store.recordHoldResult(updatedHold);
    emit({ kind: "hold", roomId: s.contract.roomId, contractId: s.contract.id, hold: updatedHold });
    const done = await save(s, { ...milestone, status: MilestoneStatus.COMPLETED, capturedMinor: captured, failureReason: "" });
    const rest = hold.amountMinor - captured;
    step(
      s,
      "capture",
      ExecutionStepStatus.SUCCEEDED,
      `${formatMoney(captured, hold.currency)} paid to ${s.parties.providerName}` +
        (rest > 0n ? `; ${formatMoney(rest, hold.currency)} returned to ${s.parties.clientName}` : ""),
    );
    await settleContract(s.contract.id);
    return done;
  }

  async function settleContract(contractId: string): Promise<void> {
    const contract = await store.getContract(contractId);
    if (!contract) return;
    const status = deriveContractStatus(contract);
    if (status === contract.status) return;
    await store.setContractStatus(contractId, status);
    contract.status = status;
    emit({ kind: "contract", roomId: contract.roomId, contractId, contract });
    if (status === ContractStatus.COMPLETED) {
      emit({
        kind: "step",
        roomId: contract.roomId,
        contractId,
        step: create(ExecutionStepSchema, { contractId, step: "completed", status: ExecutionStepStatus.SUCCEEDED, detail: "Every payment made and every milestone settled" }),
      });
    }
  }

  /** The amount the parties decided to capture, when they did and it is not done yet. */
  function decidedCapture(s: Scene): bigint | undefined {
    const { milestone, hold } = s;
    if (isSettled(milestone) || milestone.status === MilestoneStatus.FAILED || hold?.status !== EscrowHoldStatus.HELD) return undefined;
    if (!s.ranged) return milestone.providerConfirmed && milestone.clientConfirmed ? hold.amountMinor : undefined;
    const approved = milestone.status === MilestoneStatus.AMOUNT_PROPOSED && milestone.clientConfirmed && milestone.proposedAmountMinor > 0n;
    return approved ? milestone.proposedAmountMinor : undefined;
  }

  return {
    resumeInterrupted: (contractId) =>
      lock.run(contractId, async () => {
        const contract = await store.getContract(contractId);
        if (!contract) throw new NotFoundError(`contract ${contractId} not found`);
        const resumed: Milestone[] = [];
        for (const { id } of contract.milestones) {
          // Read again each time: a capture settles the contract and updates its holds.
          const current = await store.getContract(contractId);
          if (!current) break;
          const s = sceneOf(current, partiesOf(current).providerUserId, id);
          const amount = decidedCapture(s);
          if (amount === undefined) continue;
          log.info({ contractId, milestoneId: id }, "resuming an interrupted milestone capture");
          resumed.push(await capture(s, s.milestone, amount));
        }
        return resumed;
      }),

    confirm: (userId, contractId, milestoneId) =>
      lock.run(contractId, async () => {
        const s = await scene(userId, contractId, milestoneId);
        const { milestone } = s;
        if (isSettled(milestone)) return milestone;
        if (s.ranged && s.role === "client") {
          throw new FailedPreconditionError(
            "this milestone's price is a range: the provider proposes the final amount and you approve it (ApproveMilestoneAmount)",
          );
        }
        const flag = s.role === "provider" ? "providerConfirmed" : "clientConfirmed";
        const wasSet = milestone[flag];
        const bothAfter = s.role === "provider" ? milestone.clientConfirmed : milestone.providerConfirmed;
        // A retry after a refused capture: both had confirmed, so try the capture again (same key).
        const retryCapture = milestone.status === MilestoneStatus.FAILED && milestone.providerConfirmed && milestone.clientConfirmed && !s.ranged;
        if (wasSet && !retryCapture) return milestone;
        requireHeld(s);
        const confirmed = wasSet ? milestone : await save(s, { ...milestone, [flag]: true });
        if (!s.ranged && (bothAfter || retryCapture)) return capture(s, confirmed, s.hold?.amountMinor ?? milestone.maxMinor);
        return confirmed;
      }),

    proposeAmount: (userId, contractId, milestoneId, amountMinor) =>
      lock.run(contractId, async () => {
        const s = await scene(userId, contractId, milestoneId);
        const { milestone } = s;
        if (s.role !== "provider") throw new PermissionDeniedError("only the provider proposes the final amount");
        if (isSettled(milestone)) throw new FailedPreconditionError("this milestone is already settled");
        if (!s.ranged) throw new FailedPreconditionError("this milestone has a fixed amount; confirm it instead");
        if (amountMinor < milestone.minMinor || amountMinor > milestone.maxMinor) {
          throw new InvalidArgumentError(
            `amount_minor must be between ${milestone.minMinor} and ${milestone.maxMinor} (${formatMoney(milestone.minMinor, milestone.currency)}–${formatMoney(milestone.maxMinor, milestone.currency)})`,
          );
        }
        requireHeld(s);
        if (milestone.status === MilestoneStatus.AMOUNT_PROPOSED && milestone.proposedAmountMinor === amountMinor) return milestone;
        // A new amount needs a new approval; proposing it is the provider's confirmation.
        return save(s, {
          ...milestone,
          status: MilestoneStatus.AMOUNT_PROPOSED,
          proposedAmountMinor: amountMinor,
          providerConfirmed: true,
          clientConfirmed: false,
          failureReason: "",
        });
      }),

    approveAmount: (userId, contractId, milestoneId, amountMinor) =>
      lock.run(contractId, async () => {
        const s = await scene(userId, contractId, milestoneId);
        const { milestone } = s;
        if (s.role !== "client") throw new PermissionDeniedError("only the client approves the final amount");
        if (milestone.status === MilestoneStatus.COMPLETED && milestone.capturedMinor === amountMinor) return milestone;
        if (isSettled(milestone)) throw new FailedPreconditionError("this milestone is already settled");
        const proposed = milestone.proposedAmountMinor;
        const retry = milestone.status === MilestoneStatus.FAILED && milestone.clientConfirmed && proposed > 0n;
        if (milestone.status !== MilestoneStatus.AMOUNT_PROPOSED && !retry) {
          throw new FailedPreconditionError("no final amount has been proposed for this milestone yet");
        }
        if (proposed === 0n || amountMinor !== proposed) {
          throw new FailedPreconditionError(
            `the proposed amount is ${proposed === 0n ? "unset" : formatMoney(proposed, milestone.currency)}, not ${formatMoney(amountMinor, milestone.currency)}; reload and approve what is proposed`,
          );
        }
        requireHeld(s);
        // Saved before the capture call: the approval is the record of what to capture.
        const approved = milestone.clientConfirmed ? milestone : await save(s, { ...milestone, clientConfirmed: true });
        return capture(s, approved, proposed);
      }),

    release: (userId, contractId, milestoneId) =>
      lock.run(contractId, async () => {
        const s = await scene(userId, contractId, milestoneId);
        const { milestone } = s;
        if (s.role !== "provider") throw new PermissionDeniedError("only the provider may release the escrow to the client");
        if (milestone.status === MilestoneStatus.RELEASED) return milestone;
        if (milestone.status === MilestoneStatus.COMPLETED) throw new FailedPreconditionError("this milestone was already paid out");
        const hold = requireHeld(s);
        const money = formatMoney(hold.amountMinor, hold.currency);
        step(s, "release", ExecutionStepStatus.STARTED, `Returning ${money} to ${s.parties.clientName}`);
        const answer = await askRail(async () => rail.release(hold.railReference, await request(s, hold, "release", hold.amountMinor)));
        if (answer instanceof PaymentRailError) return failed(s, milestone, "release", answer.message, answer.retryable);
        if (answer.status !== "released") {
          return failed(s, milestone, "release", answer.failureReason || `unexpected rail answer: ${answer.status}`, false);
        }
        const updatedHold: EscrowHold = { ...hold, status: EscrowHoldStatus.RELEASED, capturedMinor: 0n, failureReason: "", updatedAtMs: BigInt(now()) };
        await store.recordHoldResult(updatedHold);
        emit({ kind: "hold", roomId: s.contract.roomId, contractId, hold: updatedHold });
        const released = await save(s, { ...milestone, status: MilestoneStatus.RELEASED, capturedMinor: 0n, failureReason: "" });
        step(s, "release", ExecutionStepStatus.SUCCEEDED, `${money} returned to ${s.parties.clientName}`);
        await settleContract(contractId);
        return released;
      }),
  };
}
