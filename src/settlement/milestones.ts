import type { Logger } from "pino";
import { EscrowHoldStatus, type Contract, type EscrowHold, type Milestone } from "../../gen/handshake/v1/deal_pb.js";
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
import { isSettledMilestone, transition, type MilestoneEvent } from "../deal/milestones-state.js";
import { PaymentRailError, type PaymentRail, type RailRequest, type RailResult } from "../payments/rail.js";
import type { Store } from "../store/store.js";
import type { KeyedLock } from "../core/keyed-lock.js";
import { sharedContractLock } from "./contract-lock.js";
import { announceStatus, contractAfter } from "./contract-status.js";
import { idempotencyKey, newAttemptId } from "./idempotency.js";
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
 * never captures twice (settled milestones are final, and an attempt whose outcome is unknown is
 * only ever sent again under its recorded key; a new attempt's key adds its amount and attempt id). The confirmation is saved before the capture call, so if the process
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

  async function request(s: MilestoneScene, hold: EscrowHold, key: string, amountMinor: bigint): Promise<RailRequest> {
    const railParties = await railPartiesFor(store, s.parties);
    return railRequestFor(s.contract, s.item, railParties, key, amountMinor, hold.currency);
  }

  /** The milestone after a rail answer, through the state machine (which refuses illegal moves); logs the change. */
  function move(milestone: Milestone, event: MilestoneEvent): Milestone {
    const { milestone: after, change } = transition(milestone, event, now());
    if (change) log.debug({ contractId: milestone.contractId, milestoneId: milestone.id, ...change }, "milestone state changed");
    return after;
  }

  /**
   * One decided capture or release of `hold`, as a two-step record around the rail call: the intent
   * (with the milestone as the decision left it, when `record`) in one transaction before the call,
   * and the outcome (hold, milestone, contract status, intent gone) in one transaction after. A
   * crash in between leaves the intent, which `resumeInterrupted` finishes with the same key.
   */
  async function settleHold(
    s: MilestoneScene,
    decided: Milestone,
    record: boolean,
    hold: EscrowHold,
    action: "capture" | "release",
    decidedMinor: bigint,
  ): Promise<Milestone> {
    const milestone = record ? { ...decided, updatedAtMs: BigInt(now()) } : decided;
    // An attempt whose outcome is unknown (a crash, a lost answer) stands: it is sent again with its
    // own key and first parameters only. Otherwise this is a new attempt with a key of its own, as
    // Stripe keeps a refusal under its key and refuses the key with another amount.
    const open = (await store.listSettlementIntents()).find(
      (i) => i.contractId === s.contract.id && i.milestoneId === milestone.id && i.holdId === hold.id && i.action === action,
    );
    const key = open?.idempotencyKey ?? idempotencyKey(s.contract.id, s.item.id, action, { amountMinor: decidedMinor, attemptId: newAttemptId() });
    const intent = await store.recordSettlementIntent(
      { idempotencyKey: key, contractId: s.contract.id, milestoneId: milestone.id, holdId: hold.id, action, amountMinor: decidedMinor, createdAtMs: now() },
      record ? milestone : undefined,
    );
    const amountMinor = intent.amountMinor;
    if (record) events.emit({ kind: "milestone", roomId: s.contract.roomId, contractId: s.contract.id, milestone });
    const money = formatMoney(amountMinor, hold.currency);
    if (action === "capture") step(s, "capture", ExecutionStepStatus.STARTED, `Paying ${money} to ${s.parties.providerName} from escrow`);
    else step(s, "release", ExecutionStepStatus.STARTED, `Returning ${money} to ${s.parties.clientName}`);
    let answer = await askRail(async () => {
      const req = await request(s, hold, key, amountMinor);
      return action === "capture" ? rail.capture(hold.railReference, req) : rail.release(hold.railReference, req);
    });
    // No answer to rely on (a timeout, a 5xx, a 429): the hold itself is asked what happened.
    if (answer instanceof PaymentRailError && answer.outcomeUnknown) answer = await afterUnknown(hold, action, answer);
    if (answer instanceof PaymentRailError && answer.outcomeUnknown) {
      // No answer to rely on: the intent stays open (never "failed"), and is sent again under its
      // key at the next start or the next confirmation, which gets Stripe's first answer.
      events.panelError(s.contract, `${action}_pending`, `${action === "capture" ? "Paying out" : "Releasing"} "${s.item.description}": ${answer.message}; it will be checked and finished`, true);
      log.warn({ contractId: s.contract.id, milestoneId: milestone.id, action, code: answer.code }, "milestone settlement outcome unknown; intent left open");
      return milestone;
    }
    const expected = action === "capture" ? ["captured", "succeeded"] : ["released"];
    if (answer instanceof PaymentRailError || !expected.includes(answer.status)) {
      const reason = answer instanceof PaymentRailError ? answer.message : answer.failureReason || `unexpected rail answer: ${answer.status}`;
      return refused(s, milestone, key, action, reason, answer instanceof PaymentRailError && answer.retryable);
    }
    const captured = action === "capture" ? (answer.capturedMinor ?? amountMinor) : 0n;
    const updatedHold: EscrowHold = {
      ...hold,
      status: action === "capture" ? EscrowHoldStatus.CAPTURED : EscrowHoldStatus.RELEASED,
      capturedMinor: captured,
      failureReason: "",
      updatedAtMs: BigInt(now()),
    };
    const settled = move(milestone, action === "capture" ? { type: "captured", capturedMinor: captured } : { type: "released" });
    const after = await recordOutcome(s, key, settled, updatedHold);
    events.emit({ kind: "hold", roomId: s.contract.roomId, contractId: s.contract.id, hold: updatedHold });
    events.emit({ kind: "milestone", roomId: s.contract.roomId, contractId: s.contract.id, milestone: settled });
    if (action === "capture") {
      const rest = hold.amountMinor - captured;
      step(
        s,
        "capture",
        ExecutionStepStatus.SUCCEEDED,
        `${formatMoney(captured, hold.currency)} paid to ${s.parties.providerName}` +
          (rest > 0n ? `; ${formatMoney(rest, hold.currency)} returned to ${s.parties.clientName}` : ""),
      );
    } else {
      step(s, "release", ExecutionStepStatus.SUCCEEDED, `${money} returned to ${s.parties.clientName}`);
    }
    if (after) announceStatus(events, after, false);
    return settled;
  }

  /**
   * What an attempt without a usable answer did, from the hold's state at the rail: settled means
   * it took effect; still held means it did not (a refusal now known, so the next attempt may use a
   * new key); anything else, or no answer again, leaves the outcome unknown.
   */
  async function afterUnknown(hold: EscrowHold, action: "capture" | "release", unknown: PaymentRailError): Promise<RailResult | PaymentRailError> {
    try {
      const view = await rail.status(hold.railReference);
      if (action === "capture" && (view.status === "captured" || view.status === "succeeded")) return view;
      if (action === "release" && view.status === "released") return view;
      if (view.status === "held") return new PaymentRailError(unknown.message, unknown.code, unknown.retryable);
    } catch (err) {
      log.warn({ err, holdId: hold.id }, "the hold's state is unavailable after an unanswered settlement");
    }
    return unknown;
  }

  /**
   * Writes an outcome whole: the hold, the milestone, the contract's status when it changes, the
   * intent deleted. Returns the contract with its new status when the status changed.
   */
  async function recordOutcome(s: MilestoneScene, key: string, milestone: Milestone, hold?: EscrowHold): Promise<Contract | undefined> {
    const { contract, status } = contractAfter(s.contract, { milestone, ...(hold ? { hold } : {}) });
    const changed = status !== s.contract.status;
    await store.recordSettlementOutcome({ intentKey: key, milestone, ...(hold ? { hold } : {}), ...(changed ? { contractStatus: status } : {}) });
    if (!changed) return undefined;
    contract.status = status;
    return contract;
  }

  /** Records a refused capture or release on the milestone (the hold stays as it was). */
  async function refused(s: MilestoneScene, milestone: Milestone, key: string, what: "capture" | "release", reason: string, retryable: boolean): Promise<Milestone> {
    const result = move(milestone, { type: "refused", reason });
    const after = await recordOutcome(s, key, result);
    events.emit({ kind: "milestone", roomId: s.contract.roomId, contractId: s.contract.id, milestone: result });
    const message = `${what === "capture" ? "Paying out" : "Releasing"} "${s.item.description}" failed: ${reason}`;
    step(s, what, ExecutionStepStatus.FAILED, message);
    events.panelError(s.contract, `${what}_failed`, message, retryable);
    log.warn({ contractId: s.contract.id, milestoneId: milestone.id, what, reason }, "milestone settlement refused by the rail");
    if (after) announceStatus(events, after, false);
    return result;
  }

  /** Carries out what the rules decided. */
  async function carry(s: MilestoneScene, decision: MilestoneDecision): Promise<Milestone> {
    switch (decision.kind) {
      case "unchanged":
        return decision.milestone;
      case "save":
        return save(s, decision.milestone);
      case "capture":
        return settleHold(s, decision.milestone, decision.record, decision.hold, "capture", decision.amountMinor);
      case "release":
        return settleHold(s, decision.milestone, false, decision.hold, "release", decision.hold.amountMinor);
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
        // Decisions recorded as intents first: the same call again, with the same key and amount.
        for (const intent of (await store.listSettlementIntents()).filter((i) => i.contractId === contractId)) {
          const current = await store.getContract(contractId);
          if (!current) break;
          const s = milestoneScene(current, partiesOf(current).providerUserId, intent.milestoneId);
          if (!s.hold || s.hold.id !== intent.holdId || s.hold.status !== EscrowHoldStatus.HELD || isSettledMilestone(s.milestone)) {
            // Settled some other way meanwhile (a webhook): the intent is spent; start-up reconciliation squares the records.
            await store.recordSettlementOutcome({ intentKey: intent.idempotencyKey, milestone: s.milestone });
            continue;
          }
          log.info({ contractId, milestoneId: intent.milestoneId, action: intent.action }, `resuming an interrupted milestone ${intent.action}`);
          resumed.push(await settleHold(s, s.milestone, false, s.hold, intent.action, intent.amountMinor));
        }
        // Captures decided before intents were recorded (older databases): read from the confirmations.
        for (const { id } of contract.milestones) {
          // Read again each time: a capture settles the contract and updates its holds.
          const current = await store.getContract(contractId);
          if (!current) break;
          const s = milestoneScene(current, partiesOf(current).providerUserId, id);
          const amount = decidedCapture(s);
          if (amount === undefined || !s.hold) continue;
          log.info({ contractId, milestoneId: id }, "resuming an interrupted milestone capture");
          resumed.push(await settleHold(s, s.milestone, false, s.hold, "capture", amount));
        }
        return resumed;
      }),

    confirm: (userId, contractId, milestoneId) => act(contractId, userId, milestoneId, decideConfirm),
    proposeAmount: (userId, contractId, milestoneId, amountMinor) => act(contractId, userId, milestoneId, (s) => decidePropose(s, amountMinor)),
    approveAmount: (userId, contractId, milestoneId, amountMinor) => act(contractId, userId, milestoneId, (s) => decideApprove(s, amountMinor)),
    release: (userId, contractId, milestoneId) => act(contractId, userId, milestoneId, decideRelease),
  };
}
