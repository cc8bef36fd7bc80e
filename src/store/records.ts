/**
 * What both stores share: the rows they read, turned into proto messages, and the checks made
 * before a write. One copy, so SQLite and PostgreSQL build byte-for-byte the same records.
 */
import { createHash } from "node:crypto";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import {
  ContractSchema,
  EscrowHoldSchema,
  MilestoneSchema,
  MilestoneTermsSchema,
  NegotiationRoundSchema,
  NegotiationSchema,
  PartySchema,
  PaymentSchema,
  ProposalSchema,
  SignatureSchema,
  type Contract,
  type EscrowHold,
  type Milestone,
  type Negotiation,
  type Payment,
} from "../../gen/handshake/v1/deal_pb.js";
import type { LedgerLeg, LedgerTransaction, SettlementIntent } from "./store.js";

/** Most contracts one `listContractsForUser` page returns; larger limits are cut to this. */
export const MAX_CONTRACT_PAGE = 100;

// Rows as the drivers return them with every integer a bigint (better-sqlite3 with safe integers
// on; pg with the type parsers of postgres-store.ts).
export interface UserRow { id: string; created_at_ms: bigint }
export interface NegotiationRow {
  id: string; room_id: string; status: bigint; initiator_user_id: string; current_proposal: Buffer | null;
  max_rounds: bigint; started_at_ms: bigint; expires_at_ms: bigint; end_reason: string;
}
export interface RoundRow { number: bigint; from_user_id: string; action: bigint; proposal: Buffer | null; reason: string; at_ms: bigint }
export interface ContractRow {
  id: string; room_id: string; negotiation_id: string; title: string; text: string; text_sha256: string;
  terms: Buffer | null; status: bigint; created_at_ms: bigint;
}
export interface PartyRow { user_id: string; display_name: string; role: bigint }
export interface SignatureRow { user_id: string; text_sha256: string; signed_at_ms: bigint }
export interface PaymentRow {
  id: string; contract_id: string; line_item_id: string; payer_user_id: string; payee_user_id: string;
  amount_minor: bigint; currency: string; status: bigint; idempotency_key: string; rail_reference: string;
  failure_reason: string; rail: bigint; updated_at_ms: bigint;
}
export interface HoldRow extends PaymentRow { captured_minor: bigint; expires_at_ms: bigint }
export interface MilestoneRow {
  id: string; contract_id: string; line_item_id: string; terms: Buffer | null; status: bigint;
  provider_confirmed: bigint; client_confirmed: bigint; proposed_amount_minor: bigint | null; min_minor: bigint;
  max_minor: bigint; currency: string; captured_minor: bigint; failure_reason: string; updated_at_ms: bigint;
}
export interface IntentRow {
  idempotency_key: string; contract_id: string; milestone_id: string; hold_id: string; action: string;
  amount_minor: bigint; created_at_ms: bigint;
}
export interface LedgerTxRow { id: string; idempotency_key: string; memo: string; at_ms: bigint }
export interface LegRow { account: string; currency: string; amount_minor: bigint }

export const CONTRACT_COLUMNS = "id, room_id, negotiation_id, title, text, text_sha256, terms, status, created_at_ms";
export const PAYMENT_COLUMNS =
  "id, contract_id, line_item_id, payer_user_id, payee_user_id, amount_minor, currency, status, idempotency_key, rail_reference, failure_reason, rail, updated_at_ms";
export const HOLD_COLUMNS = `${PAYMENT_COLUMNS}, captured_minor, expires_at_ms`;
export const MILESTONE_COLUMNS =
  "id, contract_id, line_item_id, terms, status, provider_confirmed, client_confirmed, proposed_amount_minor, min_minor, max_minor, currency, captured_minor, failure_reason, updated_at_ms";

