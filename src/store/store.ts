import type { AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import type {
  Contract,
  ContractStatus,
  EscrowHold,
  Milestone,
  Negotiation,
  Payment,
  Signature,
} from "../../gen/handshake/v1/deal_pb.js";
import type { Balance } from "../../gen/handshake/v1/money_pb.js";
import type { PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import type { KeyedLock } from "../core/keyed-lock.js";

/** A user identity. Created by the first JoinRoom; the id is what tokens name. */
export interface UserRecord {
  id: string;
  createdAtMs: number;
}

/** One leg of a double-entry ledger transaction; the legs of a transaction sum to zero per currency. */
export interface LedgerLeg {
  /** Ledger account, e.g. `user:<id>:available`, `user:<id>:held`, `external:funding`. */
  account: string;
  currency: string;
  /** Signed minor units: positive credits the account, negative debits it. */
  amountMinor: bigint;
}

/** A balanced set of legs recorded atomically under one idempotency key. */
export interface LedgerTransaction {
  id: string;
  /** Same key twice records once: the second call returns the first transaction. */
  idempotencyKey: string;
  legs: LedgerLeg[];
  memo: string;
  atMs: number;
}

/** Options of `addSignature`. */
export interface SignatureOptions {
  /** Set in the same transaction when this signature is the last one the contract needed. */
  statusWhenFullySigned?: ContractStatus;
}

/** A capture or release of an escrow hold, decided and about to be sent to the rail. */
export interface SettlementIntent {
  /** The rail call's idempotency key (contract + line item + action); the intent's id. */
  idempotencyKey: string;
  contractId: string;
  milestoneId: string;
  holdId: string;
  action: "capture" | "release";
  amountMinor: bigint;
  createdAtMs: number;
}

/** What a settlement ended as, written whole. */
export interface SettlementOutcome {
  /** The intent this outcome answers; deleted with it. */
  intentKey?: string;
  /** The hold's new state (omitted when the rail refused and the hold stays as it was). */
  hold?: EscrowHold;
  milestone: Milestone;
  contractStatus?: ContractStatus;
}

/** A room code's current pair: who is or was in it, its invite code, where its history starts. */
export interface RoomRecord {
  roomId: string;
  /** Empty when anyone may join. */
  inviteCode: string;
  /** The pair's events are those with seq > this; earlier ones are an earlier pair's. */
  historyAfterSeq: bigint;
  createdAtMs: number;
  members: { userId: string; joinedAtMs: number; leftAtMs: number | undefined }[];
}

/** How `recordRoomEvent` stores an event. */
export interface RoomEventWrite {
  /** Events kept per room; older ones are trimmed in batches, so a few more may be held for a while. */
  keep: number;
  /** Only raise the seq mark: the event was numbered and delivered but is not kept (a partial transcript). */
  markOnly?: boolean;
}

/** What a room's stored log covers. */
export interface RoomLogState {
  /** Highest seq given out; numbering goes on after it. */
  lastSeq: bigint;
  /** Events up to this seq were trimmed or deleted (0n when none were). */
  trimmedThroughSeq: bigint;
}

/** A page request for a user's contracts, newest first. */
export interface ContractPage {
  limit: number;
  /** Opaque cursor from a previous page; undefined for the first. */
  cursor?: string;
}

/**
 * Everything that must outlive a room. One interface: SQLite as the embedded default
 * (sqlite-store.ts), PostgreSQL for several nodes (postgres-store.ts); open-store.ts picks one. Every method is atomic: what it writes is written whole or not at all.
 * Records are the generated proto messages; the store never invents its own shapes for them.
 */
export interface Store {
  // Users, profiles and server secrets.
  createUser(user: UserRecord): Promise<void>;
  getUser(id: string): Promise<UserRecord | undefined>;
  /** Stores the profile as given (including the Monzo token, which the API never returns). */
  saveProfile(userId: string, profile: AgentProfile): Promise<void>;
  /** Creates the user (unless they exist) and stores their profile in one transaction: both or neither. */
  createUserWithProfile(user: UserRecord, profile: AgentProfile): Promise<void>;
  getProfile(userId: string): Promise<AgentProfile | undefined>;
  /** Returns the stored value for `name`, storing `value` first when there is none. */
  getOrCreateSecret(name: string, value: string): Promise<string>;

  // Negotiations, with their rounds.
  saveNegotiation(negotiation: Negotiation): Promise<void>;
  getNegotiation(id: string): Promise<Negotiation | undefined>;

  // Contracts, assembled with signatures, payments, holds and milestones.
  /** Inserts a drafted contract with its milestones; its text and hash never change afterwards. */
  insertContract(contract: Contract): Promise<void>;
  getContract(id: string): Promise<Contract | undefined>;
  /** Contracts the user is a party to, newest first, and the cursor of the next page. */
  listContractsForUser(userId: string, page: ContractPage): Promise<{ contracts: Contract[]; nextCursor?: string }>;
  /**
   * Adds a signature in one transaction. Throws `StoreConflictError` when the signer already
   * signed. (Party and hash checks are the deal layer's; this is the last line of defence.)
   */
  addSignature(contractId: string, signature: Signature, options?: SignatureOptions): Promise<Contract>;
  setContractStatus(contractId: string, status: ContractStatus): Promise<void>;
  /**
   * Declines a contract in one transaction: only while it awaits signatures and not every party
   * has signed, else `StoreConflictError`. Records who and why; returns the contract.
   */
  declineContract(contractId: string, decline: { userId: string; reason: string; atMs: number }): Promise<Contract>;
  /** Contracts whose status is EXECUTING: their payments were interrupted and must be resumed. */
  listExecutingContracts(): Promise<Contract[]>;
  /** Contracts with the given status (e.g. ACTIVE ones, whose holds need expiry watching after a start). */
  listContractsWithStatus(status: ContractStatus): Promise<Contract[]>;

  // Money, as two-step records: the intent before the rail call, the result after.
  /** Inserts the intent unless one with its idempotency key exists; returns the stored record. */
  recordPaymentIntent(payment: Payment): Promise<Payment>;
  /** Overwrites status, rail reference, failure reason and updated time of the payment with this id. */
  recordPaymentResult(payment: Payment): Promise<void>;
  recordHoldIntent(hold: EscrowHold): Promise<EscrowHold>;
  recordHoldResult(hold: EscrowHold): Promise<void>;
  getPaymentByRailReference(railReference: string): Promise<Payment | undefined>;
  getHoldByRailReference(railReference: string): Promise<EscrowHold | undefined>;
  /** Payments and holds still PENDING: recorded before a rail call whose result was never recorded. */
  listPendingIntents(): Promise<{ payments: Payment[]; holds: EscrowHold[] }>;
  saveMilestone(milestone: Milestone): Promise<void>;

  // Milestone settlements: one transaction per decision.
  /**
   * Records a decided capture or release before its rail call, together with the milestone as the
   * decision left it (a confirmation, an approval), in one transaction. An intent with the same
   * key is kept; the stored one is returned.
   */
  recordSettlementIntent(intent: SettlementIntent, milestone?: Milestone): Promise<SettlementIntent>;
  /**
   * Records the outcome of a settlement in one transaction: the hold, the milestone, the contract's
   * new status when given, and the intent (by key) deleted.
   */
  recordSettlementOutcome(outcome: SettlementOutcome): Promise<void>;
  /** Intents whose outcome was never recorded (a crash between the intent and the rail's answer). */
  listSettlementIntents(): Promise<SettlementIntent[]>;

  // The embedded ledger.
  /** Records a balanced transaction once per idempotency key; returns it and whether it was a replay. */
  postLedgerTransaction(tx: LedgerTransaction): Promise<{ transaction: LedgerTransaction; replayed: boolean }>;
  /** The transaction recorded under `idempotencyKey`, if any. */
  getLedgerTransaction(idempotencyKey: string): Promise<LedgerTransaction | undefined>;
  getLedgerBalance(account: string, currency: string): Promise<bigint>;
  /** The user's balances per currency, from their ledger accounts. */
  getBalances(userId: string): Promise<Balance[]>;

  // Each room's recent event log, for PanelStream resume across a restart.
  /**
   * Stores one numbered event and raises the room's seq mark. A store that commits synchronously
   * (SQLite) has committed when it returns undefined, and throws what the write failed with; one
   * that cannot (PostgreSQL) returns a promise that settles once the event is committed, and the
   * event log holds the event back from every reader until it does (see event-log.ts).
   */
  recordRoomEvent(roomId: string, event: PanelEvent, write: RoomEventWrite): void | Promise<void>;
  /** Appends events (already numbered), raises the seq mark, and keeps at most `keep` newest for the room. */
  appendRoomEvents(roomId: string, events: PanelEvent[], keep: number): Promise<void>;
  /** Events with seq > afterSeq, oldest first. */
  loadRoomEvents(roomId: string, afterSeq: bigint): Promise<PanelEvent[]>;
  /** Highest seq the room ever gave out (stored, trimmed, deleted or never kept), 0n when none. */
  lastRoomSeq(roomId: string): Promise<bigint>;
  /** The room's seq mark and how far its stored events were trimmed or deleted. */
  getRoomLogState(roomId: string): Promise<RoomLogState>;
  /**
   * Deletes the stored events (transcripts included) of rooms whose last event is older than
   * `beforeMs`, except those `keep` says are live, and an earlier pair's events on a code whose
   * current pair started before `beforeMs`; seq marks stay. Returns the rooms swept.
   */
  deleteRoomLogsBefore(beforeMs: number, keep: (roomId: string) => boolean): Promise<string[]>;

  // Who a room belongs to (its current pair) and its invite code, across restarts.
  /** The room code's current record with its members, or undefined when the code was never used. */
  getRoomRecord(roomId: string): Promise<RoomRecord | undefined>;
  /** Starts a new pair on the code: replaces any earlier record, and its members, in one transaction. */
  startRoom(room: { roomId: string; inviteCode: string; historyAfterSeq: bigint; atMs: number }): Promise<void>;
  /** Records `userId` as a member of the room's current pair (again, when they had left). */
  addRoomMember(roomId: string, userId: string, atMs: number): Promise<void>;
  /** Records that `userId` left the room's current pair; no-op for a non-member. */
  markRoomMemberLeft(roomId: string, userId: string, atMs: number): Promise<void>;

  /**
   * Throws, with the reason, unless the store can take its write lock now (readiness: a closed
   * store, another process holding the database, a read-only database); writes nothing.
   */
  checkWritable(): Promise<void>;

  /**
   * Serialises a contract's money work (keyed by contract id) among everyone using this store: the
   * process for SQLite, which one process owns; every node for PostgreSQL (advisory locks).
   */
  readonly contractLock: KeyedLock;

  close(): Promise<void>;
}

/** A write that conflicts with what is stored (a second signature by the same party, say). */
export class StoreConflictError extends Error {
  override readonly name = "StoreConflictError";
}
