/**
 * The store's schema, as an ordered list of migrations. A database records the versions it has
 * applied in `schema_migrations`; opening it applies the rest, each in its own transaction.
 *
 * Rules for editing this file: never change a migration that has shipped (databases in the field
 * already ran it, and test/store/fixtures/v1.sqlite was made by it); add a new one instead.
 *
 * The SQL is kept to what PostgreSQL also accepts: TEXT, INTEGER and BIGINT columns, booleans as
 * 0/1 integers with a CHECK, and BYTEA for protobuf-encoded messages that no query looks inside.
 * SQLite gives BYTEA numeric affinity, which stores blobs unchanged, so the same DDL runs on both:
 * migrate.ts applies this one list to SQLite (`migrate`) and to PostgreSQL (`migratePostgres`).
 */

/** One step of the schema: applied once, in order of `version`, inside a transaction. */
export interface Migration {
  /** 1, 2, 3, … with no gaps. */
  version: number;
  /** Short snake_case name, recorded next to the version so a diverged schema is detected. */
  name: string;
  /** Statements separated by semicolons. */
  sql: string;
}

/** The table that records applied migrations; created before any migration runs. */
export const MIGRATIONS_TABLE_SQL = `
CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at_ms BIGINT NOT NULL
)`;

const v1CoreTables = `
CREATE TABLE users (
  id TEXT PRIMARY KEY,
  created_at_ms BIGINT NOT NULL
);

-- The whole AgentProfile message; nothing queries inside it.
CREATE TABLE profiles (
  user_id TEXT PRIMARY KEY REFERENCES users (id),
  profile BYTEA NOT NULL
);

CREATE TABLE secrets (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE negotiations (
  id TEXT PRIMARY KEY,
  room_id TEXT NOT NULL,
  status INTEGER NOT NULL,
  initiator_user_id TEXT NOT NULL,
  current_proposal BYTEA,
  max_rounds INTEGER NOT NULL,
  started_at_ms BIGINT NOT NULL,
  expires_at_ms BIGINT NOT NULL,
  end_reason TEXT NOT NULL
);

CREATE TABLE negotiation_rounds (
  negotiation_id TEXT NOT NULL REFERENCES negotiations (id),
  number INTEGER NOT NULL,
  from_user_id TEXT NOT NULL,
  action INTEGER NOT NULL,
  proposal BYTEA,
  reason TEXT NOT NULL,
  at_ms BIGINT NOT NULL,
  PRIMARY KEY (negotiation_id, number)
);

-- terms is the agreed Proposal message; text and text_sha256 never change once inserted.
CREATE TABLE contracts (
  id TEXT PRIMARY KEY,
  room_id TEXT NOT NULL,
  negotiation_id TEXT NOT NULL,
  title TEXT NOT NULL,
  text TEXT NOT NULL,
  text_sha256 TEXT NOT NULL,
  terms BYTEA,
  status INTEGER NOT NULL,
  created_at_ms BIGINT NOT NULL
);
CREATE INDEX contracts_by_created ON contracts (created_at_ms, id);
CREATE INDEX contracts_by_status ON contracts (status);

CREATE TABLE contract_parties (
  contract_id TEXT NOT NULL REFERENCES contracts (id),
  user_id TEXT NOT NULL,
  display_name TEXT NOT NULL,
  role INTEGER NOT NULL,
  position INTEGER NOT NULL,
  PRIMARY KEY (contract_id, user_id)
);
CREATE INDEX contract_parties_by_user ON contract_parties (user_id, contract_id);

-- The composite key makes a second signature by the same user impossible, and the foreign key
-- makes a signature by someone who is not a party impossible.
CREATE TABLE signatures (
  contract_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  text_sha256 TEXT NOT NULL,
  signed_at_ms BIGINT NOT NULL,
  PRIMARY KEY (contract_id, user_id),
  FOREIGN KEY (contract_id, user_id) REFERENCES contract_parties (contract_id, user_id)
);

CREATE TABLE payments (
  id TEXT PRIMARY KEY,
  contract_id TEXT NOT NULL REFERENCES contracts (id),
  line_item_id TEXT NOT NULL,
  payer_user_id TEXT NOT NULL,
  payee_user_id TEXT NOT NULL,
  amount_minor BIGINT NOT NULL,
  currency TEXT NOT NULL,
  status INTEGER NOT NULL,
  idempotency_key TEXT NOT NULL UNIQUE,
  rail_reference TEXT NOT NULL,
  failure_reason TEXT NOT NULL,
  rail INTEGER NOT NULL,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL
);
CREATE INDEX payments_by_contract ON payments (contract_id);
CREATE INDEX payments_by_rail_reference ON payments (rail_reference);

CREATE TABLE escrow_holds (
  id TEXT PRIMARY KEY,
  contract_id TEXT NOT NULL REFERENCES contracts (id),
  line_item_id TEXT NOT NULL,
  payer_user_id TEXT NOT NULL,
  payee_user_id TEXT NOT NULL,
  amount_minor BIGINT NOT NULL,
  captured_minor BIGINT NOT NULL,
  currency TEXT NOT NULL,
  status INTEGER NOT NULL,
  idempotency_key TEXT NOT NULL UNIQUE,
  rail_reference TEXT NOT NULL,
  expires_at_ms BIGINT NOT NULL,
  failure_reason TEXT NOT NULL,
  rail INTEGER NOT NULL,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL
);
CREATE INDEX escrow_holds_by_contract ON escrow_holds (contract_id);
CREATE INDEX escrow_holds_by_rail_reference ON escrow_holds (rail_reference);

-- terms is the MilestoneTerms message.
CREATE TABLE milestones (
  id TEXT PRIMARY KEY,
  contract_id TEXT NOT NULL REFERENCES contracts (id),
  line_item_id TEXT NOT NULL,
  terms BYTEA,
  status INTEGER NOT NULL,
  provider_confirmed INTEGER NOT NULL CHECK (provider_confirmed IN (0, 1)),
  client_confirmed INTEGER NOT NULL CHECK (client_confirmed IN (0, 1)),
  proposed_amount_minor BIGINT,
  min_minor BIGINT NOT NULL,
  max_minor BIGINT NOT NULL,
  currency TEXT NOT NULL,
  captured_minor BIGINT NOT NULL,
  failure_reason TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL
);
CREATE INDEX milestones_by_contract ON milestones (contract_id);

CREATE TABLE ledger_transactions (
  id TEXT PRIMARY KEY,
  idempotency_key TEXT NOT NULL UNIQUE,
  memo TEXT NOT NULL,
  at_ms BIGINT NOT NULL
);

-- One row per leg; an account's balance in a currency is the sum of its legs.
CREATE TABLE ledger_entries (
  transaction_id TEXT NOT NULL REFERENCES ledger_transactions (id),
  leg_index INTEGER NOT NULL,
  account TEXT NOT NULL,
  currency TEXT NOT NULL,
  amount_minor BIGINT NOT NULL,
  PRIMARY KEY (transaction_id, leg_index)
);
CREATE INDEX ledger_entries_by_account ON ledger_entries (account, currency);
`;

