import type { Logger } from "pino";
import { EscrowHoldStatus, type EscrowHold, type Milestone } from "../../gen/handshake/v1/deal_pb.js";
import { ExecutionStepStatus } from "../../gen/handshake/v1/events_pb.js";
import { NotFoundError } from "../core/errors.js";
import { silentLogger } from "../core/log.js";
import { formatMoney } from "../core/money.js";
import {
  decideApprove,
  decideConfirm,
  decidePropose,
  decideRelease,
  decidedCapture,
  milestoneScene,
  partiesOf,
  requireParty,
  type MilestoneDecision,
  type MilestoneScene,
} from "../deal/milestones-rules.js";
import { next } from "../deal/milestones-state.js";
import { PaymentRailError, type PaymentRail, type RailRequest } from "../payments/rail.js";
import type { Store } from "../store/store.js";
import { sharedContractLock, type KeyedLock } from "./contract-lock.js";
import { settleStatus } from "./contract-status.js";
import { idempotencyKey } from "./idempotency.js";
import { askRail, railPartiesFor, railRequestFor } from "./rail-call.js";
import { createSettlementEvents, type ExecutionEventListener } from "./settlement-events.js";

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

/**
 * Creates the milestone service. Who may do what, and when a capture or release is due, is the
 * deal layer's (src/deal/milestones-rules.ts, over the state machine in milestones-state.ts); this
 * service reads the scene under the contract's lock, records the decision and makes the rail
 * call (capture or release) it asks for.
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
  const events = createSettlementEvents(options.onEvent, log, "milestone event listener threw");

  async function scene(userId: string, contractId: string, milestoneId: string): Promise<MilestoneScene> {
    const contract = await store.getContract(contractId);
    if (!contract) throw new NotFoundError(`contract ${contractId} not found`);
    requireParty(contract, userId);
    return milestoneScene(contract, userId, milestoneId);
  }

  async function save(s: MilestoneScene, milestone: Milestone): Promise<Milestone> {
    milestone.updatedAtMs = BigInt(now());
    await store.saveMilestone(milestone);
    events.emit({ kind: "milestone", roomId: s.contract.roomId, contractId: s.contract.id, milestone });
    return milestone;
  }

  function step(s: MilestoneScene, name: string, status: ExecutionStepStatus, detail: string): void {
    events.step(s.contract, { step: name, lineItemId: s.item.id, userId: s.parties.clientUserId, status, detail });
  }

  async function request(s: MilestoneScene, hold: EscrowHold, action: "capture" | "release", amountMinor: bigint): Promise<RailRequest> {
    const railParties = await railPartiesFor(store, s.parties);
    return railRequestFor(s.contract, s.item, railParties, idempotencyKey(s.contract.id, s.item.id, action), amountMinor, hold.currency);
  }

  const settleContract = async (contractId: string) => void (await settleStatus(store, events, contractId, { announce: false, stepWhenActive: false }));

  /** Records a refused capture or release on the milestone (the hold stays as it was). */
  async function failed(s: MilestoneScene, milestone: Milestone, what: "capture" | "release", reason: string, retryable: boolean): Promise<Milestone> {
    const result = await save(s, next(milestone, { type: "refused", reason })!);
    const message = `${what === "capture" ? "Paying out" : "Releasing"} "${s.item.description}" failed: ${reason}`;
    step(s, what, ExecutionStepStatus.FAILED, message);
    events.panelError(s.contract, `${what}_failed`, message, retryable);
    log.warn({ contractId: s.contract.id, milestoneId: milestone.id, what, reason }, "milestone settlement refused by the rail");
    await settleContract(s.contract.id);
    return result;
  }

  async function capture(s: MilestoneScene, milestone: Milestone, hold: EscrowHold, amountMinor: bigint): Promise<Milestone> {
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
    events.emit({ kind: "hold", roomId: s.contract.roomId, contractId: s.contract.id, hold: updatedHold });
    const done = await save(s, next(milestone, { type: "captured", capturedMinor: captured })!);
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

  async function release(s: MilestoneScene, milestone: Milestone, hold: EscrowHold): Promise<Milestone> {
    const money = formatMoney(hold.amountMinor, hold.currency);
    step(s, "release", ExecutionStepStatus.STARTED, `Returning ${money} to ${s.parties.clientName}`);
    const answer = await askRail(async () => rail.release(hold.railReference, await request(s, hold, "release", hold.amountMinor)));
    if (answer instanceof PaymentRailError) return failed(s, milestone, "release", answer.message, answer.retryable);
    if (answer.status !== "released") {
      return failed(s, milestone, "release", answer.failureReason || `unexpected rail answer: ${answer.status}`, false);
    }
    const updatedHold: EscrowHold = { ...hold, status: EscrowHoldStatus.RELEASED, capturedMinor: 0n, failureReason: "", updatedAtMs: BigInt(now()) };
    await store.recordHoldResult(updatedHold);
    events.emit({ kind: "hold", roomId: s.contract.roomId, contractId: s.contract.id, hold: updatedHold });
    const released = await save(s, next(milestone, { type: "released" })!);
    step(s, "release", ExecutionStepStatus.SUCCEEDED, `${money} returned to ${s.parties.clientName}`);
    await settleContract(s.contract.id);
    return released;
  }

  /** Carries out what the rules decided. */
  async function carry(s: MilestoneScene, decision: MilestoneDecision): Promise<Milestone> {
    switch (decision.kind) {
      case "unchanged":
        return decision.milestone;
      case "save":
        return save(s, decision.milestone);
      case "capture": {
        const milestone = decision.record ? await save(s, decision.milestone) : decision.milestone;
        return capture(s, milestone, decision.hold, decision.amountMinor);
      }
      case "release":
        return release(s, decision.milestone, decision.hold);
    }
  }

  const act = (contractId: string, userId: string, milestoneId: string, decide: (s: MilestoneScene) => MilestoneDecision) =>
    lock.run(contractId, async () => {
      const s = await scene(userId, contractId, milestoneId);
      return carry(s, decide(s));
    });

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
          const s = milestoneScene(current, partiesOf(current).providerUserId, id);
          const amount = decidedCapture(s);
          if (amount === undefined || !s.hold) continue;
          log.info({ contractId, milestoneId: id }, "resuming an interrupted milestone capture");
          resumed.push(await capture(s, s.milestone, s.hold, amount));
        }
        return resumed;
      }),

    confirm: (userId, contractId, milestoneId) => act(contractId, userId, milestoneId, decideConfirm),
    proposeAmount: (userId, contractId, milestoneId, amountMinor) => act(contractId, userId, milestoneId, (s) => decidePropose(s, amountMinor)),
    approveAmount: (userId, contractId, milestoneId, amountMinor) => act(contractId, userId, milestoneId, (s) => decideApprove(s, amountMinor)),
    release: (userId, contractId, milestoneId) => act(contractId, userId, milestoneId, decideRelease),
  };
}
