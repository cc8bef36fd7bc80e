import type { Logger } from "pino";
import { ContractStatus, EscrowHoldStatus, LineItemKind, PaymentStatus, type Contract, type EscrowHold, type Payment } from "../../gen/handshake/v1/deal_pb.js";
import { NotFoundError, PermissionDeniedError } from "../core/errors.js";
import { silentLogger } from "../core/log.js";
import type { PaymentRail } from "../payments/rail.js";
import type { Store } from "../store/store.js";
import type { KeyedLock } from "../core/keyed-lock.js";
import { sharedContractLock } from "./contract-lock.js";
import { settleStatus } from "./contract-status.js";
import { createHoldWatcher } from "./hold-watch.js";
import { offerRetryIfFailed, retryMoneyStep, type StepContext } from "./money-step.js";
import { partiesOf } from "../deal/milestones-rules.js";
import { railPartiesFor } from "./rail-call.js";
import { squareHoldsWithRail, syncMilestones } from "./reconciliation.js";
import { runSaga, undoSaga } from "./saga.js";
import { createSettlementEvents, type ExecutionEventListener } from "./settlement-events.js";

// The executor's public vocabulary, re-exported so callers need one import.
export { createKeyedLock, sharedContractLock, type KeyedLock } from "./contract-lock.js";
export { deriveContractStatus } from "./contract-status.js";
export { holdAmountOf, partiesOf, type ContractParties } from "../deal/milestones-rules.js";
export { askRail, holdStatusOf, railPartiesFor } from "./rail-call.js";
export { undoPlan, type UndoStep } from "./saga.js";
export type { ExecutionEvent, ExecutionEventListener } from "./settlement-events.js";

/** Every party signed the contract's current text. */
function isFullySigned(contract: Contract): boolean {
  return contract.parties.length > 0 && contract.parties.every((p) => contract.signatures.some((s) => s.userId === p.userId && s.textSha256 === contract.textSha256));
}

/** Options of the contract executor. */
export interface ContractExecutorOptions {
  store: Store;
  rail: PaymentRail;
  onEvent: ExecutionEventListener;
  /** Clock, Unix ms. */
  now?: () => number;
  /** How long before a hold lapses the room is warned (PanelError "hold_expiring"); default 24 h. */
  holdExpiryWarningMs?: number;
  lock?: KeyedLock;
  log?: Logger;
  /**
   * First wait before a payment or hold left PENDING (its outcome unknown: a timeout, a 5xx) is
   * looked up at the rail again; doubles each time up to 10 minutes. Default 30 s.
   */
  pendingRecheckMs?: number;
}

/** Longest wait between two look-ups of a pending payment or hold. */
const MAX_PENDING_RECHECK_MS = 10 * 60 * 1000;

/** Options of `reconcile`. */
export interface ReconcileOptions {
  /**
   * Ask the rail about every HELD hold first (start-up): a capture or release it carried out but
   * whose record a crash lost is recorded, hold and milestone in one transaction.
   */
  checkRail?: boolean;
  /**
   * A movement the rail reported on by itself (a webhook): when it failed — a decline, a 3-D Secure
   * the payer abandoned — the payer is offered a retry, as when the rail call itself answered so.
   */
  reported?: Payment | EscrowHold;
}

/** Carries out signed contracts: the payment saga, its resumption after a crash, and hold expiry. */
export interface ContractExecutor {
  /**
   * Moves the money of a fully signed contract: IMMEDIATE items are paid, ESCROW and CONDITIONAL
   * items are held at their maximum. Returns the contract with its new status. A contract already
   * carried out is returned as it is.
   */
  execute(contract: Contract): Promise<Contract>;
  /**
   * At start-up: finishes every PENDING payment or hold, every EXECUTING contract and every fully
   * signed one still AWAITING_SIGNATURES, calling the rail again with the same idempotency key,
   * so an interrupted call is answered, never repeated.
   */
  resumePending(): Promise<Contract[]>;
  /**
   * Re-reads a contract after an outside change (a Stripe webhook): brings milestones in line with
   * their holds, recomputes the status, broadcasts what changed, and (re)arms hold-expiry timers.
   */
  reconcile(contractId: string, options?: ReconcileOptions): Promise<Contract>;
  /**
   * The payer tries the failed payment or hold of `lineItemId` again under a new attempt key (on
   * the payment method now saved as theirs). PermissionDenied for anyone but the contract's payer;
   * FailedPrecondition unless the item's latest attempt failed.
   */
  retry(contractId: string, lineItemId: string, callerUserId: string): Promise<Contract>;
  /** Compensation: releases every hold of the contract still HELD (immediate payments are not refunded). */
  releaseOutstandingHolds(contractId: string): Promise<Contract>;
  /** Arms hold-expiry timers for the contract's HELD holds (e.g. contracts loaded at start-up). */
  watchHolds(contract: Contract): void;
  /** Clears every timer; safe to call twice. */
  close(): void;
}