const v2RoomEvents = `
-- Each room's recent PanelEvents, so PanelStream can resume across a restart. The store trims
-- each room to the newest N on append, so the table stays bounded per room.
CREATE TABLE room_events (
  room_id TEXT NOT NULL,
  seq BIGINT NOT NULL,
  at_ms BIGINT NOT NULL,
  event BYTEA NOT NULL,
  PRIMARY KEY (room_id, seq)
);
`;

const v3RecoveryIndexes = `
-- Start-up recovery looks for intents whose rail result was never recorded, and the rail sweeps
-- holds whose authorisation is about to lapse: partial indexes keep both scans small.
CREATE INDEX payments_pending ON payments (status) WHERE status = 1;
CREATE INDEX escrow_holds_pending ON escrow_holds (status) WHERE status = 1;
CREATE INDEX escrow_holds_by_expiry ON escrow_holds (expires_at_ms) WHERE expires_at_ms > 0;
`;

const v4ContractDeclines = `
-- Who declined a drafted contract, and why (CONTRACT_STATUS_DECLINED): at most one per contract.
CREATE TABLE contract_declines (
  contract_id TEXT PRIMARY KEY REFERENCES contracts (id),
  user_id TEXT NOT NULL,
  reason TEXT NOT NULL,
  declined_at_ms BIGINT NOT NULL
);
`;

