import type { Logger } from "pino";
import { EscrowHoldStatus, type Contract, type EscrowHold } from "../../gen/handshake/v1/deal_pb.js";
import { NotFoundError } from "../core/errors.js";
import { formatMoney } from "../core/money.js";
import type { PaymentRail, RailResult } from "../payments/rail.js";
import type { Store } from "../store/store.js";
import type { KeyedLock } from "../core/keyed-lock.js";
import { recordHoldChange } from "./reconciliation.js";
import type { SettlementEvents } from "./settlement-events.js";

/** Options of the hold watcher. */
export interface HoldWatcherOptions {
  store: Store;
  rail: PaymentRail;
  events: SettlementEvents;
  lock: KeyedLock;
  now: () => number;
  /** How long before a hold lapses the room is warned (PanelError "hold_expiring"). */
  warnBeforeMs: number;
  log: Logger;
  /** Called under the lock after a hold lapsed or was found captured: sync milestones, settle status. */
  afterChange(contractId: string): Promise<void>;
}

/** Timers on HELD holds: a warning before each lapses, and the lapse itself. */
export interface HoldWatcher {
  /** (Re)arms the timers of the contract's HELD holds; holds no longer HELD lose theirs. */
  watch(contract: Contract): void;
  /** Clears every timer; safe to call twice. */
  close(): void;
}

/** Node timers hold at most ~24.8 days; longer waits re-arm themselves. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Creates the watcher. At a hold's expiry the rail is asked first: it may have captured the hold
 * after all (an answer we missed) or extended the authorisation; otherwise the hold is EXPIRED.
 */
export function createHoldWatcher(options: HoldWatcherOptions): HoldWatcher {
  const { store, rail, events, lock, now, warnBeforeMs, log } = options;
  const timers = new Map<string, NodeJS.Timeout[]>();
  /** Holds whose expiry warning went out; re-arming timers must not warn twice. */
  const warned = new Set<string>();
  let closed = false;

  async function load(contractId: string): Promise<Contract> {
    const contract = await store.getContract(contractId);
    if (!contract) throw new NotFoundError(`contract ${contractId} not found`);
    return contract;
  }

  function at(whenMs: number, fn: () => void, bucket: NodeJS.Timeout[]): void {
    const delay = Math.max(0, whenMs - now());
    const timer = setTimeout(() => {
      if (closed) return;
      if (whenMs - now() > 0) at(whenMs, fn, bucket);
      else fn();
    }, Math.min(delay, MAX_TIMER_MS));
    timer.unref();
    bucket.push(timer);
  }

  function unwatch(holdId: string): void {
    for (const t of timers.get(holdId) ?? []) clearTimeout(t);
    timers.delete(holdId);
  }

  function watch(contract: Contract): void {
    if (closed) return;
    for (const hold of contract.holds) {
      unwatch(hold.id);
      if (hold.status !== EscrowHoldStatus.HELD || hold.expiresAtMs <= 0n) continue;
      const expiresAtMs = Number(hold.expiresAtMs);
      const bucket: NodeJS.Timeout[] = [];
      timers.set(hold.id, bucket);
      const report = (err: unknown) => log.error({ err, contractId: contract.id, holdId: hold.id }, "hold expiry check failed");
      if (expiresAtMs > now() && !warned.has(hold.id)) {
        at(expiresAtMs - warnBeforeMs, () => void warnExpiring(contract.id, hold.id).catch(report), bucket);
      }
      at(
        expiresAtMs,
        () => {
          // This hold's timers are spent; expire() re-arms them if the rail extended the authorisation.
          timers.delete(hold.id);
          warned.delete(hold.id);
          void expire(contract.id, hold.id).catch(report);
        },
        bucket,
      );
    }
  }

  async function warnExpiring(contractId: string, holdId: string): Promise<void> {
    const contract = await load(contractId);
    const hold = contract.holds.find((h) => h.id === holdId);
    if (!hold || hold.status !== EscrowHoldStatus.HELD || Number(hold.expiresAtMs) <= now()) return;
    const item = contract.terms?.lineItems.find((i) => i.id === hold.lineItemId);
    if (warned.has(holdId)) return;
    warned.add(holdId);
    const when = new Date(Number(hold.expiresAtMs)).toISOString();
    events.panelError(
      contract,
      "hold_expiring",
      `The escrow hold of ${formatMoney(hold.amountMinor, hold.currency)} for "${item?.description ?? hold.lineItemId}" lapses at ${when}: confirm or release its milestone before then`,
      false,
    );
  }

  async function expire(contractId: string, holdId: string): Promise<void> {
    await lock.run(contractId, async () => {
      const contract = await load(contractId);
      const hold = contract.holds.find((h) => h.id === holdId);
      if (!hold || hold.status !== EscrowHoldStatus.HELD) return;
      // The rail may know better: captured after all (a missed answer), or re-authorised for longer.
      let view: RailResult | undefined;
      try {
        view = await rail.status(hold.railReference);
      } catch (err) {
        log.warn({ err, contractId, holdId }, "rail status unavailable at hold expiry; marking it expired");
      }
      const updated: EscrowHold = { ...hold, updatedAtMs: BigInt(now()) };
      if (view?.status === "held" && view.expiresAtMs !== undefined && view.expiresAtMs > now()) {
        updated.expiresAtMs = BigInt(view.expiresAtMs);
        await store.recordHoldResult(updated);
        contract.holds = contract.holds.map((h) => (h.id === holdId ? updated : h));
        watch(contract);
        return;
      }
      if (view?.status === "captured") {
        updated.status = EscrowHoldStatus.CAPTURED;
        updated.capturedMinor = view.capturedMinor ?? hold.amountMinor;
      } else {
        // Still held past its deadline, or cancelled by the rail for lapsing: either way it expired.
        updated.status = EscrowHoldStatus.EXPIRED;
        updated.failureReason = "The authorisation lapsed before the milestone was settled";
      }
      // The hold and its milestone change in one transaction; the status follows in `afterChange`.
      const next = await recordHoldChange(store, now, contract, updated);
      events.emit({ kind: "hold", roomId: contract.roomId, contractId, hold: updated });
      if (updated.status === EscrowHoldStatus.EXPIRED) {
        events.panelError(contract, "hold_expired", `The escrow hold of ${formatMoney(hold.amountMinor, hold.currency)} lapsed before its milestone was settled`, false);
      }
      if (next) events.emit({ kind: "milestone", roomId: contract.roomId, contractId, milestone: next });
      await options.afterChange(contractId);
    });
  }

  return {
    watch,
    close() {
      closed = true;
      for (const id of [...timers.keys()]) unwatch(id);
    },
  };
}
