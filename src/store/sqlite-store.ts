import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import type { Database } from "better-sqlite3";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import {
  ContractStatus,
  EscrowHoldStatus,
  MilestoneTermsSchema,
  PaymentStatus,
  ProposalSchema,
  type Contract,
  type EscrowHold,
  type Milestone,
  type Negotiation,
  type Payment,
  type Signature,
} from "../../gen/handshake/v1/deal_pb.js";
import { PanelEventSchema, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { BalanceSchema, type Balance } from "../../gen/handshake/v1/money_pb.js";
import { AgentProfileSchema, type AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import { createKeyedLock, type KeyedLock } from "../core/keyed-lock.js";
import { silentLogger } from "../core/log.js";
import { acquireFileLock, type FileLock } from "./file-lock.js";
import { fromContractCursor, toContractCursor } from "./cursor.js";
import { ledgerAccounts } from "./ledger-accounts.js";
import { withKillPoint } from "./kill-point.js";
import { migrate } from "./migrate.js";
import {
  assembleContract,
  assembleNegotiation,
  checkBalanced,
  CONTRACT_COLUMNS,
  fromHoldRow,
  fromIntentRow,
  fromPaymentRow,
  HOLD_COLUMNS,
  MAX_CONTRACT_PAGE,
  MILESTONE_COLUMNS,
  optionalBlob,
  PAYMENT_COLUMNS,
  prefixed,
  requireKeep,
  requireText,
  sameLegs,
  sha256Hex,
  toLedgerTransaction,
  trimSlack,
  type ContractRow,
  type HoldRow,
  type IntentRow,
  type LedgerTxRow,
  type LegRow,
  type MilestoneRow,
  type NegotiationRow,
  type PartyRow,
  type PaymentRow,
  type RoundRow,
  type SignatureRow,
  type UserRow,
} from "./records.js";
import { startWalCheckpointer, type WalCheckpointer } from "./wal-checkpointer.js";
import {
  StoreConflictError,
  type ContractPage,
  type LedgerTransaction,
  type RoomEventWrite,
  type RoomLogState,
  type RoomRecord,
  type SettlementIntent,
  type SettlementOutcome,
  type SignatureOptions,
  type Store,
  type UserRecord,
} from "./store.js";

export { MAX_CONTRACT_PAGE } from "./records.js";

/** How long a write waits for another connection's lock before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5_000;
/** How long a readiness check waits for another writer: the event loop waits with it. */
const CHECK_BUSY_TIMEOUT_MS = 100;

/** Options for `createSqliteStore`. */
export interface SqliteStoreOptions {
  /** Database file; its folder is created when missing. `:memory:` gives a throwaway store. */
  path: string;
  log?: Logger;
  /** How often the worker thread checkpoints the WAL (see wal-checkpointer.ts); default 250 ms. */
  checkpointIntervalMs?: number;
}

/** SQLite's own default: the automatic checkpoint, used when no checkpointer thread runs. */
const AUTO_CHECKPOINT_PAGES = 1000;
/**
 * With the checkpointer thread, a commit checkpoints only past this many WAL pages (16 MiB): the
 * worker can only start the WAL over between commits, so a loop committing without a pause would
 * otherwise grow it without bound.
 */
const FALLBACK_CHECKPOINT_PAGES = 4096;

/** The ledger account holding what a user can spend (see ledger-accounts.ts, where the names live). */
export const availableAccount = ledgerAccounts.available;

/** The ledger account holding a payer's money while an escrow hold is open. */
export const heldAccount = ledgerAccounts.held;

/** The ledger account holding what a payee has been paid (captures and immediate payments). */
export const receivedAccount = ledgerAccounts.received;

/** The ledger's counterpart for money entering or leaving the embedded system (top-ups, refunds out). */
export const EXTERNAL_FUNDING_ACCOUNT = ledgerAccounts.externalFunding;

/**
 * Opens (creating and migrating as needed) the SQLite store at `options.path`.
 *
 * Ledger account convention, shared with the ledger payment rail: a user's money lives in
 * `user:<id>:available`, `user:<id>:held` and `user:<id>:received`, and money from outside is
 * `external:funding`. A balance is the sum of the account's legs: funding moves `external:funding`
 * → `available`; a hold moves the payer's `available` → `held`; a capture moves payer's `held` →
 * payee's `received`; a release moves `held` → `available`; an immediate payment moves payer's
 * `available` → payee's `received`. `getBalances` reports exactly those three accounts.
 *
 * Durability: WAL journal with `synchronous = NORMAL`: a transaction that returned survives the
 * process dying (SIGKILL, crash) right after; only a power loss or OS crash can roll back the last
 * few, never corrupt the file. That is safe for money because every rail call's idempotency key
 * is derived from contract + line item + action: a lost record is redone with the same key and the
 * rail answers with its first outcome. FULL would put an fsync on the event loop per commit
 * (0.5 ms p50, 4.6 ms p99 here), which every room event pays. Foreign keys are enforced.
 *
 * One process owns the file: `<path>.lock` is taken first and held until `close`, so a second
 * server on the same DATA_DIR stops at start with DataDirLockedError naming the folder and the
 * pid that has it (see file-lock.ts).
 */
export async function createSqliteStore(options: SqliteStoreOptions): Promise<Store> {
  const log = (options.log ?? silentLogger).child({ component: "store" });
  let fileLock: FileLock | undefined;
  if (options.path !== ":memory:") {
    mkdirSync(dirname(options.path), { recursive: true });
    fileLock = acquireFileLock(`${options.path}.lock`);
  }
  let db: Database;
  try {
    db = new BetterSqlite3(options.path, { timeout: BUSY_TIMEOUT_MS });
  } catch (err) {
    fileLock?.release();
    throw err;
  }
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.pragma("foreign_keys = ON");
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // Every INTEGER comes back as bigint: money and Unix milliseconds never pass through a double.
    db.defaultSafeIntegers(true);
    const result = migrate(db);
    let checkpointer: WalCheckpointer | undefined;
    if (options.path !== ":memory:") {
      checkpointer = await startWalCheckpointer({
        path: options.path,
        intervalMs: options.checkpointIntervalMs ?? 250,
        busyTimeoutMs: BUSY_TIMEOUT_MS,
        log,
        onFailure: () => {
          if (db.open) db.pragma(`wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
        },
      });
      db.pragma(`wal_autocheckpoint = ${FALLBACK_CHECKPOINT_PAGES}`);
    }
    log.info({ path: options.path, fromVersion: result.fromVersion, toVersion: result.toVersion }, "store opened");
    // Inert unless HANDSHAKE_KILL_AT_WRITE is set (crash tests): see kill-point.ts.
    return withKillPoint(new SqliteStore(db, log, checkpointer, fileLock));
  } catch (err) {
    db.close();
    fileLock?.release();
    throw err;
  }
}


/** Every statement the store runs, prepared once at open. */
function prepareStatements(db: Database) {
  const p = (sql: string) => db.prepare(sql);
  return {
    insertUser: p("INSERT INTO users (id, created_at_ms) VALUES (?, ?)"),
    getUser: p("SELECT id, created_at_ms FROM users WHERE id = ?"),
    upsertProfile: p(
      "INSERT INTO profiles (user_id, profile) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET profile = excluded.profile",
    ),
    getProfile: p("SELECT profile FROM profiles WHERE user_id = ?"),
    insertSecret: p("INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"),
    getSecret: p("SELECT value FROM secrets WHERE name = ?"),

    upsertNegotiation: p(`INSERT INTO negotiations
        (id, room_id, status, initiator_user_id, current_proposal, max_rounds, started_at_ms, expires_at_ms, end_reason)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET room_id = excluded.room_id, status = excluded.status,
        initiator_user_id = excluded.initiator_user_id, current_proposal = excluded.current_proposal,
        max_rounds = excluded.max_rounds, started_at_ms = excluded.started_at_ms,
        expires_at_ms = excluded.expires_at_ms, end_reason = excluded.end_reason`),
    getNegotiation: p(
      "SELECT id, room_id, status, initiator_user_id, current_proposal, max_rounds, started_at_ms, expires_at_ms, end_reason FROM negotiations WHERE id = ?",
    ),
    deleteRounds: p("DELETE FROM negotiation_rounds WHERE negotiation_id = ?"),
    insertRound: p(
      "INSERT INTO negotiation_rounds (negotiation_id, number, from_user_id, action, proposal, reason, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
    ),
    getRounds: p(
      "SELECT number, from_user_id, action, proposal, reason, at_ms FROM negotiation_rounds WHERE negotiation_id = ? ORDER BY number",
    ),

    insertContract: p(`INSERT INTO contracts (${CONTRACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    getContract: p(`SELECT ${CONTRACT_COLUMNS} FROM contracts WHERE id = ?`),
    setContractStatus: p("UPDATE contracts SET status = ? WHERE id = ?"),
    declineContract: p("UPDATE contracts SET status = ? WHERE id = ? AND status = ?"),
    insertDecline: p("INSERT INTO contract_declines (contract_id, user_id, reason, declined_at_ms) VALUES (?, ?, ?, ?)"),
    getDecline: p("SELECT user_id, reason FROM contract_declines WHERE contract_id = ?"),
    contractsByStatus: p(`SELECT ${CONTRACT_COLUMNS} FROM contracts WHERE status = ? ORDER BY created_at_ms, id`),
    contractsForUser: p(`SELECT ${prefixed("c", CONTRACT_COLUMNS)} FROM contracts c
      JOIN contract_parties p ON p.contract_id = c.id
      WHERE p.user_id = ?
      ORDER BY c.created_at_ms DESC, c.id DESC LIMIT ?`),
    contractsForUserAfter: p(`SELECT ${prefixed("c", CONTRACT_COLUMNS)} FROM contracts c
      JOIN contract_parties p ON p.contract_id = c.id
      WHERE p.user_id = ? AND (c.created_at_ms < ? OR (c.created_at_ms = ? AND c.id < ?))
      ORDER BY c.created_at_ms DESC, c.id DESC LIMIT ?`),
    insertParty: p(
      "INSERT INTO contract_parties (contract_id, user_id, display_name, role, position) VALUES (?, ?, ?, ?, ?)",
    ),
    getParties: p("SELECT user_id, display_name, role FROM contract_parties WHERE contract_id = ? ORDER BY position"),
    getParty: p("SELECT user_id FROM contract_parties WHERE contract_id = ? AND user_id = ?"),
    insertSignature: p(
      "INSERT INTO signatures (contract_id, user_id, text_sha256, signed_at_ms) VALUES (?, ?, ?, ?)",
    ),
    getSignature: p("SELECT user_id FROM signatures WHERE contract_id = ? AND user_id = ?"),
    getSignatures: p(
      "SELECT user_id, text_sha256, signed_at_ms FROM signatures WHERE contract_id = ? ORDER BY signed_at_ms, user_id",
    ),

    insertPayment: p(`INSERT INTO payments (${PAYMENT_COLUMNS}, created_at_ms)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING`),
    paymentByKey: p(`SELECT ${PAYMENT_COLUMNS} FROM payments WHERE idempotency_key = ?`),
    paymentByRailReference: p(
      `SELECT ${PAYMENT_COLUMNS} FROM payments WHERE rail_reference = ? ORDER BY created_at_ms, id LIMIT 1`,
    ),
    paymentsForContract: p(`SELECT ${PAYMENT_COLUMNS} FROM payments WHERE contract_id = ? ORDER BY created_at_ms, id`),
    updatePayment: p(
      "UPDATE payments SET status = ?, rail_reference = ?, failure_reason = ?, updated_at_ms = ? WHERE id = ?",
    ),
    // The literal status (not a parameter) lets SQLite use the partial index of migration 3.
    pendingPayments: p(
      `SELECT ${PAYMENT_COLUMNS} FROM payments WHERE status = ${PaymentStatus.PENDING} ORDER BY created_at_ms, id`,
    ),

    insertHold: p(`INSERT INTO escrow_holds (${HOLD_COLUMNS}, created_at_ms)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING`),
    holdByKey: p(`SELECT ${HOLD_COLUMNS} FROM escrow_holds WHERE idempotency_key = ?`),
    holdByRailReference: p(
      `SELECT ${HOLD_COLUMNS} FROM escrow_holds WHERE rail_reference = ? ORDER BY created_at_ms, id LIMIT 1`,
    ),
    holdsForContract: p(`SELECT ${HOLD_COLUMNS} FROM escrow_holds WHERE contract_id = ? ORDER BY created_at_ms, id`),
    updateHold: p(`UPDATE escrow_holds SET status = ?, rail_reference = ?, failure_reason = ?, updated_at_ms = ?,
      captured_minor = ?, expires_at_ms = ? WHERE id = ?`),
    pendingHolds: p(
      `SELECT ${HOLD_COLUMNS} FROM escrow_holds WHERE status = ${EscrowHoldStatus.PENDING} ORDER BY created_at_ms, id`,
    ),

    // The WHERE keeps an upsert from moving a milestone to another contract.
    upsertMilestone: p(`INSERT INTO milestones (${MILESTONE_COLUMNS}, created_at_ms)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET line_item_id = excluded.line_item_id, terms = excluded.terms,
        status = excluded.status, provider_confirmed = excluded.provider_confirmed,
        client_confirmed = excluded.client_confirmed, proposed_amount_minor = excluded.proposed_amount_minor,
        min_minor = excluded.min_minor, max_minor = excluded.max_minor, currency = excluded.currency,
        captured_minor = excluded.captured_minor, failure_reason = excluded.failure_reason,
        updated_at_ms = excluded.updated_at_ms
      WHERE milestones.contract_id = excluded.contract_id`),
    milestonesForContract: p(
      `SELECT ${MILESTONE_COLUMNS} FROM milestones WHERE contract_id = ? ORDER BY created_at_ms, id`,
    ),

    insertIntent: p(`INSERT INTO settlement_intents
        (idempotency_key, contract_id, milestone_id, hold_id, action, amount_minor, created_at_ms)
      VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING`),
    intentByKey: p(
      "SELECT idempotency_key, contract_id, milestone_id, hold_id, action, amount_minor, created_at_ms FROM settlement_intents WHERE idempotency_key = ?",
    ),
    openIntents: p(
      "SELECT idempotency_key, contract_id, milestone_id, hold_id, action, amount_minor, created_at_ms FROM settlement_intents ORDER BY created_at_ms, idempotency_key",
    ),
    deleteIntent: p("DELETE FROM settlement_intents WHERE idempotency_key = ?"),
    countUnsignedParties: p(`SELECT COUNT(*) AS n FROM contract_parties p
      WHERE p.contract_id = ? AND NOT EXISTS (SELECT 1 FROM signatures s WHERE s.contract_id = p.contract_id AND s.user_id = p.user_id)`),

    insertLedgerTx: p("INSERT INTO ledger_transactions (id, idempotency_key, memo, at_ms) VALUES (?, ?, ?, ?)"),
    ledgerTxByKey: p("SELECT id, idempotency_key, memo, at_ms FROM ledger_transactions WHERE idempotency_key = ?"),
    insertLeg: p(
      "INSERT INTO ledger_entries (transaction_id, leg_index, account, currency, amount_minor) VALUES (?, ?, ?, ?, ?)",
    ),
    legsOf: p("SELECT account, currency, amount_minor FROM ledger_entries WHERE transaction_id = ? ORDER BY leg_index"),
    balance: p(
      "SELECT COALESCE(SUM(amount_minor), 0) AS balance FROM ledger_entries WHERE account = ? AND currency = ?",
    ),
    balancesOf: p(`SELECT account, currency, SUM(amount_minor) AS balance FROM ledger_entries
      WHERE account IN (?, ?, ?) GROUP BY account, currency ORDER BY currency, account`),

    insertEvent: p("INSERT INTO room_events (room_id, seq, at_ms, event) VALUES (?, ?, ?, ?)"),
    keepCutoff: p("SELECT seq FROM room_events WHERE room_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?"),
    trimEvents: p("DELETE FROM room_events WHERE room_id = ? AND seq < ?"),
    eventsAfter: p("SELECT event FROM room_events WHERE room_id = ? AND seq > ? ORDER BY seq"),
    lastSeq: p(
      "SELECT MAX(COALESCE((SELECT last_seq FROM room_logs WHERE room_id = ?), 0), COALESCE((SELECT MAX(seq) FROM room_events WHERE room_id = ?), 0)) AS seq",
    ),
    raiseLogMark: p(`INSERT INTO room_logs (room_id, last_seq, trimmed_through_seq, updated_at_ms, stored_events) VALUES (?, ?, 0, ?, ?)
      ON CONFLICT (room_id) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq), updated_at_ms = excluded.updated_at_ms,
        stored_events = stored_events + excluded.stored_events
      RETURNING stored_events`),
    logState: p("SELECT last_seq, trimmed_through_seq FROM room_logs WHERE room_id = ?"),
    newestBefore: p("SELECT MAX(seq) AS seq FROM room_events WHERE room_id = ? AND seq < ?"),
    markTrimmed: p("UPDATE room_logs SET trimmed_through_seq = MAX(trimmed_through_seq, ?), stored_events = ? WHERE room_id = ?"),
    staleLogs: p("SELECT room_id FROM room_logs WHERE stored_events > 0 AND updated_at_ms < ? ORDER BY updated_at_ms"),
    deleteRoomEvents: p("DELETE FROM room_events WHERE room_id = ?"),
    markDeleted: p("UPDATE room_logs SET trimmed_through_seq = last_seq, stored_events = 0 WHERE room_id = ?"),
    // Rooms whose current pair started before the cutoff and still store an earlier pair's events.
    earlierPairs: p(`SELECT r.room_id, r.history_after_seq FROM rooms r
      WHERE r.history_after_seq > 0 AND r.created_at_ms < ?
        AND EXISTS (SELECT 1 FROM room_events e WHERE e.room_id = r.room_id AND e.seq <= r.history_after_seq)`),
    deleteEventsThrough: p("DELETE FROM room_events WHERE room_id = ? AND seq <= ?"),
    markDeletedThrough: p(
      "UPDATE room_logs SET trimmed_through_seq = MAX(trimmed_through_seq, ?), stored_events = MAX(0, stored_events - ?) WHERE room_id = ?",
    ),
    getRoom: p("SELECT room_id, invite_code, history_after_seq, created_at_ms FROM rooms WHERE room_id = ?"),
    roomMembers: p("SELECT user_id, joined_at_ms, left_at_ms FROM room_members WHERE room_id = ? ORDER BY joined_at_ms, user_id"),
    deleteRoomMembers: p("DELETE FROM room_members WHERE room_id = ?"),
    upsertRoom: p(
      "INSERT INTO rooms (room_id, invite_code, history_after_seq, created_at_ms) VALUES (?, ?, ?, ?) " +
        "ON CONFLICT (room_id) DO UPDATE SET invite_code = excluded.invite_code, history_after_seq = excluded.history_after_seq, created_at_ms = excluded.created_at_ms",
    ),
    upsertRoomMember: p(
      "INSERT INTO room_members (room_id, user_id, joined_at_ms, left_at_ms) VALUES (?, ?, ?, NULL) " +
        "ON CONFLICT (room_id, user_id) DO UPDATE SET left_at_ms = NULL",
    ),
    markMemberLeft: p("UPDATE room_members SET left_at_ms = ? WHERE room_id = ? AND user_id = ? AND left_at_ms IS NULL"),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

/**
 * better-sqlite3 is synchronous. Each write is one IMMEDIATE transaction (the write lock is taken at
 * BEGIN, so a check-then-insert cannot race another connection); a read of several tables is one
 * read transaction, so an assembled contract is a consistent snapshot.
 */
class SqliteStore implements Store {
  private closed = false;
  private readonly q: Statements;
  /** One process owns the file, so a lock in this process serialises a contract's work everywhere. */
  readonly contractLock: KeyedLock = createKeyedLock();

  constructor(
    private readonly db: Database,
    private readonly log: Logger,
    private readonly checkpointer: WalCheckpointer | undefined,
    private readonly fileLock: FileLock | undefined,
  ) {
    this.q = prepareStatements(db);
  }

  async createUser(user: UserRecord): Promise<void> {
    this.live();
    requireText("user id", user.id);
    try {
      this.q.insertUser.run(user.id, user.createdAtMs);
    } catch (err) {
      throw conflictOr(err, `user ${user.id} already exists`);
    }
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    this.live();
    const row = this.q.getUser.get(id) as UserRow | undefined;
    return row && { id: row.id, createdAtMs: Number(row.created_at_ms) };
  }

  async saveProfile(userId: string, profile: AgentProfile): Promise<void> {
    this.live();
    try {
      this.q.upsertProfile.run(userId, toBinary(AgentProfileSchema, profile));
    } catch (err) {
      throw explain(err, `saving profile of user ${userId}`);
    }
  }

  async createUserWithProfile(user: UserRecord, profile: AgentProfile): Promise<void> {
    this.live();
    requireText("user id", user.id);
    this.db
      .transaction(() => {
        if (!this.q.getUser.get(user.id)) this.q.insertUser.run(user.id, user.createdAtMs);
        this.q.upsertProfile.run(user.id, toBinary(AgentProfileSchema, profile));
      })
      .immediate();
  }

  async getProfile(userId: string): Promise<AgentProfile | undefined> {
    this.live();
    const row = this.q.getProfile.get(userId) as { profile: Buffer } | undefined;
    return row && fromBinary(AgentProfileSchema, row.profile);
  }

  async getOrCreateSecret(name: string, value: string): Promise<string> {
    this.live();
    requireText("secret name", name);
    return this.db
      .transaction(() => {
        this.q.insertSecret.run(name, value);
        return (this.q.getSecret.get(name) as { value: string }).value;
      })
      .immediate();
  }

  async saveNegotiation(n: Negotiation): Promise<void> {
    this.live();
    requireText("negotiation id", n.id);
    this.db
      .transaction(() => {
        this.q.upsertNegotiation.run(
          n.id, n.roomId, n.status, n.initiatorUserId, optionalBlob(ProposalSchema, n.currentProposal),
          n.maxRounds, n.startedAtMs, n.expiresAtMs, n.endReason,
        );
        // Rounds are replaced as a set: the message is the truth, and a half-updated list is impossible.
        this.q.deleteRounds.run(n.id);
        for (const r of n.rounds) {
          this.q.insertRound.run(n.id, r.number, r.fromUserId, r.action, optionalBlob(ProposalSchema, r.proposal), r.reason, r.atMs);
        }
      })
      .immediate();
  }

  async getNegotiation(id: string): Promise<Negotiation | undefined> {
    this.live();
    return this.db.transaction(() => {
      const row = this.q.getNegotiation.get(id) as NegotiationRow | undefined;
      if (!row) return undefined;
      return assembleNegotiation(row, this.q.getRounds.all(id) as RoundRow[]);
    })();
  }

  async insertContract(c: Contract): Promise<void> {
    this.live();
    requireText("contract id", c.id);
    const actual = sha256Hex(c.text);
    if (actual !== c.textSha256) {
      throw new Error(`contract ${c.id}: text_sha256 ${c.textSha256} is not the SHA-256 of its text (${actual})`);
    }
    this.db
      .transaction(() => {
        try {
          this.q.insertContract.run(
            c.id, c.roomId, c.negotiationId, c.title, c.text, c.textSha256,
            optionalBlob(ProposalSchema, c.terms), c.status, c.createdAtMs,
          );
        } catch (err) {
          throw conflictOr(err, `contract ${c.id} already exists`);
        }
        c.parties.forEach((party, i) => {
          try {
            this.q.insertParty.run(c.id, party.userId, party.displayName, party.role, i);
          } catch (err) {
            throw conflictOr(err, `contract ${c.id} names user ${party.userId} twice`);
          }
        });
        // Whatever the drafted message already carries is stored too, so nothing is silently dropped.
        for (const s of c.signatures) this.insertSignatureRow(c, s);
        for (const p of c.payments) this.insertPaymentRow(p);
        for (const h of c.holds) this.insertHoldRow(h);
        for (const m of c.milestones) {
          if (m.contractId !== c.id) throw new Error(`milestone ${m.id} belongs to contract ${m.contractId}, not ${c.id}`);
          this.upsertMilestoneRow(m);
        }
      })
      .immediate();
  }

  async getContract(id: string): Promise<Contract | undefined> {
    this.live();
    return this.db.transaction(() => {
      const row = this.q.getContract.get(id) as ContractRow | undefined;
      return row && this.assemble(row);
    })();
  }

  async listContractsForUser(
    userId: string,
    page: ContractPage,
  ): Promise<{ contracts: Contract[]; nextCursor?: string }> {
    this.live();
    if (!Number.isInteger(page.limit) || page.limit < 1) throw new RangeError(`page limit must be a positive integer, got ${page.limit}`);
    const limit = Math.min(page.limit, MAX_CONTRACT_PAGE);
    const after = page.cursor === undefined ? undefined : fromContractCursor(page.cursor);
    return this.db.transaction(() => {
      // One row more than asked says whether another page exists without a COUNT.
      const rows = (
        after
          ? this.q.contractsForUserAfter.all(userId, after.createdAtMs, after.createdAtMs, after.id, limit + 1)
          : this.q.contractsForUser.all(userId, limit + 1)
      ) as ContractRow[];
      const pageRows = rows.slice(0, limit);
      const contracts = pageRows.map((r) => this.assemble(r));
      const last = pageRows[pageRows.length - 1];
      if (rows.length > limit && last) {
        return { contracts, nextCursor: toContractCursor({ createdAtMs: last.created_at_ms, id: last.id }) };
      }
      return { contracts };
    })();
  }

  async addSignature(contractId: string, signature: Signature, options: SignatureOptions = {}): Promise<Contract> {
    this.live();
    return this.db
      .transaction(() => {
        const row = this.q.getContract.get(contractId) as ContractRow | undefined;
        if (!row) throw new Error(`contract ${contractId} not found`);
        this.insertSignatureRow({ id: row.id, textSha256: row.text_sha256 }, signature);
        // The last signature and the status it leads to are one write: a crash leaves neither half.
        const unsigned = (this.q.countUnsignedParties.get(row.id) as { n: bigint }).n;
        if (options.statusWhenFullySigned !== undefined && unsigned === 0n) {
          this.q.setContractStatus.run(options.statusWhenFullySigned, row.id);
          return this.assemble({ ...row, status: BigInt(options.statusWhenFullySigned) });
        }
        return this.assemble(row);
      })
      .immediate();
  }

  async setContractStatus(contractId: string, status: ContractStatus): Promise<void> {
    this.live();
    const info = this.q.setContractStatus.run(status, contractId);
    if (info.changes === 0) throw new Error(`contract ${contractId} not found`);
  }

  async declineContract(contractId: string, decline: { userId: string; reason: string; atMs: number }): Promise<Contract> {
    this.live();
    return this.db
      .transaction(() => {
        const row = this.q.getContract.get(contractId) as ContractRow | undefined;
        if (!row) throw new Error(`contract ${contractId} not found`);
        const parties = (this.q.getParties.all(contractId) as PartyRow[]).length;
        const signatures = (this.q.getSignatures.all(contractId) as SignatureRow[]).length;
        // A contract every party signed is being paid: it can no longer be declined.
        if (signatures >= parties) throw new StoreConflictError(`contract ${contractId} is signed by every party`);
        const info = this.q.declineContract.run(ContractStatus.DECLINED, contractId, ContractStatus.AWAITING_SIGNATURES);
        if (info.changes === 0) throw new StoreConflictError(`contract ${contractId} is not awaiting signatures`);
        this.q.insertDecline.run(contractId, decline.userId, decline.reason, decline.atMs);
        return this.assemble({ ...row, status: BigInt(ContractStatus.DECLINED) });
      })
      .immediate();
  }

  async listExecutingContracts(): Promise<Contract[]> {
    return this.listContractsWithStatus(ContractStatus.EXECUTING);
  }

  async listContractsWithStatus(status: ContractStatus): Promise<Contract[]> {
    this.live();
    return this.db.transaction(() => (this.q.contractsByStatus.all(status) as ContractRow[]).map((r) => this.assemble(r)))();
  }

  async recordPaymentIntent(payment: Payment): Promise<Payment> {
    this.live();
    return this.db
      .transaction(() => {
        this.insertPaymentRow(payment);
        return fromPaymentRow(this.q.paymentByKey.get(payment.idempotencyKey) as PaymentRow);
      })
      .immediate();
  }

  async recordPaymentResult(p: Payment): Promise<void> {
    this.live();
    const info = this.q.updatePayment.run(p.status, p.railReference, p.failureReason, p.updatedAtMs, p.id);
    if (info.changes === 0) throw new Error(`payment ${p.id} not found`);
  }

  async recordHoldIntent(hold: EscrowHold): Promise<EscrowHold> {
    this.live();
    return this.db
      .transaction(() => {
        this.insertHoldRow(hold);
        return fromHoldRow(this.q.holdByKey.get(hold.idempotencyKey) as HoldRow);
      })
      .immediate();
  }

  /** Besides status, rail reference, failure reason and time, a hold's result sets its captured amount and expiry. */
  async recordHoldResult(h: EscrowHold): Promise<void> {
    this.live();
    const info = this.q.updateHold.run(h.status, h.railReference, h.failureReason, h.updatedAtMs, h.capturedMinor, h.expiresAtMs, h.id);
    if (info.changes === 0) throw new Error(`escrow hold ${h.id} not found`);
  }

  async getPaymentByRailReference(railReference: string): Promise<Payment | undefined> {
    this.live();
    // An empty reference means "not sent yet"; it must never match every such payment.
    if (railReference === "") return undefined;
    const row = this.q.paymentByRailReference.get(railReference) as PaymentRow | undefined;
    return row && fromPaymentRow(row);
  }

  async getHoldByRailReference(railReference: string): Promise<EscrowHold | undefined> {
    this.live();
    if (railReference === "") return undefined;
    const row = this.q.holdByRailReference.get(railReference) as HoldRow | undefined;
    return row && fromHoldRow(row);
  }

  async listPendingIntents(): Promise<{ payments: Payment[]; holds: EscrowHold[] }> {
    this.live();
    return this.db.transaction(() => ({
      payments: (this.q.pendingPayments.all() as PaymentRow[]).map(fromPaymentRow),
      holds: (this.q.pendingHolds.all() as HoldRow[]).map(fromHoldRow),
    }))();
  }

  async saveMilestone(milestone: Milestone): Promise<void> {
    this.live();
    this.db.transaction(() => this.upsertMilestoneRow(milestone)).immediate();
  }

  async recordSettlementIntent(intent: SettlementIntent, milestone?: Milestone): Promise<SettlementIntent> {
    this.live();
    requireText("settlement idempotency key", intent.idempotencyKey);
    return this.db
      .transaction(() => {
        if (milestone) this.upsertMilestoneRow(milestone);
        try {
          this.q.insertIntent.run(
            intent.idempotencyKey, intent.contractId, intent.milestoneId, intent.holdId, intent.action, intent.amountMinor, intent.createdAtMs,
          );
        } catch (err) {
          throw explain(err, `settlement intent ${intent.idempotencyKey}`);
        }
        return fromIntentRow(this.q.intentByKey.get(intent.idempotencyKey) as IntentRow);
      })
      .immediate();
  }

  async recordSettlementOutcome(outcome: SettlementOutcome): Promise<void> {
    this.live();
    this.db
      .transaction(() => {
        const h = outcome.hold;
        if (h) {
          const info = this.q.updateHold.run(h.status, h.railReference, h.failureReason, h.updatedAtMs, h.capturedMinor, h.expiresAtMs, h.id);
          if (info.changes === 0) throw new Error(`escrow hold ${h.id} not found`);
        }
        this.upsertMilestoneRow(outcome.milestone);
        if (outcome.contractStatus !== undefined) this.q.setContractStatus.run(outcome.contractStatus, outcome.milestone.contractId);
        if (outcome.intentKey) this.q.deleteIntent.run(outcome.intentKey);
      })
      .immediate();
  }

  async listSettlementIntents(): Promise<SettlementIntent[]> {
    this.live();
    return (this.q.openIntents.all() as IntentRow[]).map(fromIntentRow);
  }

  async postLedgerTransaction(tx: LedgerTransaction): Promise<{ transaction: LedgerTransaction; replayed: boolean }> {
    this.live();
    requireText("ledger transaction id", tx.id);
    requireText("ledger idempotency key", tx.idempotencyKey);
    checkBalanced(tx);
    return this.db
      .transaction(() => {
        const existing = this.q.ledgerTxByKey.get(tx.idempotencyKey) as LedgerTxRow | undefined;
        if (existing) {
          const stored = this.readLedgerTx(existing);
          if (!sameLegs(stored.legs, tx.legs)) {
            this.log.warn({ idempotencyKey: tx.idempotencyKey, transactionId: stored.id }, "ledger replay with different legs; keeping the first");
          }
          return { transaction: stored, replayed: true };
        }
        try {
          this.q.insertLedgerTx.run(tx.id, tx.idempotencyKey, tx.memo, tx.atMs);
        } catch (err) {
          throw conflictOr(err, `ledger transaction id ${tx.id} is already used by another idempotency key`);
        }
        tx.legs.forEach((leg, i) => this.q.insertLeg.run(tx.id, i, leg.account, leg.currency, leg.amountMinor));
        return {
          transaction: { id: tx.id, idempotencyKey: tx.idempotencyKey, memo: tx.memo, atMs: tx.atMs, legs: tx.legs.map((l) => ({ ...l })) },
          replayed: false,
        };
      })
      .immediate();
  }

  async getLedgerTransaction(idempotencyKey: string): Promise<LedgerTransaction | undefined> {
    this.live();
    return this.db.transaction(() => {
      const row = this.q.ledgerTxByKey.get(idempotencyKey) as LedgerTxRow | undefined;
      return row && this.readLedgerTx(row);
    })();
  }

  async getLedgerBalance(account: string, currency: string): Promise<bigint> {
    this.live();
    return (this.q.balance.get(account, currency) as { balance: bigint }).balance;
  }

  async getBalances(userId: string): Promise<Balance[]> {
    this.live();
    const available = availableAccount(userId);
    const held = heldAccount(userId);
    const received = receivedAccount(userId);
    const rows = this.q.balancesOf.all(available, held, received) as { account: string; currency: string; balance: bigint }[];
    const byCurrency = new Map<string, Balance>();
    for (const r of rows) {
      let b = byCurrency.get(r.currency);
      if (!b) {
        b = create(BalanceSchema, { currency: r.currency });
        byCurrency.set(r.currency, b);
      }
      if (r.account === available) b.availableMinor = r.balance;
      else if (r.account === held) b.heldMinor = r.balance;
      else b.receivedMinor = r.balance;
    }
    return [...byCurrency.values()];
  }

  recordRoomEvent(roomId: string, event: PanelEvent, write: RoomEventWrite): void {
    this.live();
    requireText("room id", roomId);
    requireKeep(write.keep);
    this.db
      .transaction(() => {
        const stored = this.insertRoomEvents(roomId, [event], write.markOnly === true);
        // Trimming counts the room's newest `keep` (O(keep)), so it runs once per batch of appends.
        if (stored > BigInt(write.keep + trimSlack(write.keep))) this.trimRoomEvents(roomId, write.keep);
      })
      .immediate();
  }

  async appendRoomEvents(roomId: string, events: PanelEvent[], keep: number): Promise<void> {
    this.live();
    requireText("room id", roomId);
    requireKeep(keep);
    this.db
      .transaction(() => {
        if (this.insertRoomEvents(roomId, events, false) > BigInt(keep)) this.trimRoomEvents(roomId, keep);
      })
      .immediate();
  }

  /** Inserts `events` (or, `markOnly`, just numbers them) and returns how many the room now stores. */
  private insertRoomEvents(roomId: string, events: PanelEvent[], markOnly: boolean): bigint {
    let stored = 0n;
    for (const e of events) {
      if (e.seq < 1n) throw new RangeError(`room ${roomId}: event seq must be at least 1, got ${e.seq}`);
      if (!markOnly) {
        try {
          this.q.insertEvent.run(roomId, e.seq, e.atMs, toBinary(PanelEventSchema, e));
        } catch (err) {
          throw conflictOr(err, `room ${roomId} already has event ${e.seq}`);
        }
      }
      stored = (this.q.raiseLogMark.get(roomId, e.seq, e.atMs, markOnly ? 0 : 1) as { stored_events: bigint }).stored_events;
    }
    return stored;
  }

  /** Keeps the room's newest `keep` events and records where the trimmed ones ended. */
  private trimRoomEvents(roomId: string, keep: number): void {
    const cutoff = this.q.keepCutoff.get(roomId, keep - 1) as { seq: bigint } | undefined;
    if (!cutoff) return;
    const newest = (this.q.newestBefore.get(roomId, cutoff.seq) as { seq: bigint | null }).seq;
    if (newest === null) return;
    this.q.trimEvents.run(roomId, cutoff.seq);
    this.q.markTrimmed.run(newest, keep, roomId);
  }

  async getRoomLogState(roomId: string): Promise<RoomLogState> {
    this.live();
    const row = this.q.logState.get(roomId) as { last_seq: bigint; trimmed_through_seq: bigint } | undefined;
    const lastSeq = (this.q.lastSeq.get(roomId, roomId) as { seq: bigint }).seq;
    return { lastSeq: BigInt(lastSeq), trimmedThroughSeq: row ? BigInt(row.trimmed_through_seq) : 0n };
  }

  async deleteRoomLogsBefore(beforeMs: number, keep: (roomId: string) => boolean): Promise<string[]> {
    this.live();
    const swept: string[] = [];
    for (const { room_id: roomId } of this.q.staleLogs.all(beforeMs) as { room_id: string }[]) {
      if (keep(roomId)) continue;
      // One room per transaction: a long sweep never holds the write lock for long.
      this.db
        .transaction(() => {
          this.q.deleteRoomEvents.run(roomId);
          this.q.markDeleted.run(roomId);
        })
        .immediate();
      swept.push(roomId);
    }
    // A code used again by a new pair: the earlier pair's events (never shown to the new one) go
    // once the earlier pair has been gone the retention period, live room or not.
    for (const row of this.q.earlierPairs.all(beforeMs) as { room_id: string; history_after_seq: bigint }[]) {
      this.db
        .transaction(() => {
          const deleted = this.q.deleteEventsThrough.run(row.room_id, row.history_after_seq).changes;
          this.q.markDeletedThrough.run(row.history_after_seq, deleted, row.room_id);
        })
        .immediate();
      if (!swept.includes(row.room_id)) swept.push(row.room_id);
    }
    return swept;
  }

  async loadRoomEvents(roomId: string, afterSeq: bigint): Promise<PanelEvent[]> {
    this.live();
    return (this.q.eventsAfter.all(roomId, afterSeq) as { event: Buffer }[]).map((r) => fromBinary(PanelEventSchema, r.event));
  }

  async lastRoomSeq(roomId: string): Promise<bigint> {
    this.live();
    return BigInt((this.q.lastSeq.get(roomId, roomId) as { seq: bigint }).seq);
  }

  async getRoomRecord(roomId: string): Promise<RoomRecord | undefined> {
    this.live();
    const row = this.q.getRoom.get(roomId) as
      | { room_id: string; invite_code: string; history_after_seq: bigint; created_at_ms: bigint }
      | undefined;
    if (!row) return undefined;
    const members = this.q.roomMembers.all(roomId) as { user_id: string; joined_at_ms: bigint; left_at_ms: bigint | null }[];
    return {
      roomId: row.room_id,
      inviteCode: row.invite_code,
      historyAfterSeq: BigInt(row.history_after_seq),
      createdAtMs: Number(row.created_at_ms),
      members: members.map((m) => ({
        userId: m.user_id,
        joinedAtMs: Number(m.joined_at_ms),
        leftAtMs: m.left_at_ms === null ? undefined : Number(m.left_at_ms),
      })),
    };
  }

  async startRoom(room: { roomId: string; inviteCode: string; historyAfterSeq: bigint; atMs: number }): Promise<void> {
    this.live();
    requireText("room id", room.roomId);
    this.db
      .transaction(() => {
        this.q.upsertRoom.run(room.roomId, room.inviteCode, room.historyAfterSeq, room.atMs);
        this.q.deleteRoomMembers.run(room.roomId);
      })
      .immediate();
  }

  async addRoomMember(roomId: string, userId: string, atMs: number): Promise<void> {
    this.live();
    requireText("room id", roomId);
    requireText("user id", userId);
    this.q.upsertRoomMember.run(roomId, userId, atMs);
  }

  async markRoomMemberLeft(roomId: string, userId: string, atMs: number): Promise<void> {
    this.live();
    this.q.markMemberLeft.run(atMs, roomId, userId);
  }

  async checkWritable(): Promise<void> {
    this.live();
    // BEGIN IMMEDIATE takes the write lock as a write would; a probe must not hold the event loop
    // for the full busy timeout, so it waits briefly for a writer elsewhere, then says so.
    this.db.pragma(`busy_timeout = ${CHECK_BUSY_TIMEOUT_MS}`);
    try {
      this.db.exec("BEGIN IMMEDIATE");
      this.db.exec("ROLLBACK");
    } finally {
      this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // The checkpointer's connection goes first, so closing the last one folds the WAL in.
    await this.checkpointer?.stop();
    this.db.close();
    this.fileLock?.release();
    this.log.info("store closed");
  }

  private live(): void {
    if (this.closed) throw new Error("store is closed");
  }

  /** The full Contract message of a row, read inside the caller's transaction. */
  private assemble(row: ContractRow): Contract {
    return assembleContract(row, {
      parties: this.q.getParties.all(row.id) as PartyRow[],
      signatures: this.q.getSignatures.all(row.id) as SignatureRow[],
      payments: this.q.paymentsForContract.all(row.id) as PaymentRow[],
      holds: this.q.holdsForContract.all(row.id) as HoldRow[],
      milestones: this.q.milestonesForContract.all(row.id) as MilestoneRow[],
      decline: this.q.getDecline.get(row.id) as { user_id: string; reason: string } | undefined,
    });
  }

  /** Checks and inserts one signature; call inside a transaction. */
  private insertSignatureRow(contract: { id: string; textSha256: string }, s: Signature): void {
    if (!this.q.getParty.get(contract.id, s.userId)) {
      throw new Error(`user ${s.userId} is not a party to contract ${contract.id}`);
    }
    if (s.textSha256 !== contract.textSha256) {
      throw new Error(`signature by ${s.userId} is for text ${s.textSha256}, contract ${contract.id} has ${contract.textSha256}`);
    }
    if (this.q.getSignature.get(contract.id, s.userId)) {
      throw new StoreConflictError(`user ${s.userId} already signed contract ${contract.id}`);
    }
    this.q.insertSignature.run(contract.id, s.userId, s.textSha256, s.signedAtMs);
  }

  private insertPaymentRow(p: Payment): void {
    requireText("payment id", p.id);
    requireText("payment idempotency key", p.idempotencyKey);
    try {
      this.q.insertPayment.run(
        p.id, p.contractId, p.lineItemId, p.payerUserId, p.payeeUserId, p.amountMinor, p.currency, p.status,
        p.idempotencyKey, p.railReference, p.failureReason, p.rail, p.updatedAtMs, p.updatedAtMs,
      );
    } catch (err) {
      throw conflictOr(err, `payment id ${p.id} is already used by another idempotency key`, `payment ${p.id} for contract ${p.contractId}`);
    }
  }

  private insertHoldRow(h: EscrowHold): void {
    requireText("escrow hold id", h.id);
    requireText("escrow hold idempotency key", h.idempotencyKey);
    try {
      this.q.insertHold.run(
        h.id, h.contractId, h.lineItemId, h.payerUserId, h.payeeUserId, h.amountMinor, h.currency, h.status,
        h.idempotencyKey, h.railReference, h.failureReason, h.rail, h.updatedAtMs, h.capturedMinor, h.expiresAtMs,
        h.updatedAtMs,
      );
    } catch (err) {
      throw conflictOr(err, `escrow hold id ${h.id} is already used by another idempotency key`, `escrow hold ${h.id} for contract ${h.contractId}`);
    }
  }

  private upsertMilestoneRow(m: Milestone): void {
    requireText("milestone id", m.id);
    let info;
    try {
      info = this.q.upsertMilestone.run(
        m.id, m.contractId, m.lineItemId, optionalBlob(MilestoneTermsSchema, m.terms), m.status,
        m.providerConfirmed ? 1 : 0, m.clientConfirmed ? 1 : 0, m.proposedAmountMinor === 0n ? null : m.proposedAmountMinor, m.minMinor, m.maxMinor,
        m.currency, m.capturedMinor, m.failureReason, m.updatedAtMs, m.updatedAtMs,
      );
    } catch (err) {
      throw explain(err, `milestone ${m.id} for contract ${m.contractId}`);
    }
    if (info.changes === 0) throw new StoreConflictError(`milestone ${m.id} belongs to another contract`);
  }

  private readLedgerTx(row: LedgerTxRow): LedgerTransaction {
    return toLedgerTransaction(row, this.q.legsOf.all(row.id) as LegRow[]);
  }
}


function isSqliteError(err: unknown): err is Error & { code: string } {
  return err instanceof BetterSqlite3.SqliteError;
}

/** A primary-key or unique violation becomes a `StoreConflictError`; anything else goes through `explain`. */
function conflictOr(err: unknown, conflictMessage: string, context = conflictMessage): Error {
  if (isSqliteError(err) && (err.code === "SQLITE_CONSTRAINT_PRIMARYKEY" || err.code === "SQLITE_CONSTRAINT_UNIQUE")) {
    return new StoreConflictError(conflictMessage, { cause: err });
  }
  return explain(err, context);
}

/** A foreign-key violation gets a message that says which record was missing. */
function explain(err: unknown, context: string): Error {
  if (isSqliteError(err) && err.code === "SQLITE_CONSTRAINT_FOREIGNKEY") {
    return new Error(`${context}: refers to a record that does not exist`, { cause: err });
  }
  return err instanceof Error ? err : new Error(String(err));
}
