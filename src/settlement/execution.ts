import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import {
  ContractStatus,
  EscrowHoldSchema,
  EscrowHoldStatus,
  LineItemKind,
  MilestoneSchema,
  MilestoneStatus,
  PaymentSchema,
  PaymentStatus,
  type Contract,
  type EscrowHold,
  type LineItem,
  type Milestone,
  type Payment,
} from "../../gen/handshake/v1/deal_pb.js";
import {
  ExecutionStepSchema,
  ExecutionStepStatus,
  PanelErrorSchema,
  type ExecutionStep,
  type PanelError,
} from "../../gen/handshake/v1/events_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { silentLogger } from "../core/log.js";
import { PaymentRailError, type PaymentRail, type RailParties, type RailRequest, type RailResult } from "../payments/rail.js";
import type { Store } from "../store/store.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../core/errors.js";
import { idempotencyKey } from "./idempotency.js";
import { formatMoney } from "../core/money.js";

/**
 * Something the room should see while a contract's money moves: proto messages ready to be
 * wrapped in a `PanelEvent` of the contract's room.
 */
export type ExecutionEvent = { roomId: string; contractId: string } & (
  | { kind: "step"; step: ExecutionStep }
  | { kind: "payment"; payment: Payment }
  | { kind: "hold"; hold: EscrowHold }
  | { kind: "milestone"; milestone: Milestone }
  | { kind: "contract"; contract: Contract }
  | { kind: "error"; error: PanelError }
);

/** Receives execution events; must not throw (a throwing listener is logged and ignored). */
export type ExecutionEventListener = (event: ExecutionEvent) => void;

/** The client (payer) and provider (payee) of a contract. */
export interface ContractParties {
  clientUserId: string;
  providerUserId: string;
  clientName: string;
  providerName: string;
}

/**
 * Serialises work per contract inside this process, so two confirmations arriving together (or a
 * resume racing an execute) read and write one state at a time. The default instance is shared
 * by the executor and the milestone service.
 */
export interface KeyedLock {
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
}

/** Creates a lock keyed by string; each key runs its tasks one after another. */
export function createKeyedLock(): KeyedLock {
  const tails = new Map<string, Promise<unknown>>();
  return {
    run<T>(key: string, fn: () => Promise<T>): Promise<T> {
      const previous = tails.get(key) ?? Promise.resolve();
      const result = previous.then(fn, fn);
      const tail = result.then(
        () => undefined,
        () => undefined,
      );
      tails.set(key, tail);
      void tail.then(() => {
        if (tails.get(key) === tail) tails.delete(key);
      });
      return result;
    },
  };
}

/** The lock the executor and the milestone service use unless given another. */
export const sharedContractLock: KeyedLock = createKeyedLock();

/** Who pays and who is paid: the parties' roles, else the agreed proposal's user ids. */
export function partiesOf(contract: Contract): ContractParties {
  const client = contract.parties.find((p) => p.role === PartyRole.CLIENT);
  const provider = contract.parties.find((p) => p.role === PartyRole.PROVIDER);
  const clientUserId = client?.userId || contract.terms?.clientUserId || "";
  const providerUserId = provider?.userId || contract.terms?.providerUserId || "";
  if (!clientUserId || !providerUserId) {
    throw new FailedPreconditionError(`contract ${contract.id} does not name both a client and a provider`);
  }
  const nameOf = (userId: string) => contract.parties.find((p) => p.userId === userId)?.displayName || userId;
  return { clientUserId, providerUserId, clientName: nameOf(clientUserId), providerName: nameOf(providerUserId) };
}

/** The rail's view of the parties: user ids plus the Stripe ids saved in their profiles. */
export async function railPartiesFor(store: Store, parties: ContractParties): Promise<RailParties> {
  const [client, provider] = await Promise.all([store.getProfile(parties.clientUserId), store.getProfile(parties.providerUserId)]);
  return {
    payerUserId: parties.clientUserId,
    payeeUserId: parties.providerUserId,
    payerCustomerId: client?.stripeCustomerId || undefined,
    payerPaymentMethodId: client?.stripePaymentMethodId || undefined,
    payeeAccountId: provider?.stripeAccountId || undefined,
  };
}