export function fromIntentRow(r: IntentRow): SettlementIntent {
  return {
    idempotencyKey: r.idempotency_key,
    contractId: r.contract_id,
    milestoneId: r.milestone_id,
    holdId: r.hold_id,
    action: r.action === "release" ? "release" : "capture",
    amountMinor: r.amount_minor,
    createdAtMs: Number(r.created_at_ms),
  };
}

export function fromPaymentRow(r: PaymentRow): Payment {
  return create(PaymentSchema, {
    id: r.id,
    contractId: r.contract_id,
    lineItemId: r.line_item_id,
    payerUserId: r.payer_user_id,
    payeeUserId: r.payee_user_id,
    amountMinor: r.amount_minor,
    currency: r.currency,
    status: Number(r.status),
    idempotencyKey: r.idempotency_key,
    railReference: r.rail_reference,
    failureReason: r.failure_reason,
    rail: Number(r.rail),
    updatedAtMs: r.updated_at_ms,
  });
}

export function fromHoldRow(r: HoldRow): EscrowHold {
  return create(EscrowHoldSchema, {
    id: r.id,
    contractId: r.contract_id,
    lineItemId: r.line_item_id,
    payerUserId: r.payer_user_id,
    payeeUserId: r.payee_user_id,
    amountMinor: r.amount_minor,
    capturedMinor: r.captured_minor,
    currency: r.currency,
    status: Number(r.status),
    idempotencyKey: r.idempotency_key,
    railReference: r.rail_reference,
    expiresAtMs: r.expires_at_ms,
    failureReason: r.failure_reason,
    rail: Number(r.rail),
    updatedAtMs: r.updated_at_ms,
  });
}

export function fromMilestoneRow(r: MilestoneRow): Milestone {
  return create(MilestoneSchema, {
    id: r.id,
    contractId: r.contract_id,
    lineItemId: r.line_item_id,
    terms: r.terms ? fromBinary(MilestoneTermsSchema, r.terms) : undefined,
    status: Number(r.status),
    providerConfirmed: r.provider_confirmed === 1n,
    clientConfirmed: r.client_confirmed === 1n,
    proposedAmountMinor: r.proposed_amount_minor ?? 0n,
    minMinor: r.min_minor,
    maxMinor: r.max_minor,
    currency: r.currency,
    capturedMinor: r.captured_minor,
    failureReason: r.failure_reason,
    updatedAtMs: r.updated_at_ms,
  });
}

/** Refuses a transaction whose legs do not sum to zero in every currency, or that is malformed. */
export function checkBalanced(tx: LedgerTransaction): void {
  if (tx.legs.length === 0) throw new Error(`ledger transaction ${tx.id} has no legs`);
  const sums = new Map<string, bigint>();
  for (const leg of tx.legs) {
    requireText("ledger account", leg.account);
    if (!/^[A-Z]{3}$/.test(leg.currency)) throw new Error(`ledger transaction ${tx.id}: currency "${leg.currency}" is not an ISO 4217 code`);
    if (typeof leg.amountMinor !== "bigint") throw new TypeError(`ledger transaction ${tx.id}: amountMinor must be a bigint`);
    sums.set(leg.currency, (sums.get(leg.currency) ?? 0n) + leg.amountMinor);
  }
  for (const [currency, sum] of sums) {
    if (sum !== 0n) throw new Error(`ledger transaction ${tx.id} is unbalanced: ${currency} legs sum to ${sum}`);
  }
}

export function sameLegs(a: LedgerLeg[], b: LedgerLeg[]): boolean {
  return a.length === b.length && a.every((l, i) => {
    const o = b[i];
    return o !== undefined && o.account === l.account && o.currency === l.currency && o.amountMinor === l.amountMinor;
  });
}

export function optionalBlob<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc> | undefined): Uint8Array | null {
  return message === undefined ? null : toBinary(schema, message);
}

export function prefixed(alias: string, columns: string): string {
  return columns
    .split(",")
    .map((c) => `${alias}.${c.trim()}`)
    .join(", ");
}

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

