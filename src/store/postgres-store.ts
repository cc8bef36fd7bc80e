import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import pg from "pg";
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
import { fromContractCursor, toContractCursor } from "./cursor.js";
import { ledgerAccounts } from "./ledger-accounts.js";
import { withKillPoint } from "./kill-point.js";
import { holdConnection, inTransaction } from "./pg-connection.js";
import { StoreUnavailableError } from "./store-errors.js";
import { migratePostgres } from "./migrate.js";
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

/** Options for `createPostgresStore`. */
export interface PostgresStoreOptions {
  /** `postgres://user:password@host:port/database` (libpq URL; `?sslmode=` and the like honoured by pg). */
  url: string;
  log?: Logger;
  /** Connections for queries; default 10. Contract locks hold connections of their own. */
  poolSize?: number;
}

/** How long a readiness check or a new connection may take before the store is called unavailable. */
const CONNECT_TIMEOUT_MS = 5_000;
const CHECK_TIMEOUT_MS = 1_000;
/** Namespace of the store's advisory locks (the first key of the two-key form): "HS". */
const ADVISORY_NAMESPACE = 0x4853;
/** Most contract locks one node holds at once; each holds one connection for as long as its work runs. */
const LOCK_CONNECTIONS = 20;

// int2, int4, int8 and numeric come back as bigint, as better-sqlite3 gives them with safe
// integers: the shared row converters (records.ts) then read both stores' rows the same way, and
// money and Unix milliseconds never pass through a double. The schema has no fractional numerics.
const BIGINT_OIDS = new Set([20, 21, 23, 1700]);
const typeParsers: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    BIGINT_OIDS.has(oid) && format !== "binary" ? (value: string) => BigInt(value) : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig["getTypeParser"],
};

/**
 * Opens the PostgreSQL store at `options.url`, applying the migrations of migrations.ts (the same
 * list SQLite runs) under an advisory lock, so nodes starting together migrate once.
 *
 * Concurrency: several nodes share the database. Every multi-row write is one transaction; a write
 * that checks before it writes locks the row it depends on (`SELECT … FOR UPDATE` on the contract
 * for signatures and declines) or lets a unique key decide (`ON CONFLICT DO NOTHING` on idempotency
 * keys), so two nodes racing on the same record get the answers one node would give in turn.
 * Multi-table reads run in one REPEATABLE READ snapshot. `contractLock` serialises a contract's
 * money work across nodes with session advisory locks (see createPostgresContractLock).
 */
export async function createPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const log = (options.log ?? silentLogger).child({ component: "store" });
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    types: typeParsers,
    application_name: "handshake",
  });
  // An idle connection the server closed (restart, failover) is dropped and replaced; a query
  // running on it gets the error itself.
  pool.on("error", (err) => log.warn({ err }, "idle database connection lost"));
  try {
    const result = await migratePostgres(pool);
    const lockPool = new pg.Pool({ connectionString: options.url, max: LOCK_CONNECTIONS, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, application_name: "handshake-lock" });
    lockPool.on("error", (err) => log.warn({ err }, "idle lock connection lost"));
    log.info({ database: redactedUrl(options.url), fromVersion: result.fromVersion, toVersion: result.toVersion }, "store opened");
    return withKillPoint(new PostgresStore(pool, createPostgresContractLock(lockPool, log), lockPool, log));
  } catch (err) {
    await pool.end();
    throw err;
  }
}

/** The URL without its password, for logs. */
function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable url)";
  }
}

/**
 * A contract lock that holds across nodes: the in-process queue first (so one node never spends two
 * connections on one key), then `pg_advisory_lock(namespace, hashtext(key))` on a connection held
 * for the work. A node that dies loses its session and PostgreSQL frees the lock at once. Two keys
 * that hash alike only wait for each other; they never share a result.
 */
export function createPostgresContractLock(lockPool: pg.Pool, log: Logger): KeyedLock {
  const local = createKeyedLock();
  return {
    run<T>(key: string, fn: () => Promise<T>): Promise<T> {
      return local.run(key, async () => {
        const held = await holdConnection(lockPool);
        try {
          await held.client.query("SELECT pg_advisory_lock($1, hashtext($2))", [ADVISORY_NAMESPACE, key]);
        } catch (err) {
          held.release(err instanceof Error ? err : new Error(String(err)));
          throw err;
        }
        let broken: Error | undefined;
        try {
          return await fn();
        } finally {
          // A session lost while the work ran lost the lock with it: the work's money steps still
          // hold (each re-reads its record under its idempotency key), but it is worth knowing.
          if (held.lost()) log.error({ err: held.lost(), key }, "contract lock's database session ended while its work ran");
          try {
            await held.client.query("SELECT pg_advisory_unlock($1, hashtext($2))", [ADVISORY_NAMESPACE, key]);
          } catch (err) {
            // The session is gone or unusable: closing it is what frees its locks.
            broken = err instanceof Error ? err : new Error(String(err));
          }
          held.release(broken);
        }
      });
    },
  };
}

type Client = pg.PoolClient;

/** Runs one statement, prepared once per connection under its name. */
async function run<R extends pg.QueryResultRow = pg.QueryResultRow>(client: Client | pg.Pool, name: keyof typeof SQL, values: unknown[] = []): Promise<pg.QueryResult<R>> {
  return client.query<R>({ name, text: SQL[name], values });
}

async function rows<R extends pg.QueryResultRow>(client: Client | pg.Pool, name: keyof typeof SQL, values: unknown[] = []): Promise<R[]> {
  return (await run<R>(client, name, values)).rows;
}

async function one<R extends pg.QueryResultRow>(client: Client | pg.Pool, name: keyof typeof SQL, values: unknown[] = []): Promise<R | undefined> {
  return (await run<R>(client, name, values)).rows[0];
}