/**
 * Creates the executor: the saga (saga.ts, one `moneyStep` per item, each recorded as PENDING with
 * its idempotency key before the rail is called and its result after), hold watching
 * (hold-watch.ts) and reconciliation (reconciliation.ts), each under the contract's lock.
 *
 * Policy on failure: a failed movement is recorded (FAILED + reason) and broadcast, and the other
 * items still run; the contract ends PAYMENT_FAILED. Holds already placed are not released
 * automatically — the client can fix the card while the provider's escrow stays protected — and
 * stay releasable by the provider or by `releaseOutstandingHolds`. A rail answer of any kind is
 * final for that key; no answer (a `PaymentRailError` with `outcomeUnknown`: timeout, 5xx, 429)
 * leaves the record PENDING and the saga is run again on a backoff timer, which looks the movement
 * up at the rail before resending it by key; any other error leaves it PENDING too and is thrown,
 * for `resumePending` to finish.
 */
export function createContractExecutor(options: ContractExecutorOptions): ContractExecutor {
  const { store, rail } = options;
  const now = options.now ?? Date.now;
  const lock = options.lock ?? sharedContractLock;
  const log = (options.log ?? silentLogger).child({ component: "contract-executor" });
  const events = createSettlementEvents(options.onEvent, log, "execution event listener threw");
  const ctx: StepContext = { store, rail, events, now, log };

  async function load(contractId: string): Promise<Contract> {
    const contract = await store.getContract(contractId);
    if (!contract) throw new NotFoundError(`contract ${contractId} not found`);
    return contract;
  }

  /** Recomputes and stores the status, broadcasts it when it changed (or when asked), re-arms hold timers. */
  async function settle(contractId: string, announce: boolean): Promise<Contract> {
    const contract = await settleStatus(store, events, contractId, { announce, stepWhenActive: true });
    if (!contract) throw new NotFoundError(`contract ${contractId} not found`);
    watcher.watch(contract);
    return contract;
  }

  async function reconcileLocked(contractId: string, options: ReconcileOptions = {}): Promise<Contract> {
    if (options.checkRail) await squareHoldsWithRail(store, rail, events, now, log, await load(contractId));
    await syncMilestones(store, events, now, await load(contractId));
    if (options.reported) offerRetryIfFailed(events, await load(contractId), options.reported);
    return settle(contractId, false);
  }

  const watcher = createHoldWatcher({
    store,
    rail,
    events,
    lock,
    now,
    warnBeforeMs: options.holdExpiryWarningMs ?? 24 * 60 * 60 * 1000,
    log,
    afterChange: async (contractId) => void (await reconcileLocked(contractId)),
  });

  const run = (contract: Contract) => runSaga(ctx, contract, (id) => settle(id, true));

  // Contracts with a movement whose outcome is unknown: the saga is run again for them (which looks
  // the movement up at the rail, then resends it by key) until every record knows its outcome.
  const rechecks = new Map<string, NodeJS.Timeout>();
  let closed = false;
  const pendingRecheckMs = options.pendingRecheckMs ?? 30_000;
  const hasPending = (c: Contract) =>
    c.payments.some((p) => p.status === PaymentStatus.PENDING && p.rail === rail.kind) ||
    c.holds.some((h) => h.status === EscrowHoldStatus.PENDING && h.rail === rail.kind);
  function scheduleRecheck(contract: Contract, attempt = 0): void {
    if (closed || rechecks.has(contract.id) || !hasPending(contract)) return;
    const timer = setTimeout(() => {
      rechecks.delete(contract.id);
      lock
        .run(contract.id, async () => run(await load(contract.id)))
        .then(
          (after) => scheduleRecheck(after, attempt + 1),
          (err: unknown) => {
            log.error({ err, contractId: contract.id }, "checking a pending payment again failed");
            scheduleRecheck(contract, attempt + 1);
          },
        );
    }, Math.min(pendingRecheckMs * 2 ** attempt, MAX_PENDING_RECHECK_MS));
    timer.unref();
    rechecks.set(contract.id, timer);
  }
  const runAndWatch = async (contract: Contract) => {
    const after = await run(contract);
    scheduleRecheck(after);
    return after;
  };

  return {
    execute: (contract) =>
      lock.run(contract.id, async () => {
        const current = await load(contract.id);
        if (
          current.status === ContractStatus.ACTIVE ||
          current.status === ContractStatus.COMPLETED ||
          current.status === ContractStatus.PAYMENT_FAILED
        ) {
          return current;
        }
        log.info({ contractId: current.id, roomId: current.roomId }, "executing contract");
        return runAndWatch(current);
      }),

    async resumePending() {
      const { payments, holds } = await store.listPendingIntents();
      const ids = new Set<string>([...payments, ...holds].map((x) => x.contractId));
      for (const c of await store.listExecutingContracts()) ids.add(c.id);
      // Signed by everyone but never moved on (a database written before signing and status were
      // one transaction): carried out like any other, since every party agreed to it.
      for (const c of await store.listContractsWithStatus(ContractStatus.AWAITING_SIGNATURES)) {
        if (isFullySigned(c)) ids.add(c.id);
      }
      const resumed: Contract[] = [];
      for (const id of ids) {
        try {
          resumed.push(
            await lock.run(id, async () => {
              const contract = await load(id);
              log.info({ contractId: id, roomId: contract.roomId }, "resuming contract execution");
              return runAndWatch(contract);
            }),
          );
        } catch (err) {
          // One broken contract must not keep the others from finishing.
          log.error({ err, contractId: id }, "could not resume contract execution");
        }
      }
      return resumed;
    },

    reconcile: (contractId, reconcileOptions) => lock.run(contractId, () => reconcileLocked(contractId, reconcileOptions)),

    retry: (contractId, lineItemId, callerUserId) =>
      lock.run(contractId, async () => {
        const contract = await load(contractId);
        const parties = partiesOf(contract);
        if (callerUserId !== parties.clientUserId) throw new PermissionDeniedError("only the contract's payer may retry its payments");
        const item = contract.terms?.lineItems.find((i) => i.id === lineItemId);
        if (!item) throw new NotFoundError(`line item ${lineItemId} not found in contract ${contractId}`);
        if (contract.status !== ContractStatus.EXECUTING) {
          await store.setContractStatus(contract.id, ContractStatus.EXECUTING);
          contract.status = ContractStatus.EXECUTING;
          events.emit({ kind: "contract", roomId: contract.roomId, contractId: contract.id, contract });
        }
        log.info({ contractId, lineItemId, roomId: contract.roomId }, "payer retries a failed payment");
        try {
          await retryMoneyStep(ctx, item.kind === LineItemKind.IMMEDIATE ? "pay" : "hold", contract, item, parties, await railPartiesFor(store, parties));
        } finally {
          // Refused or not, the status is derived from the records again (PAYMENT_FAILED stays so).
          const after = await settle(contractId, true);
          scheduleRecheck(after);
        }
        return load(contractId);
      }),

    releaseOutstandingHolds: (contractId) =>
      lock.run(contractId, async () => {
        await undoSaga(ctx, await load(contractId));
        return reconcileLocked(contractId);
      }),

    watchHolds: (contract) => watcher.watch(contract),

    close: () => {
      closed = true;
      for (const timer of rechecks.values()) clearTimeout(timer);
      rechecks.clear();
      watcher.close();
    },
  };
}