export function requireKeep(keep: number): void {
  if (!Number.isInteger(keep) || keep < 1) throw new RangeError(`keep must be a positive integer, got ${keep}`);
}

/** Events a room may hold past its `keep` before `recordRoomEvent` trims it. */
export function trimSlack(keep: number): number {
  return Math.max(16, Math.floor(keep / 8));
}

export function requireText(what: string, value: string): void {
  if (value === "") throw new Error(`${what} must not be empty`);
}

/** What a contract row is assembled with: its other tables' rows, as read in the same snapshot. */
export interface ContractParts {
  parties: PartyRow[];
  signatures: SignatureRow[];
  payments: PaymentRow[];
  holds: HoldRow[];
  milestones: MilestoneRow[];
  decline: { user_id: string; reason: string } | undefined;
}

/** Builds the full Contract message: the row plus its parties, signatures, money and milestones. */
export function assembleContract(row: ContractRow, parts: ContractParts): Contract {
  const terms = row.terms ? fromBinary(ProposalSchema, row.terms) : undefined;
  // Money and milestones are listed in the order of the contract's line items, then as recorded.
  const itemOrder = new Map((terms?.lineItems ?? []).map((item, i) => [item.id, i]));
  const byItem = <T extends { lineItemId: string }>(list: T[]): T[] =>
    list.sort((a, b) => (itemOrder.get(a.lineItemId) ?? itemOrder.size) - (itemOrder.get(b.lineItemId) ?? itemOrder.size));
  return create(ContractSchema, {
    id: row.id,
    roomId: row.room_id,
    negotiationId: row.negotiation_id,
    title: row.title,
    text: row.text,
    textSha256: row.text_sha256,
    parties: parts.parties.map((p) => create(PartySchema, { userId: p.user_id, displayName: p.display_name, role: Number(p.role) })),
    terms,
    signatures: parts.signatures.map((s) => create(SignatureSchema, { userId: s.user_id, textSha256: s.text_sha256, signedAtMs: s.signed_at_ms })),
    status: Number(row.status),
    createdAtMs: row.created_at_ms,
    payments: byItem(parts.payments.map(fromPaymentRow)),
    holds: byItem(parts.holds.map(fromHoldRow)),
    milestones: byItem(parts.milestones.map(fromMilestoneRow)),
    ...(parts.decline ? { declinedReason: parts.decline.reason, declinedByUserId: parts.decline.user_id } : {}),
  });
}

/** Builds the Negotiation message from its row and its rounds, oldest first. */
export function assembleNegotiation(row: NegotiationRow, rounds: RoundRow[]): Negotiation {
  return create(NegotiationSchema, {
    id: row.id,
    roomId: row.room_id,
    status: Number(row.status),
    initiatorUserId: row.initiator_user_id,
    rounds: rounds.map((r) =>
      create(NegotiationRoundSchema, {
        number: Number(r.number),
        fromUserId: r.from_user_id,
        action: Number(r.action),
        proposal: r.proposal ? fromBinary(ProposalSchema, r.proposal) : undefined,
        reason: r.reason,
        atMs: r.at_ms,
      }),
    ),
    currentProposal: row.current_proposal ? fromBinary(ProposalSchema, row.current_proposal) : undefined,
    maxRounds: Number(row.max_rounds),
    startedAtMs: row.started_at_ms,
    expiresAtMs: row.expires_at_ms,
    endReason: row.end_reason,
  });
}

/** A ledger transaction from its row and its legs in order. */
export function toLedgerTransaction(row: LedgerTxRow, legs: LegRow[]): LedgerTransaction {
  return {
    id: row.id,
    idempotencyKey: row.idempotency_key,
    memo: row.memo,
    atMs: Number(row.at_ms),
    legs: legs.map((l) => ({ account: l.account, currency: l.currency, amountMinor: l.amount_minor })),
  };
}