const v5SettlementIntents = `
-- A capture or release the parties decided, written before the rail is called and deleted in the
-- transaction that records its outcome: whatever is left here after a crash is finished at start.
CREATE TABLE settlement_intents (
  idempotency_key TEXT PRIMARY KEY,
  contract_id TEXT NOT NULL REFERENCES contracts (id),
  milestone_id TEXT NOT NULL REFERENCES milestones (id),
  hold_id TEXT NOT NULL REFERENCES escrow_holds (id),
  action TEXT NOT NULL CHECK (action IN ('capture', 'release')),
  amount_minor BIGINT NOT NULL,
  created_at_ms BIGINT NOT NULL
);
`;

const v6RoomMembers = `
-- Each room code's current pair and its invite code, so both outlive a restart: a room's history
-- is restored only for the people who were in it, and a stranger on a reused code starts empty.
CREATE TABLE rooms (
  room_id TEXT PRIMARY KEY,
  -- '' when anyone may join.
  invite_code TEXT NOT NULL,
  -- This pair's events are those after this seq; earlier ones belong to an earlier pair.
  history_after_seq BIGINT NOT NULL,
  created_at_ms BIGINT NOT NULL
);
-- Members of the room's current pair; left_at_ms is set when they leave.
CREATE TABLE room_members (
  room_id TEXT NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
  user_id TEXT NOT NULL,
  joined_at_ms BIGINT NOT NULL,
  left_at_ms BIGINT,
  PRIMARY KEY (room_id, user_id)
);
`;

const v7RoomLogs = `
-- Each room's event numbering and what its stored log still covers. last_seq is the highest seq
-- ever given out (partial transcripts, which are not stored, included), so numbering goes on
-- from it after a restart even when those events were trimmed or deleted: a seq is never reused.
CREATE TABLE room_logs (
  room_id TEXT PRIMARY KEY,
  last_seq BIGINT NOT NULL,
  -- Events up to this seq were trimmed (beyond the kept window) or deleted (retention): a resume
  -- from before it is told so.
  trimmed_through_seq BIGINT NOT NULL,
  -- Time of the last event, Unix ms: the retention period of a room that is not live runs from it.
  updated_at_ms BIGINT NOT NULL,
  -- Rows the room has in room_events, so trimming runs only once the log has grown a batch past
  -- its window instead of counting on every append; the retention sweep looks only at rooms with some.
  stored_events BIGINT NOT NULL
);
CREATE INDEX room_logs_with_events ON room_logs (updated_at_ms) WHERE stored_events > 0;
INSERT INTO room_logs (room_id, last_seq, trimmed_through_seq, updated_at_ms, stored_events)
  SELECT room_id, MAX(seq), MIN(seq) - 1, MAX(at_ms), COUNT(*) FROM room_events GROUP BY room_id;
`;

/** Every migration, oldest first. The last version is the schema this code reads and writes. */
export const migrations: readonly Migration[] = [
  { version: 1, name: "core_tables", sql: v1CoreTables },
  { version: 2, name: "room_event_log", sql: v2RoomEvents },
  { version: 3, name: "recovery_indexes", sql: v3RecoveryIndexes },
  { version: 4, name: "contract_declines", sql: v4ContractDeclines },
  { version: 5, name: "settlement_intents", sql: v5SettlementIntents },
  { version: 6, name: "room_members", sql: v6RoomMembers },
  { version: 7, name: "room_logs", sql: v7RoomLogs },
];

/** The schema version this code expects after migrating. */
export const LATEST_SCHEMA_VERSION: number = migrations[migrations.length - 1]?.version ?? 0;