/** The amount an escrow or conditional item holds: its range's maximum, else its amount. */
export function holdAmountOf(item: LineItem): bigint {
  return item.range ? item.range.maxMinor : item.amountMinor;
}

/**
 * A contract's status from its payments, holds and milestones: EXECUTING while anything is not yet
 * answered by the rail, PAYMENT_FAILED when a payment or hold failed or lapsed (or a capture or
 * release failed), ACTIVE while holds wait for their milestones, COMPLETED when everything is settled.
 * Contracts not yet signed keep their status.
 */
export function deriveContractStatus(contract: Contract): ContractStatus {
  if (contract.status === ContractStatus.AWAITING_SIGNATURES || contract.status === ContractStatus.UNSPECIFIED) {
    return contract.status;
  }
  let pending = false;
  let failed = false;
  let outstanding = false;
  for (const item of contract.terms?.lineItems ?? []) {
    if (item.kind === LineItemKind.IMMEDIATE) {
      const payment = contract.payments.find((p) => p.lineItemId === item.id);
      if (!payment || payment.status === PaymentStatus.PENDING) pending = true;
      else if (payment.status === PaymentStatus.FAILED) failed = true;
      continue;
    }
    const hold = contract.holds.find((h) => h.lineItemId === item.id);
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
   * At start-up: finishes every PENDING payment or hold and every EXECUTING contract, calling the
   * rail again with the same idempotency key, so an interrupted call is answered, never repeated.
   */
  resumePending(): Promise<Contract[]>;
  /**
   * Re-reads a contract after an outside change (a Stripe webhook): brings milestones in line with
   * their holds, recomputes the status, broadcasts what changed, and (re)arms hold-expiry timers.
   */
  reconcile(contractId: string): Promise<Contract>;
  /** Compensation: releases every hold of the contract still HELD (immediate payments are not refunded). */
  releaseOutstandingHolds(contractId: string): Promise<Contract>;
  /** Arms hold-expiry timers for the contract's HELD holds (e.g. contracts loaded at start-up). */
  watchHolds(contract: Contract): void;
  /** Clears every timer; safe to call twice. */
  close(): void;
}

/**
 * Creates the executor. The saga, step by step: each movement is recorded as PENDING with its
 * idempotency key before the rail is called and its result after, so a crash in between is
 * finished by `resumePending` with the same key. Each step knows its undo: a hold is undone by a
 * release (`releaseOutstandingHolds`); an immediate payment by a refund, which the rails do not
 * offer, so it is never undone automatically.
 *
 * Policy on failure: a failed movement is recorded (FAILED + reason) and broadcast, and the other
 * items still run; the contract ends PAYMENT_FAILED. Holds already placed are not released
 * automatically — the client can fix the card while the provider's escrow stays protected — and
 * stay releasable by the provider or by `releaseOutstandingHolds`. A rail answer of any kind is
 * final for that key; an error that is not a `PaymentRailError` leaves the intent PENDING (the
 * outcome is unknown) and is thrown, for `resumePending` to finish.
 */
export function createContractExecutor(options: ContractExecutorOptions): ContractExecutor {
  const { store, rail } = options;
  const now = options.now ?? Date.now;
  const warnBeforeMs = options.holdExpiryWarningMs ?? 24 * 60 * 60 * 1000;
  const lock = options.lock ?? sharedContractLock;
  const log = (options.log ?? silentLogger).child({ component: "contract-executor" });
  const timers = new Map<string, NodeJS.Timeout[]>();
  /** Holds whose expiry warning went out; re-arming timers must not warn twice. */
  const warned = new Set<string>();
  let closed = false;

  const emit = (event: ExecutionEvent): void => {
    try {
      options.onEvent(event);
    } catch (err) {
      log.error({ err, kind: event.kind, contractId: event.contractId }, "execution event listener threw");
    }
  };

  async function load(contractId: string): Promise<Contract> {
    const contract = await store.getContract(contractId);
    if (!contract) throw new NotFoundError(`contract ${contractId} not found`);
    return contract;
  }

  function step(contract: Contract, init: { step: string; lineItemId?: string; userId?: string; status: ExecutionStepStatus; detail: string }): void {
    emit({
      kind: "step",
      roomId: contract.roomId,
      contractId: contract.id,
      step: create(ExecutionStepSchema, { contractId: contract.id, ...init }),
    });
  }

  function panelError(contract: Contract, code: string, message: string, retryable: boolean): void {
    emit({
      kind: "error",
      roomId: contract.roomId,
      contractId: contract.id,
      error: create(PanelErrorSchema, { stage: "payment", code, message, retryable }),
    });
  }

  function requestFor(contract: Contract, item: LineItem, parties: RailParties, key: string, amountMinor: bigint): RailRequest {
    return {
      ...parties,
      idempotencyKey: key,
      amountMinor,
      currency: contract.terms?.currency ?? "",
      // Deterministic, so a resumed call sends exactly the parameters of the first.
      description: `${contract.title}: ${item.description}`.slice(0, 500),
      contractId: contract.id,
      lineItemId: item.id,
    };
  }

  async function payItem(contract: Contract, item: LineItem, parties: ContractParties, railParties: RailParties): Promise<void> {
    const key = idempotencyKey(contract.id, item.id, "pay");
    const stored = await store.recordPaymentIntent(
      create(PaymentSchema, {
        id: `pay_${randomUUID()}`,
        contractId: contract.id,
        lineItemId: item.id,
        payerUserId: parties.clientUserId,
        payeeUserId: parties.providerUserId,
        amountMinor: item.amountMinor,
        currency: contract.terms?.currency ?? "",
        status: PaymentStatus.PENDING,
        idempotencyKey: key,
        rail: rail.kind,
        updatedAtMs: BigInt(now()),
      }),
    );
    if (stored.status !== PaymentStatus.PENDING) return; // answered before: nothing to do
    if (stored.rail !== rail.kind) {
      panelError(contract, "payment_rail_mismatch", "A payment was started on another payment rail; it needs attention", false);
      log.error({ contractId: contract.id, lineItemId: item.id, rail: stored.rail }, "pending payment belongs to another rail");
      return;
    }
    const money = formatMoney(stored.amountMinor, stored.currency);
    emit({ kind: "payment", roomId: contract.roomId, contractId: contract.id, payment: stored });
    step(contract, { step: "payment", lineItemId: item.id, userId: stored.payerUserId, status: ExecutionStepStatus.STARTED, detail: `Paying ${money} to ${parties.providerName}` });
    // The stored key, not a fresh one: on resume it is the key of the interrupted call.
    const answer = await askRail(() => rail.pay(requestFor(contract, item, railParties, stored.idempotencyKey, stored.amountMinor)));
    const result: Payment = { ...stored, updatedAtMs: BigInt(now()) };
    if (answer instanceof PaymentRailError || answer.status !== "succeeded") {
      result.status = PaymentStatus.FAILED;
      result.failureReason = answer instanceof PaymentRailError ? answer.message : answer.failureReason || `unexpected rail answer: ${answer.status}`;
      if (!(answer instanceof PaymentRailError)) result.railReference = answer.reference;
    } else {
      result.status = PaymentStatus.SUCCEEDED;
      result.railReference = answer.reference;
      result.failureReason = "";
    }
    await store.recordPaymentResult(result);
    emit({ kind: "payment", roomId: contract.roomId, contractId: contract.id, payment: result });
    if (result.status === PaymentStatus.SUCCEEDED) {
      step(contract, { step: "payment", lineItemId: item.id, userId: result.payerUserId, status: ExecutionStepStatus.SUCCEEDED, detail: `${money} paid to ${parties.providerName}` });
    } else {
      const retryable = answer instanceof PaymentRailError && answer.retryable;
      step(contract, { step: "payment", lineItemId: item.id, userId: result.payerUserId, status: ExecutionStepStatus.FAILED, detail: `Payment of ${money} failed: ${result.failureReason}` });
      panelError(contract, "payment_failed", `Payment of ${money} for "${item.description}" failed: ${result.failureReason}`, retryable);
      log.warn({ contractId: contract.id, lineItemId: item.id, reason: result.failureReason }, "payment failed");
    }
  }

  async function holdItem(contract: Contract, item: LineItem, parties: ContractParties, railParties: RailParties): Promise<void> {
    const key = idempotencyKey(contract.id, item.id, "hold");
    const stored = await store.recordHoldIntent(
      create(EscrowHoldSchema, {
        id: `hold_${randomUUID()}`,
        contractId: contract.id,
        lineItemId: item.id,
        payerUserId: parties.clientUserId,
        payeeUserId: parties.providerUserId,
        amountMinor: holdAmountOf(item),
        capturedMinor: 0n,
        currency: contract.terms?.currency ?? "",
        status: EscrowHoldStatus.PENDING,
        idempotencyKey: key,
        rail: rail.kind,
        updatedAtMs: BigInt(now()),
      }),
    );
    if (stored.status !== EscrowHoldStatus.PENDING) return;
    if (stored.rail !== rail.kind) {
      panelError(contract, "payment_rail_mismatch", "An escrow hold was started on another payment rail; it needs attention", false);
      log.error({ contractId: contract.id, lineItemId: item.id, rail: stored.rail }, "pending hold belongs to another rail");
      return;
    }
    const money = formatMoney(stored.amountMinor, stored.currency);
    emit({ kind: "hold", roomId: contract.roomId, contractId: contract.id, hold: stored });
    step(contract, { step: "escrow_hold", lineItemId: item.id, userId: stored.payerUserId, status: ExecutionStepStatus.STARTED, detail: `Holding ${money} in escrow` });
    const answer = await askRail(() => rail.hold(requestFor(contract, item, railParties, stored.idempotencyKey, stored.amountMinor)));
    const result: EscrowHold = { ...stored, updatedAtMs: BigInt(now()) };
    if (answer instanceof PaymentRailError) {
      result.status = EscrowHoldStatus.FAILED;
      result.failureReason = answer.message;
    } else {
      result.railReference = answer.reference;
      result.expiresAtMs = BigInt(answer.expiresAtMs ?? 0);
      result.capturedMinor = answer.capturedMinor ?? (answer.status === "succeeded" ? stored.amountMinor : 0n);
      result.failureReason = answer.failureReason ?? "";
      result.status = holdStatusOf(answer);
    }
    await store.recordHoldResult(result);
    emit({ kind: "hold", roomId: contract.roomId, contractId: contract.id, hold: result });
    if (result.status === EscrowHoldStatus.HELD) {
      step(contract, { step: "escrow_hold", lineItemId: item.id, userId: result.payerUserId, status: ExecutionStepStatus.SUCCEEDED, detail: `${money} held in escrow until "${item.milestone?.title || item.description}" is done` });
    } else if (result.status === EscrowHoldStatus.FAILED) {
      const retryable = answer instanceof PaymentRailError && answer.retryable;
      step(contract, { step: "escrow_hold", lineItemId: item.id, userId: result.payerUserId, status: ExecutionStepStatus.FAILED, detail: `Escrow hold of ${money} failed: ${result.failureReason}` });
      panelError(contract, "payment_failed", `Escrow hold of ${money} for "${item.description}" failed: ${result.failureReason}`, retryable);
      log.warn({ contractId: contract.id, lineItemId: item.id, reason: result.failureReason }, "escrow hold failed");
    }
  }

  /** Makes sure every escrow or conditional item has its milestone (drafting normally made them). */
  async function ensureMilestones(contract: Contract): Promise<void> {
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
        updatedAtMs: BigInt(now()),
      });
      await store.saveMilestone(milestone);
      contract.milestones.push(milestone);
    }
  }

  /** Runs every item not yet answered, then settles the status. The caller holds the lock. */
  async function run(contract: Contract): Promise<Contract> {
    validateForExecution(contract);
    const parties = partiesOf(contract);
    const railParties = await railPartiesFor(store, parties);
    if (contract.status !== ContractStatus.EXECUTING) {
      await store.setContractStatus(contract.id, ContractStatus.EXECUTING);
      contract.status = ContractStatus.EXECUTING;
      emit({ kind: "contract", roomId: contract.roomId, contractId: contract.id, contract });
    }
    await ensureMilestones(contract);
    for (const item of contract.terms?.lineItems ?? []) {
      if (item.kind === LineItemKind.IMMEDIATE) await payItem(contract, item, parties, railParties);
      else await holdItem(contract, item, parties, railParties);
    }
    return settle(contract.id, true);
  }

  /** Recomputes and stores the status; broadcasts the contract when it changed (or when asked). */
  async function settle(contractId: string, announce: boolean): Promise<Contract> {
    const contract = await load(contractId);
    const status = deriveContractStatus(contract);
    const changed = status !== contract.status;
    if (changed) {
      await store.setContractStatus(contract.id, status);
      contract.status = status;
    }
    if (changed || announce) {
      emit({ kind: "contract", roomId: contract.roomId, contractId: contract.id, contract });
      if (status === ContractStatus.ACTIVE || status === ContractStatus.COMPLETED) {
        const held = contract.holds.filter((h) => h.status === EscrowHoldStatus.HELD).length;
        step(contract, {
          step: "completed",
          status: ExecutionStepStatus.SUCCEEDED,
          detail: held > 0 ? `Payments made; ${held} escrow hold${held === 1 ? "" : "s"} wait for milestones` : "Every payment made and every milestone settled",
        });
      }
    }
    watchHolds(contract);
    return contract;
  }

  function validateForExecution(contract: Contract): void {
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

  // --- hold expiry -------------------------------------------------------------------------

  /** Node timers hold at most ~24.8 days; longer waits re-arm themselves. */
  const MAX_TIMER_MS = 2 ** 31 - 1;

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

  function watchHolds(contract: Contract): void {
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
    panelError(
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
        watchHolds(contract);
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
      await store.recordHoldResult(updated);
      emit({ kind: "hold", roomId: contract.roomId, contractId, hold: updated });
      if (updated.status === EscrowHoldStatus.EXPIRED) {
        panelError(contract, "hold_expired", `The escrow hold of ${formatMoney(hold.amountMinor, hold.currency)} lapsed before its milestone was settled`, false);
      }
      await syncMilestones(await load(contractId));
      await settle(contractId, false);
    });
  }

  /** Brings milestones in line with holds that changed outside the milestone service. */
  async function syncMilestones(contract: Contract): Promise<void> {
    for (const milestone of contract.milestones) {
      if (milestone.status === MilestoneStatus.COMPLETED || milestone.status === MilestoneStatus.RELEASED) continue;
      const hold = contract.holds.find((h) => h.lineItemId === milestone.lineItemId);
      if (!hold) continue;
      let next: Milestone | undefined;
      if (hold.status === EscrowHoldStatus.CAPTURED) {
        next = { ...milestone, status: MilestoneStatus.COMPLETED, capturedMinor: hold.capturedMinor, failureReason: "" };
      } else if (hold.status === EscrowHoldStatus.RELEASED) {
        next = { ...milestone, status: MilestoneStatus.RELEASED, capturedMinor: 0n, failureReason: "" };
      } else if (hold.status === EscrowHoldStatus.EXPIRED && milestone.status !== MilestoneStatus.FAILED) {
        next = { ...milestone, status: MilestoneStatus.FAILED, failureReason: "The escrow hold lapsed before capture" };
      }
      if (!next) continue;
      next.updatedAtMs = BigInt(now());
      await store.saveMilestone(next);
      emit({ kind: "milestone", roomId: contract.roomId, contractId: contract.id, milestone: next });
    }
  }

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
        return run(current);
      }),

    async resumePending() {
      const { payments, holds } = await store.listPendingIntents();
      const ids = new Set<string>([...payments, ...holds].map((x) => x.contractId));
      for (const c of await store.listExecutingContracts()) ids.add(c.id);
      const resumed: Contract[] = [];
      for (const id of ids) {
        try {
          resumed.push(
            await lock.run(id, async () => {
              const contract = await load(id);
              log.info({ contractId: id, roomId: contract.roomId }, "resuming contract execution");
              return run(contract);
            }),
          );
        } catch (err) {
          // One broken contract must not keep the others from finishing.
          log.error({ err, contractId: id }, "could not resume contract execution");
        }
      }
      return resumed;
    },

    reconcile: (contractId) =>
      lock.run(contractId, async () => {
        await syncMilestones(await load(contractId));
        return settle(contractId, false);
      }),

    releaseOutstandingHolds: (contractId) =>
      lock.run(contractId, async () => {
        const contract = await load(contractId);
        const railParties = await railPartiesFor(store, partiesOf(contract));
        for (const undo of undoPlan(contract)) {
          if (!undo.supported) continue; // immediate payments stay paid: there is no refund on the rails
          const hold = contract.holds.find((h) => h.lineItemId === undo.lineItemId)!;
          const item = contract.terms!.lineItems.find((i) => i.id === undo.lineItemId)!;
          const answer = await askRail(() => rail.release(undo.railReference, requestFor(contract, item, railParties, undo.idempotencyKey, undo.amountMinor)));
          const money = formatMoney(undo.amountMinor, undo.currency);
          if (answer instanceof PaymentRailError || answer.status !== "released") {
            const reason = answer instanceof PaymentRailError ? answer.message : `unexpected rail answer: ${answer.status}`;
            step(contract, { step: "release", lineItemId: item.id, userId: hold.payerUserId, status: ExecutionStepStatus.FAILED, detail: `Releasing ${money} failed: ${reason}` });
            panelError(contract, "release_failed", `Releasing the escrow hold of ${money} failed: ${reason}`, answer instanceof PaymentRailError && answer.retryable);
            continue;
          }
          const released: EscrowHold = { ...hold, status: EscrowHoldStatus.RELEASED, capturedMinor: 0n, failureReason: "", updatedAtMs: BigInt(now()) };
          await store.recordHoldResult(released);
          emit({ kind: "hold", roomId: contract.roomId, contractId: contract.id, hold: released });
          step(contract, { step: "release", lineItemId: item.id, userId: hold.payerUserId, status: ExecutionStepStatus.SUCCEEDED, detail: `${money} returned to the client` });
        }
        await syncMilestones(await load(contractId));
        return settle(contractId, false);
      }),

    watchHolds,

    close() {
      closed = true;
      for (const id of [...timers.keys()]) unwatch(id);
    },
  };
}

/** The hold status a rail answer means. */
export function holdStatusOf(result: RailResult): EscrowHoldStatus {
  switch (result.status) {
    case "held":
      return EscrowHoldStatus.HELD;
    case "captured":
      return EscrowHoldStatus.CAPTURED;
    case "released":
      return EscrowHoldStatus.RELEASED;
    case "failed":
      return EscrowHoldStatus.FAILED;
    case "succeeded":
      // A hold the rail reports as plainly paid was captured in full.
      return EscrowHoldStatus.CAPTURED;
  }
}

/**
 * Calls the rail: a `PaymentRailError` is an answer to record (a refusal), anything else is
 * thrown because the outcome is unknown and must be retried with the same key.
 */
export async function askRail(fn: () => Promise<RailResult>): Promise<RailResult | PaymentRailError> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PaymentRailError) return err;
    throw err;
  }
}