/** Every statement the store runs, in PostgreSQL's dialect ($n parameters, GREATEST). */
const SQL = {
  insertUser: "INSERT INTO users (id, created_at_ms) VALUES ($1, $2)",
  insertUserIfMissing: "INSERT INTO users (id, created_at_ms) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
  getUser: "SELECT id, created_at_ms FROM users WHERE id = $1",
  upsertProfile: "INSERT INTO profiles (user_id, profile) VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE SET profile = excluded.profile",
  getProfile: "SELECT profile FROM profiles WHERE user_id = $1",
  insertSecret: "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
  getSecret: "SELECT value FROM secrets WHERE name = $1",

  upsertNegotiation: `INSERT INTO negotiations
      (id, room_id, status, initiator_user_id, current_proposal, max_rounds, started_at_ms, expires_at_ms, end_reason)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (id) DO UPDATE SET room_id = excluded.room_id, status = excluded.status,
      initiator_user_id = excluded.initiator_user_id, current_proposal = excluded.current_proposal,
      max_rounds = excluded.max_rounds, started_at_ms = excluded.started_at_ms,
      expires_at_ms = excluded.expires_at_ms, end_reason = excluded.end_reason`,
  getNegotiation:
    "SELECT id, room_id, status, initiator_user_id, current_proposal, max_rounds, started_at_ms, expires_at_ms, end_reason FROM negotiations WHERE id = $1",
  deleteRounds: "DELETE FROM negotiation_rounds WHERE negotiation_id = $1",
  insertRound:
    "INSERT INTO negotiation_rounds (negotiation_id, number, from_user_id, action, proposal, reason, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
  getRounds: "SELECT number, from_user_id, action, proposal, reason, at_ms FROM negotiation_rounds WHERE negotiation_id = $1 ORDER BY number",

  insertContract: `INSERT INTO contracts (${CONTRACT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
  getContract: `SELECT ${CONTRACT_COLUMNS} FROM contracts WHERE id = $1`,
  lockContract: `SELECT ${CONTRACT_COLUMNS} FROM contracts WHERE id = $1 FOR UPDATE`,
  setContractStatus: "UPDATE contracts SET status = $1 WHERE id = $2",
  declineContract: "UPDATE contracts SET status = $1 WHERE id = $2 AND status = $3",
  insertDecline: "INSERT INTO contract_declines (contract_id, user_id, reason, declined_at_ms) VALUES ($1, $2, $3, $4)",
  contractsByStatus: `SELECT ${CONTRACT_COLUMNS} FROM contracts WHERE status = $1 ORDER BY created_at_ms, id`,
  contractsForUser: `SELECT ${prefixed("c", CONTRACT_COLUMNS)} FROM contracts c
    JOIN contract_parties p ON p.contract_id = c.id
    WHERE p.user_id = $1
    ORDER BY c.created_at_ms DESC, c.id DESC LIMIT $2`,
  contractsForUserAfter: `SELECT ${prefixed("c", CONTRACT_COLUMNS)} FROM contracts c
    JOIN contract_parties p ON p.contract_id = c.id
    WHERE p.user_id = $1 AND (c.created_at_ms < $2 OR (c.created_at_ms = $2 AND c.id < $3))
    ORDER BY c.created_at_ms DESC, c.id DESC LIMIT $4`,
  insertParty: "INSERT INTO contract_parties (contract_id, user_id, display_name, role, position) VALUES ($1, $2, $3, $4, $5)",
  getParty: "SELECT user_id FROM contract_parties WHERE contract_id = $1 AND user_id = $2",
  countParties: "SELECT COUNT(*) AS n FROM contract_parties WHERE contract_id = $1",
  countSignatures: "SELECT COUNT(*) AS n FROM signatures WHERE contract_id = $1",
  insertSignature: "INSERT INTO signatures (contract_id, user_id, text_sha256, signed_at_ms) VALUES ($1, $2, $3, $4)",
  getSignature: "SELECT user_id FROM signatures WHERE contract_id = $1 AND user_id = $2",
  countUnsignedParties: `SELECT COUNT(*) AS n FROM contract_parties p
    WHERE p.contract_id = $1 AND NOT EXISTS (SELECT 1 FROM signatures s WHERE s.contract_id = p.contract_id AND s.user_id = p.user_id)`,
  // The parts of several contracts at once (a page of them): one query per table, not per contract.
  partiesOf: "SELECT contract_id, user_id, display_name, role FROM contract_parties WHERE contract_id = ANY($1::text[]) ORDER BY contract_id, position",
  signaturesOf:
    "SELECT contract_id, user_id, text_sha256, signed_at_ms FROM signatures WHERE contract_id = ANY($1::text[]) ORDER BY contract_id, signed_at_ms, user_id",
  paymentsOf: `SELECT ${PAYMENT_COLUMNS} FROM payments WHERE contract_id = ANY($1::text[]) ORDER BY contract_id, created_at_ms, id`,
  holdsOf: `SELECT ${HOLD_COLUMNS} FROM escrow_holds WHERE contract_id = ANY($1::text[]) ORDER BY contract_id, created_at_ms, id`,
  milestonesOf: `SELECT ${MILESTONE_COLUMNS} FROM milestones WHERE contract_id = ANY($1::text[]) ORDER BY contract_id, created_at_ms, id`,
  declinesOf: "SELECT contract_id, user_id, reason FROM contract_declines WHERE contract_id = ANY($1::text[])",

  insertPayment: `INSERT INTO payments (${PAYMENT_COLUMNS}, created_at_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (idempotency_key) DO NOTHING`,
  paymentByKey: `SELECT ${PAYMENT_COLUMNS} FROM payments WHERE idempotency_key = $1`,
  paymentByRailReference: `SELECT ${PAYMENT_COLUMNS} FROM payments WHERE rail_reference = $1 ORDER BY created_at_ms, id LIMIT 1`,
  updatePayment: "UPDATE payments SET status = $1, rail_reference = $2, failure_reason = $3, updated_at_ms = $4 WHERE id = $5",
  // The literal status (not a parameter) lets the planner use the partial index of migration 3.
  pendingPayments: `SELECT ${PAYMENT_COLUMNS} FROM payments WHERE status = ${PaymentStatus.PENDING} ORDER BY created_at_ms, id`,

  insertHold: `INSERT INTO escrow_holds (${HOLD_COLUMNS}, created_at_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (idempotency_key) DO NOTHING`,
  holdByKey: `SELECT ${HOLD_COLUMNS} FROM escrow_holds WHERE idempotency_key = $1`,
  holdByRailReference: `SELECT ${HOLD_COLUMNS} FROM escrow_holds WHERE rail_reference = $1 ORDER BY created_at_ms, id LIMIT 1`,
  updateHold: `UPDATE escrow_holds SET status = $1, rail_reference = $2, failure_reason = $3, updated_at_ms = $4,
    captured_minor = $5, expires_at_ms = $6 WHERE id = $7`,
  pendingHolds: `SELECT ${HOLD_COLUMNS} FROM escrow_holds WHERE status = ${EscrowHoldStatus.PENDING} ORDER BY created_at_ms, id`,

  // The WHERE keeps an upsert from moving a milestone to another contract.
  upsertMilestone: `INSERT INTO milestones (${MILESTONE_COLUMNS}, created_at_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
    ON CONFLICT (id) DO UPDATE SET line_item_id = excluded.line_item_id, terms = excluded.terms,
      status = excluded.status, provider_confirmed = excluded.provider_confirmed,
      client_confirmed = excluded.client_confirmed, proposed_amount_minor = excluded.proposed_amount_minor,
      min_minor = excluded.min_minor, max_minor = excluded.max_minor, currency = excluded.currency,
      captured_minor = excluded.captured_minor, failure_reason = excluded.failure_reason,
      updated_at_ms = excluded.updated_at_ms
    WHERE milestones.contract_id = excluded.contract_id`,

  insertIntent: `INSERT INTO settlement_intents
      (idempotency_key, contract_id, milestone_id, hold_id, action, amount_minor, created_at_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idempotency_key) DO NOTHING`,
  intentByKey:
    "SELECT idempotency_key, contract_id, milestone_id, hold_id, action, amount_minor, created_at_ms FROM settlement_intents WHERE idempotency_key = $1",
  openIntents:
    "SELECT idempotency_key, contract_id, milestone_id, hold_id, action, amount_minor, created_at_ms FROM settlement_intents ORDER BY created_at_ms, idempotency_key",
  deleteIntent: "DELETE FROM settlement_intents WHERE idempotency_key = $1",

  insertLedgerTx: "INSERT INTO ledger_transactions (id, idempotency_key, memo, at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (idempotency_key) DO NOTHING",
  ledgerTxByKey: "SELECT id, idempotency_key, memo, at_ms FROM ledger_transactions WHERE idempotency_key = $1",
  insertLeg: "INSERT INTO ledger_entries (transaction_id, leg_index, account, currency, amount_minor) VALUES ($1, $2, $3, $4, $5)",
  legsOf: "SELECT account, currency, amount_minor FROM ledger_entries WHERE transaction_id = $1 ORDER BY leg_index",
  balance: "SELECT COALESCE(SUM(amount_minor), 0) AS balance FROM ledger_entries WHERE account = $1 AND currency = $2",
  balancesOf: `SELECT account, currency, SUM(amount_minor) AS balance FROM ledger_entries
    WHERE account IN ($1, $2, $3) GROUP BY account, currency ORDER BY currency, account`,

  insertEvent: "INSERT INTO room_events (room_id, seq, at_ms, event) VALUES ($1, $2, $3, $4)",
  // One event and its room's seq mark in one statement ($5: the event is kept, not only numbered).
  recordEvent: `WITH kept AS (
      INSERT INTO room_events (room_id, seq, at_ms, event) SELECT $1::text, $2::bigint, $3::bigint, $4::bytea WHERE $5::boolean RETURNING 1
    )
    INSERT INTO room_logs (room_id, last_seq, trimmed_through_seq, updated_at_ms, stored_events)
      VALUES ($1::text, $2::bigint, 0, $3::bigint, (SELECT count(*) FROM kept))
    ON CONFLICT (room_id) DO UPDATE SET last_seq = GREATEST(room_logs.last_seq, excluded.last_seq), updated_at_ms = excluded.updated_at_ms,
      stored_events = room_logs.stored_events + excluded.stored_events
    RETURNING stored_events`,
  keepCutoff: "SELECT seq FROM room_events WHERE room_id = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2",
  trimEvents: "DELETE FROM room_events WHERE room_id = $1 AND seq < $2",
  eventsAfter: "SELECT event FROM room_events WHERE room_id = $1 AND seq > $2 ORDER BY seq",
  lastSeq: `SELECT GREATEST(COALESCE((SELECT last_seq FROM room_logs WHERE room_id = $1), 0),
    COALESCE((SELECT MAX(seq) FROM room_events WHERE room_id = $1), 0)) AS seq`,
  raiseLogMark: `INSERT INTO room_logs (room_id, last_seq, trimmed_through_seq, updated_at_ms, stored_events) VALUES ($1, $2, 0, $3, $4)
    ON CONFLICT (room_id) DO UPDATE SET last_seq = GREATEST(room_logs.last_seq, excluded.last_seq), updated_at_ms = excluded.updated_at_ms,
      stored_events = room_logs.stored_events + excluded.stored_events
    RETURNING stored_events`,
  logState: "SELECT last_seq, trimmed_through_seq FROM room_logs WHERE room_id = $1",
  newestBefore: "SELECT MAX(seq) AS seq FROM room_events WHERE room_id = $1 AND seq < $2",
  markTrimmed: "UPDATE room_logs SET trimmed_through_seq = GREATEST(trimmed_through_seq, $1), stored_events = $2 WHERE room_id = $3",
  staleLogs: "SELECT room_id FROM room_logs WHERE stored_events > 0 AND updated_at_ms < $1 ORDER BY updated_at_ms",
  deleteRoomEvents: "DELETE FROM room_events WHERE room_id = $1",
  markDeleted: "UPDATE room_logs SET trimmed_through_seq = last_seq, stored_events = 0 WHERE room_id = $1",
  earlierPairs: `SELECT r.room_id, r.history_after_seq FROM rooms r
    WHERE r.history_after_seq > 0 AND r.created_at_ms < $1
      AND EXISTS (SELECT 1 FROM room_events e WHERE e.room_id = r.room_id AND e.seq <= r.history_after_seq)`,
  deleteEventsThrough: "DELETE FROM room_events WHERE room_id = $1 AND seq <= $2",
  markDeletedThrough:
    "UPDATE room_logs SET trimmed_through_seq = GREATEST(trimmed_through_seq, $1), stored_events = GREATEST(0, stored_events - $2) WHERE room_id = $3",
  getRoom: "SELECT room_id, invite_code, history_after_seq, created_at_ms FROM rooms WHERE room_id = $1",
  roomMembers: "SELECT user_id, joined_at_ms, left_at_ms FROM room_members WHERE room_id = $1 ORDER BY joined_at_ms, user_id",
  deleteRoomMembers: "DELETE FROM room_members WHERE room_id = $1",
  upsertRoom:
    "INSERT INTO rooms (room_id, invite_code, history_after_seq, created_at_ms) VALUES ($1, $2, $3, $4) " +
    "ON CONFLICT (room_id) DO UPDATE SET invite_code = excluded.invite_code, history_after_seq = excluded.history_after_seq, created_at_ms = excluded.created_at_ms",
  upsertRoomMember:
    "INSERT INTO room_members (room_id, user_id, joined_at_ms, left_at_ms) VALUES ($1, $2, $3, NULL) " +
    "ON CONFLICT (room_id, user_id) DO UPDATE SET left_at_ms = NULL",
  markMemberLeft: "UPDATE room_members SET left_at_ms = $1 WHERE room_id = $2 AND user_id = $3 AND left_at_ms IS NULL",
} as const;

/** Rows of several contracts' parts, tagged with their contract. */
type Tagged<R> = R & { contract_id: string };

/** The same store as SqliteStore, one round trip per statement, on a pool of connections. */
class PostgresStore implements Store {
  private closed = false;

  constructor(
    private readonly pool: pg.Pool,
    readonly contractLock: KeyedLock,
    private readonly lockPool: pg.Pool,
    private readonly log: Logger,
  ) {}

  /** Runs `fn` in one read-write transaction; a throw rolls it back. */
  private write<T>(fn: (client: Client) => Promise<T>): Promise<T> {
    this.live();
    return inTransaction(this.pool, "BEGIN", fn);
  }

  /** Runs `fn` in one read-only snapshot, so a contract and its parts are read as of one moment. */
  private read<T>(fn: (client: Client) => Promise<T>): Promise<T> {
    this.live();
    return inTransaction(this.pool, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", fn);
  }

  /** One statement on its own (autocommit). */
  private single<R extends pg.QueryResultRow>(name: keyof typeof SQL, values: unknown[] = []): Promise<pg.QueryResult<R>> {
    this.live();
    return run<R>(this.pool, name, values);
  }

  async createUser(user: UserRecord): Promise<void> {
    requireText("user id", user.id);
    try {
      await this.single("insertUser", [user.id, user.createdAtMs]);
    } catch (err) {
      throw conflictOr(err, `user ${user.id} already exists`);
    }
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    const row = (await this.single<UserRow>("getUser", [id])).rows[0];
    return row && { id: row.id, createdAtMs: Number(row.created_at_ms) };
  }

  async saveProfile(userId: string, profile: AgentProfile): Promise<void> {
    try {
      await this.single("upsertProfile", [userId, toBinary(AgentProfileSchema, profile)]);
    } catch (err) {
      throw explain(err, `saving profile of user ${userId}`);
    }
  }

  async createUserWithProfile(user: UserRecord, profile: AgentProfile): Promise<void> {
    requireText("user id", user.id);
    await this.write(async (c) => {
      await run(c, "insertUserIfMissing", [user.id, user.createdAtMs]);
      await run(c, "upsertProfile", [user.id, toBinary(AgentProfileSchema, profile)]);
    });
  }

  async getProfile(userId: string): Promise<AgentProfile | undefined> {
    const row = (await this.single<{ profile: Buffer }>("getProfile", [userId])).rows[0];
    return row && fromBinary(AgentProfileSchema, row.profile);
  }

  async getOrCreateSecret(name: string, value: string): Promise<string> {
    requireText("secret name", name);
    return this.write(async (c) => {
      await run(c, "insertSecret", [name, value]);
      return (await one<{ value: string }>(c, "getSecret", [name]))!.value;
    });
  }

  async saveNegotiation(n: Negotiation): Promise<void> {
    requireText("negotiation id", n.id);
    await this.write(async (c) => {
      await run(c, "upsertNegotiation", [
        n.id, n.roomId, n.status, n.initiatorUserId, optionalBlob(ProposalSchema, n.currentProposal),
        n.maxRounds, n.startedAtMs, n.expiresAtMs, n.endReason,
      ]);
      // Rounds are replaced as a set: the message is the truth, and a half-updated list is impossible.
      await run(c, "deleteRounds", [n.id]);
      for (const r of n.rounds) {
        await run(c, "insertRound", [n.id, r.number, r.fromUserId, r.action, optionalBlob(ProposalSchema, r.proposal), r.reason, r.atMs]);
      }
    });
  }

  async getNegotiation(id: string): Promise<Negotiation | undefined> {
    return this.read(async (c) => {
      const row = await one<NegotiationRow>(c, "getNegotiation", [id]);
      if (!row) return undefined;
      return assembleNegotiation(row, await rows<RoundRow>(c, "getRounds", [id]));
    });
  }

  async insertContract(c: Contract): Promise<void> {
    requireText("contract id", c.id);
    const actual = sha256Hex(c.text);
    if (actual !== c.textSha256) {
      throw new Error(`contract ${c.id}: text_sha256 ${c.textSha256} is not the SHA-256 of its text (${actual})`);
    }
    await this.write(async (client) => {
      try {
        await run(client, "insertContract", [
          c.id, c.roomId, c.negotiationId, c.title, c.text, c.textSha256, optionalBlob(ProposalSchema, c.terms), c.status, c.createdAtMs,
        ]);
      } catch (err) {
        throw conflictOr(err, `contract ${c.id} already exists`);
      }
      for (const [i, party] of c.parties.entries()) {
        try {
          await run(client, "insertParty", [c.id, party.userId, party.displayName, party.role, i]);
        } catch (err) {
          throw conflictOr(err, `contract ${c.id} names user ${party.userId} twice`);
        }
      }
      // Whatever the drafted message already carries is stored too, so nothing is silently dropped.
      for (const s of c.signatures) await this.insertSignatureRow(client, c, s);
      for (const p of c.payments) await this.insertPaymentRow(client, p);
      for (const h of c.holds) await this.insertHoldRow(client, h);
      for (const m of c.milestones) {
        if (m.contractId !== c.id) throw new Error(`milestone ${m.id} belongs to contract ${m.contractId}, not ${c.id}`);
        await this.upsertMilestoneRow(client, m);
      }
    });
  }

  async getContract(id: string): Promise<Contract | undefined> {
    return this.read(async (c) => {
      const row = await one<ContractRow>(c, "getContract", [id]);
      return row && (await this.assemble(c, [row]))[0];
    });
  }

  async listContractsForUser(userId: string, page: ContractPage): Promise<{ contracts: Contract[]; nextCursor?: string }> {
    this.live();
    if (!Number.isInteger(page.limit) || page.limit < 1) throw new RangeError(`page limit must be a positive integer, got ${page.limit}`);
    const limit = Math.min(page.limit, MAX_CONTRACT_PAGE);
    const after = page.cursor === undefined ? undefined : fromContractCursor(page.cursor);
    return this.read(async (c) => {
      // One row more than asked says whether another page exists without a COUNT.
      const found = after
        ? await rows<ContractRow>(c, "contractsForUserAfter", [userId, after.createdAtMs, after.id, limit + 1])
        : await rows<ContractRow>(c, "contractsForUser", [userId, limit + 1]);
      const pageRows = found.slice(0, limit);
      const contracts = await this.assemble(c, pageRows);
      const last = pageRows[pageRows.length - 1];
      if (found.length > limit && last) {
        return { contracts, nextCursor: toContractCursor({ createdAtMs: last.created_at_ms, id: last.id }) };
      }
      return { contracts };
    });
  }

  async addSignature(contractId: string, signature: Signature, options: SignatureOptions = {}): Promise<Contract> {
    return this.write(async (c) => {
      // The contract's row lock: two last signatures from two nodes are taken one after the other,
      // so exactly one of them sees every party signed and sets the status.
      const row = await one<ContractRow>(c, "lockContract", [contractId]);
      if (!row) throw new Error(`contract ${contractId} not found`);
      await this.insertSignatureRow(c, { id: row.id, textSha256: row.text_sha256 }, signature);
      const unsigned = (await one<{ n: bigint }>(c, "countUnsignedParties", [row.id]))!.n;
      if (options.statusWhenFullySigned !== undefined && unsigned === 0n) {
        await run(c, "setContractStatus", [options.statusWhenFullySigned, row.id]);
        return (await this.assemble(c, [{ ...row, status: BigInt(options.statusWhenFullySigned) }]))[0]!;
      }
      return (await this.assemble(c, [row]))[0]!;
    });
  }

  async setContractStatus(contractId: string, status: ContractStatus): Promise<void> {
    const info = await this.single("setContractStatus", [status, contractId]);
    if (info.rowCount === 0) throw new Error(`contract ${contractId} not found`);
  }

  async declineContract(contractId: string, decline: { userId: string; reason: string; atMs: number }): Promise<Contract> {
    return this.write(async (c) => {
      const row = await one<ContractRow>(c, "lockContract", [contractId]);
      if (!row) throw new Error(`contract ${contractId} not found`);
      const parties = (await one<{ n: bigint }>(c, "countParties", [contractId]))!.n;
      const signatures = (await one<{ n: bigint }>(c, "countSignatures", [contractId]))!.n;
      // A contract every party signed is being paid: it can no longer be declined.
      if (signatures >= parties) throw new StoreConflictError(`contract ${contractId} is signed by every party`);
      const info = await run(c, "declineContract", [ContractStatus.DECLINED, contractId, ContractStatus.AWAITING_SIGNATURES]);
      if (info.rowCount === 0) throw new StoreConflictError(`contract ${contractId} is not awaiting signatures`);
      await run(c, "insertDecline", [contractId, decline.userId, decline.reason, decline.atMs]);
      return (await this.assemble(c, [{ ...row, status: BigInt(ContractStatus.DECLINED) }]))[0]!;
    });
  }

  async listExecutingContracts(): Promise<Contract[]> {
    return this.listContractsWithStatus(ContractStatus.EXECUTING);
  }

  async listContractsWithStatus(status: ContractStatus): Promise<Contract[]> {
    return this.read(async (c) => this.assemble(c, await rows<ContractRow>(c, "contractsByStatus", [status])));
  }

  async recordPaymentIntent(payment: Payment): Promise<Payment> {
    return this.write(async (c) => {
      await this.insertPaymentRow(c, payment);
      return fromPaymentRow((await one<PaymentRow>(c, "paymentByKey", [payment.idempotencyKey]))!);
    });
  }

  async recordPaymentResult(p: Payment): Promise<void> {
    const info = await this.single("updatePayment", [p.status, p.railReference, p.failureReason, p.updatedAtMs, p.id]);
    if (info.rowCount === 0) throw new Error(`payment ${p.id} not found`);
  }

  async recordHoldIntent(hold: EscrowHold): Promise<EscrowHold> {
    return this.write(async (c) => {
      await this.insertHoldRow(c, hold);
      return fromHoldRow((await one<HoldRow>(c, "holdByKey", [hold.idempotencyKey]))!);
    });
  }

  /** Besides status, rail reference, failure reason and time, a hold's result sets its captured amount and expiry. */
  async recordHoldResult(h: EscrowHold): Promise<void> {
    const info = await this.single("updateHold", [h.status, h.railReference, h.failureReason, h.updatedAtMs, h.capturedMinor, h.expiresAtMs, h.id]);
    if (info.rowCount === 0) throw new Error(`escrow hold ${h.id} not found`);
  }

  async getPaymentByRailReference(railReference: string): Promise<Payment | undefined> {
    this.live();
    // An empty reference means "not sent yet"; it must never match every such payment.
    if (railReference === "") return undefined;
    const row = (await this.single<PaymentRow>("paymentByRailReference", [railReference])).rows[0];
    return row && fromPaymentRow(row);
  }

  async getHoldByRailReference(railReference: string): Promise<EscrowHold | undefined> {
    this.live();
    if (railReference === "") return undefined;
    const row = (await this.single<HoldRow>("holdByRailReference", [railReference])).rows[0];
    return row && fromHoldRow(row);
  }

  async listPendingIntents(): Promise<{ payments: Payment[]; holds: EscrowHold[] }> {
    return this.read(async (c) => ({
      payments: (await rows<PaymentRow>(c, "pendingPayments")).map(fromPaymentRow),
      holds: (await rows<HoldRow>(c, "pendingHolds")).map(fromHoldRow),
    }));
  }

  async saveMilestone(milestone: Milestone): Promise<void> {
    await this.write((c) => this.upsertMilestoneRow(c, milestone));
  }

  async recordSettlementIntent(intent: SettlementIntent, milestone?: Milestone): Promise<SettlementIntent> {
    requireText("settlement idempotency key", intent.idempotencyKey);
    return this.write(async (c) => {
      if (milestone) await this.upsertMilestoneRow(c, milestone);
      try {
        await run(c, "insertIntent", [
          intent.idempotencyKey, intent.contractId, intent.milestoneId, intent.holdId, intent.action, intent.amountMinor, intent.createdAtMs,
        ]);
      } catch (err) {
        throw explain(err, `settlement intent ${intent.idempotencyKey}`);
      }
      return fromIntentRow((await one<IntentRow>(c, "intentByKey", [intent.idempotencyKey]))!);
    });
  }

  async recordSettlementOutcome(outcome: SettlementOutcome): Promise<void> {
    await this.write(async (c) => {
      const h = outcome.hold;
      if (h) {
        const info = await run(c, "updateHold", [h.status, h.railReference, h.failureReason, h.updatedAtMs, h.capturedMinor, h.expiresAtMs, h.id]);
        if (info.rowCount === 0) throw new Error(`escrow hold ${h.id} not found`);
      }
      await this.upsertMilestoneRow(c, outcome.milestone);
      if (outcome.contractStatus !== undefined) await run(c, "setContractStatus", [outcome.contractStatus, outcome.milestone.contractId]);
      if (outcome.intentKey) await run(c, "deleteIntent", [outcome.intentKey]);
    });
  }

  async listSettlementIntents(): Promise<SettlementIntent[]> {
    return (await this.single<IntentRow>("openIntents")).rows.map(fromIntentRow);
  }

  async postLedgerTransaction(tx: LedgerTransaction): Promise<{ transaction: LedgerTransaction; replayed: boolean }> {
    this.live();
    requireText("ledger transaction id", tx.id);
    requireText("ledger idempotency key", tx.idempotencyKey);
    checkBalanced(tx);
    return this.write(async (c) => {
      let inserted;
      try {
        // A second node posting the same key waits here for the first's commit, then inserts nothing.
        inserted = await run(c, "insertLedgerTx", [tx.id, tx.idempotencyKey, tx.memo, tx.atMs]);
      } catch (err) {
        throw conflictOr(err, `ledger transaction id ${tx.id} is already used by another idempotency key`);
      }
      if (inserted.rowCount === 0) {
        const existing = (await one<LedgerTxRow>(c, "ledgerTxByKey", [tx.idempotencyKey]))!;
        const stored = toLedgerTransaction(existing, await rows<LegRow>(c, "legsOf", [existing.id]));
        if (!sameLegs(stored.legs, tx.legs)) {
          this.log.warn({ idempotencyKey: tx.idempotencyKey, transactionId: stored.id }, "ledger replay with different legs; keeping the first");
        }
        return { transaction: stored, replayed: true };
      }
      for (const [i, leg] of tx.legs.entries()) await run(c, "insertLeg", [tx.id, i, leg.account, leg.currency, leg.amountMinor]);
      return {
        transaction: { id: tx.id, idempotencyKey: tx.idempotencyKey, memo: tx.memo, atMs: tx.atMs, legs: tx.legs.map((l) => ({ ...l })) },
        replayed: false,
      };
    });
  }

  async getLedgerTransaction(idempotencyKey: string): Promise<LedgerTransaction | undefined> {
    return this.read(async (c) => {
      const row = await one<LedgerTxRow>(c, "ledgerTxByKey", [idempotencyKey]);
      return row && toLedgerTransaction(row, await rows<LegRow>(c, "legsOf", [row.id]));
    });
  }

  async getLedgerBalance(account: string, currency: string): Promise<bigint> {
    return (await this.single<{ balance: bigint }>("balance", [account, currency])).rows[0]!.balance;
  }

  async getBalances(userId: string): Promise<Balance[]> {
    const available = ledgerAccounts.available(userId);
    const held = ledgerAccounts.held(userId);
    const received = ledgerAccounts.received(userId);
    const found = (await this.single<{ account: string; currency: string; balance: bigint }>("balancesOf", [available, held, received])).rows;
    const byCurrency = new Map<string, Balance>();
    for (const r of found) {
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

  /**
   * Asynchronous: the promise settles once the event is committed (the event log waits for it).
   * The event and the room's seq mark are one statement, so one round trip; trimming, once per
   * batch of appends, is a transaction of its own after it (it only removes what is past `keep`).
   */
  async recordRoomEvent(roomId: string, event: PanelEvent, write: RoomEventWrite): Promise<void> {
    this.live();
    requireText("room id", roomId);
    requireKeep(write.keep);
    if (event.seq < 1n) throw new RangeError(`room ${roomId}: event seq must be at least 1, got ${event.seq}`);
    const kept = write.markOnly !== true;
    let stored: bigint;
    try {
      stored = (await this.single<{ stored_events: bigint }>("recordEvent", [roomId, event.seq, event.atMs, kept ? toBinary(PanelEventSchema, event) : null, kept])).rows[0]!
        .stored_events;
    } catch (err) {
      throw conflictOr(err, `room ${roomId} already has event ${event.seq}`);
    }
    // Trimming counts the room's newest `keep` (O(keep)), so it runs once per batch of appends.
    if (stored > BigInt(write.keep + trimSlack(write.keep))) await this.write((c) => this.trimRoomEvents(c, roomId, write.keep));
  }

  async appendRoomEvents(roomId: string, events: PanelEvent[], keep: number): Promise<void> {
    this.live();
    requireText("room id", roomId);
    requireKeep(keep);
    await this.write(async (c) => {
      if ((await this.insertRoomEvents(c, roomId, events, false)) > BigInt(keep)) await this.trimRoomEvents(c, roomId, keep);
    });
  }

  /** Inserts `events` (or, `markOnly`, just numbers them) and returns how many the room now stores. */
  private async insertRoomEvents(c: Client, roomId: string, events: PanelEvent[], markOnly: boolean): Promise<bigint> {
    let stored = 0n;
    for (const e of events) {
      if (e.seq < 1n) throw new RangeError(`room ${roomId}: event seq must be at least 1, got ${e.seq}`);
      if (!markOnly) {
        try {
          await run(c, "insertEvent", [roomId, e.seq, e.atMs, toBinary(PanelEventSchema, e)]);
        } catch (err) {
          throw conflictOr(err, `room ${roomId} already has event ${e.seq}`);
        }
      }
      stored = (await one<{ stored_events: bigint }>(c, "raiseLogMark", [roomId, e.seq, e.atMs, markOnly ? 0 : 1]))!.stored_events;
    }
    return stored;
  }

  /** Keeps the room's newest `keep` events and records where the trimmed ones ended. */
  private async trimRoomEvents(c: Client, roomId: string, keep: number): Promise<void> {
    const cutoff = await one<{ seq: bigint }>(c, "keepCutoff", [roomId, keep - 1]);
    if (!cutoff) return;
    const newest = (await one<{ seq: bigint | null }>(c, "newestBefore", [roomId, cutoff.seq]))!.seq;
    if (newest === null) return;
    await run(c, "trimEvents", [roomId, cutoff.seq]);
    await run(c, "markTrimmed", [newest, keep, roomId]);
  }

  async getRoomLogState(roomId: string): Promise<RoomLogState> {
    return this.read(async (c) => {
      const row = await one<{ last_seq: bigint; trimmed_through_seq: bigint }>(c, "logState", [roomId]);
      const lastSeq = (await one<{ seq: bigint }>(c, "lastSeq", [roomId]))!.seq;
      return { lastSeq, trimmedThroughSeq: row ? row.trimmed_through_seq : 0n };
    });
  }

  async deleteRoomLogsBefore(beforeMs: number, keep: (roomId: string) => boolean): Promise<string[]> {
    const swept: string[] = [];
    for (const { room_id: roomId } of (await this.single<{ room_id: string }>("staleLogs", [beforeMs])).rows) {
      if (keep(roomId)) continue;
      // One room per transaction: a long sweep never holds locks for long.
      await this.write(async (c) => {
        await run(c, "deleteRoomEvents", [roomId]);
        await run(c, "markDeleted", [roomId]);
      });
      swept.push(roomId);
    }
    // A code used again by a new pair: the earlier pair's events (never shown to the new one) go
    // once the earlier pair has been gone the retention period, live room or not.
    for (const row of (await this.single<{ room_id: string; history_after_seq: bigint }>("earlierPairs", [beforeMs])).rows) {
      await this.write(async (c) => {
        const deleted = (await run(c, "deleteEventsThrough", [row.room_id, row.history_after_seq])).rowCount ?? 0;
        await run(c, "markDeletedThrough", [row.history_after_seq, deleted, row.room_id]);
      });
      if (!swept.includes(row.room_id)) swept.push(row.room_id);
    }
    return swept;
  }

  async loadRoomEvents(roomId: string, afterSeq: bigint): Promise<PanelEvent[]> {
    return (await this.single<{ event: Buffer }>("eventsAfter", [roomId, afterSeq])).rows.map((r) => fromBinary(PanelEventSchema, r.event));
  }

  async lastRoomSeq(roomId: string): Promise<bigint> {
    return (await this.single<{ seq: bigint }>("lastSeq", [roomId])).rows[0]!.seq;
  }

  async getRoomRecord(roomId: string): Promise<RoomRecord | undefined> {
    return this.read(async (c) => {
      const row = await one<{ room_id: string; invite_code: string; history_after_seq: bigint; created_at_ms: bigint }>(c, "getRoom", [roomId]);
      if (!row) return undefined;
      const members = await rows<{ user_id: string; joined_at_ms: bigint; left_at_ms: bigint | null }>(c, "roomMembers", [roomId]);
      return {
        roomId: row.room_id,
        inviteCode: row.invite_code,
        historyAfterSeq: row.history_after_seq,
        createdAtMs: Number(row.created_at_ms),
        members: members.map((m) => ({
          userId: m.user_id,
          joinedAtMs: Number(m.joined_at_ms),
          leftAtMs: m.left_at_ms === null ? undefined : Number(m.left_at_ms),
        })),
      };
    });
  }

  async startRoom(room: { roomId: string; inviteCode: string; historyAfterSeq: bigint; atMs: number }): Promise<void> {
    requireText("room id", room.roomId);
    await this.write(async (c) => {
      await run(c, "upsertRoom", [room.roomId, room.inviteCode, room.historyAfterSeq, room.atMs]);
      await run(c, "deleteRoomMembers", [room.roomId]);
    });
  }

  async addRoomMember(roomId: string, userId: string, atMs: number): Promise<void> {
    requireText("room id", roomId);
    requireText("user id", userId);
    await this.single("upsertRoomMember", [roomId, userId, atMs]);
  }

  async markRoomMemberLeft(roomId: string, userId: string, atMs: number): Promise<void> {
    await this.single("markMemberLeft", [atMs, roomId, userId]);
  }

  async checkWritable(): Promise<void> {
    this.live();
    // A fresh session's answer: a standby in recovery or a read-only default refuses writes, and a
    // database that stopped taking connections fails the connect. Nothing is written.
    const state = await inTransaction(this.pool, "BEGIN", async (client) => {
      await client.query(`SET LOCAL statement_timeout = ${CHECK_TIMEOUT_MS}`);
      return (
        await client.query<{ recovery: boolean; read_only: string }>(
          "SELECT pg_is_in_recovery() AS recovery, current_setting('transaction_read_only') AS read_only",
        )
      ).rows[0];
    });
    if (state?.recovery) throw new StoreUnavailableError("storage is read-only: the database is a standby in recovery");
    if (state?.read_only === "on") throw new StoreUnavailableError("storage is read-only: the database refuses writes (default_transaction_read_only)");
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.lockPool.end();
    await this.pool.end();
    this.log.info("store closed");
  }

  private live(): void {
    if (this.closed) throw new Error("store is closed");
  }

  /** Full Contract messages of `contractRows`, in their order, from six queries however many there are. */
  private async assemble(c: Client, contractRows: ContractRow[]): Promise<Contract[]> {
    if (contractRows.length === 0) return [];
    const ids = contractRows.map((r) => r.id);
    const [parties, signatures, payments, holds, milestones, declines] = [
      await rows<Tagged<PartyRow>>(c, "partiesOf", [ids]),
      await rows<Tagged<SignatureRow>>(c, "signaturesOf", [ids]),
      await rows<PaymentRow>(c, "paymentsOf", [ids]),
      await rows<HoldRow>(c, "holdsOf", [ids]),
      await rows<MilestoneRow>(c, "milestonesOf", [ids]),
      await rows<Tagged<{ user_id: string; reason: string }>>(c, "declinesOf", [ids]),
    ];
    const of = <R extends { contract_id: string }>(list: R[], id: string) => list.filter((r) => r.contract_id === id);
    return contractRows.map((row) =>
      assembleContract(row, {
        parties: of(parties, row.id),
        signatures: of(signatures, row.id),
        payments: of(payments, row.id),
        holds: of(holds, row.id),
        milestones: of(milestones, row.id),
        decline: declines.find((d) => d.contract_id === row.id),
      }),
    );
  }

  /** Checks and inserts one signature; call inside a transaction. */
  private async insertSignatureRow(c: Client, contract: { id: string; textSha256: string }, s: Signature): Promise<void> {
    if (!(await one(c, "getParty", [contract.id, s.userId]))) {
      throw new Error(`user ${s.userId} is not a party to contract ${contract.id}`);
    }
    if (s.textSha256 !== contract.textSha256) {
      throw new Error(`signature by ${s.userId} is for text ${s.textSha256}, contract ${contract.id} has ${contract.textSha256}`);
    }
    if (await one(c, "getSignature", [contract.id, s.userId])) {
      throw new StoreConflictError(`user ${s.userId} already signed contract ${contract.id}`);
    }
    try {
      await run(c, "insertSignature", [contract.id, s.userId, s.textSha256, s.signedAtMs]);
    } catch (err) {
      throw conflictOr(err, `user ${s.userId} already signed contract ${contract.id}`);
    }
  }

  private async insertPaymentRow(c: Client, p: Payment): Promise<void> {
    requireText("payment id", p.id);
    requireText("payment idempotency key", p.idempotencyKey);
    try {
      await run(c, "insertPayment", [
        p.id, p.contractId, p.lineItemId, p.payerUserId, p.payeeUserId, p.amountMinor, p.currency, p.status,
        p.idempotencyKey, p.railReference, p.failureReason, p.rail, p.updatedAtMs, p.updatedAtMs,
      ]);
    } catch (err) {
      throw conflictOr(err, `payment id ${p.id} is already used by another idempotency key`, `payment ${p.id} for contract ${p.contractId}`);
    }
  }

  private async insertHoldRow(c: Client, h: EscrowHold): Promise<void> {
    requireText("escrow hold id", h.id);
    requireText("escrow hold idempotency key", h.idempotencyKey);
    try {
      await run(c, "insertHold", [
        h.id, h.contractId, h.lineItemId, h.payerUserId, h.payeeUserId, h.amountMinor, h.currency, h.status,
        h.idempotencyKey, h.railReference, h.failureReason, h.rail, h.updatedAtMs, h.capturedMinor, h.expiresAtMs, h.updatedAtMs,
      ]);
    } catch (err) {
      throw conflictOr(err, `escrow hold id ${h.id} is already used by another idempotency key`, `escrow hold ${h.id} for contract ${h.contractId}`);
    }
  }

  private async upsertMilestoneRow(c: Client, m: Milestone): Promise<void> {
    requireText("milestone id", m.id);
    let info;
    try {
      info = await run(c, "upsertMilestone", [
        m.id, m.contractId, m.lineItemId, optionalBlob(MilestoneTermsSchema, m.terms), m.status,
        m.providerConfirmed ? 1 : 0, m.clientConfirmed ? 1 : 0, m.proposedAmountMinor === 0n ? null : m.proposedAmountMinor, m.minMinor, m.maxMinor,
        m.currency, m.capturedMinor, m.failureReason, m.updatedAtMs, m.updatedAtMs,
      ]);
    } catch (err) {
      throw explain(err, `milestone ${m.id} for contract ${m.contractId}`);
    }
    if (info.rowCount === 0) throw new StoreConflictError(`milestone ${m.id} belongs to another contract`);
  }
}

/** PostgreSQL's SQLSTATE of a driver error, when it has one. */
function sqlState(err: unknown): string | undefined {
  return err instanceof pg.DatabaseError ? err.code : undefined;
}

/** A unique violation (23505) becomes a `StoreConflictError`; anything else goes through `explain`. */
function conflictOr(err: unknown, conflictMessage: string, context = conflictMessage): Error {
  if (sqlState(err) === "23505") return new StoreConflictError(conflictMessage, { cause: err });
  return explain(err, context);
}

/** A foreign-key violation (23503) gets a message that says which record was missing. */
function explain(err: unknown, context: string): Error {
  if (sqlState(err) === "23503") return new Error(`${context}: refers to a record that does not exist`, { cause: err });
  return err instanceof Error ? err : new Error(String(err));
}
