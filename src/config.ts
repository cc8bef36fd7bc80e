import os from "node:os";
import path from "node:path";
import { DEFAULT_CONNECTION_LIMITS as DC, type ConnectionLimits } from "./server/connection-guard.js";
import { DEFAULT_HEALTH_WATCH_INTERVAL_MS } from "./server/health.js";
import { DEFAULT_ROOM_LEASE_MS } from "./room/placement.js";

export type { ConnectionLimits };

/** Every setting, from the environment with embedded defaults. See `.env.example`. */
export interface Config {
  host: string;
  port: number;
  dataDir: string;
  /** SQLite file; defaults to `<dataDir>/handshake.db`. */
  databasePath: string;
  /** PostgreSQL (DATABASE_URL, postgres://…): when set, the store lives there instead of in databasePath. */
  databaseUrl: string;
  logLevel: string;
  /** Browser origins allowed by CORS; empty allows none but same-origin. */
  corsOrigins: string[];
  rooms: {
    maxRooms: number;
    /** A participant whose streams are all gone this long is removed from the room. */
    leaveGraceMs: number;
    /** Events kept per room for PanelStream resume. */
    eventLogSize: number;
    /** Events queued per PanelStream subscriber before it is ended with RESOURCE_EXHAUSTED. */
    subscriberQueueSize: number;
    /** A panel reader that fell behind and does not drain within this long has its stream reset. */
    slowReaderGraceMs: number;
    /** A room nobody has touched this long is evicted. */
    idleRoomMs: number;
    /** The stored log (transcripts included) of a room that is not live is deleted this long after its last event. */
    logRetentionMs: number;
  };
  trigger: { keyword: string; requireBoth: boolean; dualWindowMs: number; smart: boolean };
  negotiation: { maxRounds: number; roundTimeoutMs: number; totalTimeoutMs: number };
  auth: {
    /** HMAC secret for tokens; when empty, one is generated on first start and kept in the store. */
    jwtSecret: string;
    sessionTtlMs: number;
    userTtlMs: number;
    oidcIssuer: string;
    oidcJwksUrl: string;
    oidcAudience: string;
  };
  limits: {
    maxMessageBytes: number;
    maxStreamsPerUser: number;
    sendAudioPerSecond: number;
    /** An HTTP/2 connection with no call open this long is closed with GOAWAY. */
    idleConnectionMs: number;
    maxAmountMinor: bigint;
  };
  /** What one address, one connection and the whole process may hold (denial of service). */
  connections: ConnectionLimits;
  speech: {
    engine: "auto" | "pocketsphinx" | "scribe" | "device";
    elevenLabsApiKey: string;
    elevenLabsBaseUrl: string;
    language: string;
    /** Local recogniser processes (≈20 MB each with the money model, ≈100 MB with Debian's full one) at once; participants beyond it are told to send on-device transcripts. */
    maxProcesses: number;
    /** PocketSphinx: quiet after speech that ends an utterance, ms (SPEECH_END_SILENCE_MS). */
    endSilenceMs: number;
    /** PocketSphinx: "money", the small deal-talk model (≈10 MB a process), or "debian", the full en-us one (≈90 MB). */
    languageModel: "money" | "debian";
  };
  agents: { engine: "offline" | "claude"; anthropicApiKey: string; anthropicBaseUrl: string; model: string };
  payments: {
    rail: "ledger" | "stripe";
    stripeSecretKey: string;
    stripeWebhookSecret: string;
    stripeApiBase: string;
    holdWarningMs: number;
    /** Stripe publishable key (pk_…) handed to browsers for Stripe.js (STRIPE_PUBLISHABLE_KEY). */
    stripePublishableKey: string;
    /** Where browsers load Stripe.js from (STRIPE_JS_URL, default https://js.stripe.com/v3/). */
    stripeJsUrl: string;
    /** Where Stripe's hosted onboarding and card pages send people back to (STRIPE_RETURN_URL). */
    stripeReturnUrl: string;
    /** Where an expired onboarding link sends people, to ask for a new one (STRIPE_REFRESH_URL). */
    stripeRefreshUrl: string;
    /** The platform's cut of each payment, basis points (PLATFORM_FEE_BPS, 0–10000, default 0). */
    platformFeeBps: number;
    /** The platform account's country (STRIPE_PLATFORM_COUNTRY); payees elsewhere are charged on_behalf_of. */
    stripePlatformCountry: string;
  };
  monzoApiBase: string;
  /** Folder of the browser app served at "/"; default clients/web/dist when it exists. */
  webRoot: string;
  /** Prometheus metrics on `GET /metrics` of the server's port (METRICS). */
  metrics: boolean;
  /** How often an open grpc.health.v1 Watch asks readiness again and sends a change. */
  healthWatchIntervalMs: number;
  /** TLS served by this node itself (TLS_CERT_FILE and TLS_KEY_FILE, PEM files); undefined: clear text (behind a router that terminates TLS, or on localhost). */
  tls: { certFile: string; keyFile: string } | undefined;
  /** More than one node (REDIS_URL): the room directory and the cross-node bus in Redis. */
  cluster: {
    /** Empty: one node, the directory and bus in this process. */
    redisUrl: string;
    /** This node's name in the directory (NODE_ID); default `<hostname>-<pid>`. */
    nodeId: string;
    /** How long a node holds a room without renewing (ROOM_LEASE_MS): a dead node's rooms move after at most this. */
    roomLeaseMs: number;
  };
}

/**
 * The Claude model when ANTHROPIC_MODEL is unset: the current Sonnet, not on the SDK's
 * deprecation list (claude-sonnet-4-5 reached end of life on 2026-11-30). The server asks the
 * Models API at start whether the configured model exists (src/compose/engines-agents.ts).
 */
export const DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-5-5";

/** A setting that is present but wrong; names the variable. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

type Env = Record<string, string | undefined>;

function str(env: Env, name: string, fallback: string): string {
  const value = env[name];
  return value === undefined || value === "" ? fallback : value;
}

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration such as "7d", "12h", "30m", "45s", "500ms", or plain milliseconds; in milliseconds. */
function duration(env: Env, name: string, fallbackMs: number, minMs: number, maxMs: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallbackMs;
  const match = /^\s*(\d+)\s*(ms|s|m|h|d)?\s*$/.exec(raw);
  const value = match ? Number(match[1]) * DURATION_UNITS_MS[match[2] ?? "ms"]! : NaN;
  if (!Number.isSafeInteger(value) || value < minMs || value > maxMs) {
    throw new ConfigError(`${name} must be a duration from ${minMs} ms to ${maxMs / 86_400_000} days (e.g. "7d", "12h", "30m"), got "${raw}"`);
  }
  return value;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
}

function oneOf<T extends string>(env: Env, name: string, fallback: T, allowed: readonly T[]): T {
  const raw = str(env, name, fallback);
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(", ")}, got "${raw}"`);
  }
  return raw as T;
}

function url(env: Env, name: string, fallback: string): string {
  const raw = str(env, name, fallback);
  if (raw === "") return raw;
  try {
    new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be a URL, got "${raw}"`);
  }
  return raw;
}

function modelId(env: Env, name: string, fallback: string): string {
  const raw = str(env, name, fallback).trim();
  // Model ids and aliases are one token (claude-sonnet-5-5, a dated snapshot, a cloud
  // provider's "anthropic.claude-…:0" or "…@20251001"); anything else is a typo.
  if (!/^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}$/.test(raw)) {
    throw new ConfigError(`${name} must be a model id such as ${DEFAULT_ANTHROPIC_MODEL}, got "${raw}"`);
  }
  return raw;
}

/** An ISO 3166-1 alpha-2 country code, upper-cased, or "" when unset. */
function countryCode(env: Env, name: string): string {
  const raw = str(env, name, "").toUpperCase();
  if (raw !== "" && !/^[A-Z]{2}$/.test(raw)) throw new ConfigError(`${name} must be a two-letter country code such as GB or US, got "${raw}"`);
  return raw;
}

/** Shortest HMAC secret, in bytes (UTF-8): HS256 wants a key at least as long as its 256-bit hash (RFC 7518 §3.2). */
export const MIN_JWT_SECRET_BYTES = 32;

function jwtSecret(env: Env, name: string): string {
  const raw = str(env, name, "");
  // Empty means "generate one and keep it in the store"; a short one would sign guessable tokens.
  const bytes = Buffer.byteLength(raw, "utf8");
  if (raw !== "" && bytes < MIN_JWT_SECRET_BYTES) {
    throw new ConfigError(`${name} must be at least ${MIN_JWT_SECRET_BYTES} bytes, got ${bytes} (or leave it empty to have one generated)`);
  }
  return raw;
}

/** TLS_CERT_FILE and TLS_KEY_FILE: both or neither. */
function tlsFiles(env: Env): Config["tls"] {
  const certFile = str(env, "TLS_CERT_FILE", "");
  const keyFile = str(env, "TLS_KEY_FILE", "");
  if ((certFile === "") !== (keyFile === "")) throw new ConfigError("TLS_CERT_FILE and TLS_KEY_FILE are set together or not at all");
  return certFile ? { certFile: path.resolve(certFile), keyFile: path.resolve(keyFile) } : undefined;
}

/** DATABASE_URL: empty, or a postgres:// (postgresql://) URL. A refusal never repeats it: it may hold a password. */
function databaseUrl(env: Env): string {
  const raw = str(env, "DATABASE_URL", "");
  if (raw === "") return raw;
  let protocol: string;
  try {
    protocol = new URL(raw).protocol;
  } catch {
    throw new ConfigError("DATABASE_URL must be a postgres:// URL (or unset for SQLite in DATA_DIR), got something that is not a URL");
  }
  if (!/^postgres(ql)?:$/.test(protocol)) {
    throw new ConfigError(`DATABASE_URL must be a postgres:// URL (or unset for SQLite in DATA_DIR), got a ${protocol}// one`);
  }
  return raw;
}

/**
 * Reads and validates the configuration. Throws ConfigError naming the first bad variable.
 * Remote engines switch on when their key is set and their engine variable is not forced.
 */
export function loadConfig(env: Env = process.env): Config {
  const dataDir = path.resolve(str(env, "DATA_DIR", "./data"));
  const elevenLabsApiKey = str(env, "ELEVENLABS_API_KEY", "");
  const anthropicApiKey = str(env, "ANTHROPIC_API_KEY", "");
  const stripeSecretKey = str(env, "STRIPE_SECRET_KEY", "");
  const config: Config = {
    host: str(env, "HOST", "127.0.0.1"),
    port: int(env, "PORT", 8080, 0, 65535),
    dataDir,
    databasePath: path.resolve(dataDir, str(env, "DATABASE_PATH", "handshake.db")),
    databaseUrl: databaseUrl(env),
    logLevel: oneOf(env, "LOG_LEVEL", "info", ["fatal", "error", "warn", "info", "debug", "trace", "silent"]),
    corsOrigins: str(env, "CORS_ORIGINS", "")
      .split(",")
      .map((o) => o.trim())
      .filter((o) => o !== ""),
    rooms: {
      maxRooms: int(env, "MAX_ROOMS", 120, 1, 1_000_000),
      leaveGraceMs: int(env, "LEAVE_GRACE_MS", 30_000, 0, 3_600_000),
      eventLogSize: int(env, "ROOM_EVENT_LOG_SIZE", 1000, 10, 100_000),
      subscriberQueueSize: int(env, "PANEL_QUEUE_SIZE", 256, 8, 100_000),
      slowReaderGraceMs: int(env, "PANEL_SLOW_READER_GRACE_MS", 5_000, 10, 600_000),
      idleRoomMs: int(env, "IDLE_ROOM_MS", 3_600_000, 1000, 86_400_000 * 7),
      logRetentionMs: duration(env, "ROOM_LOG_RETENTION", 7 * 86_400_000, 1_000, 3_650 * 86_400_000),
    },
    trigger: {
      keyword: str(env, "TRIGGER_KEYWORD", "handshake"),
      requireBoth: bool(env, "TRIGGER_REQUIRE_BOTH", false),
      dualWindowMs: int(env, "TRIGGER_DUAL_WINDOW_MS", 10_000, 100, 600_000),
      smart: bool(env, "TRIGGER_SMART", false),
    },
    negotiation: {
      maxRounds: int(env, "NEGOTIATION_MAX_ROUNDS", 5, 1, 5),
      roundTimeoutMs: int(env, "NEGOTIATION_ROUND_TIMEOUT_MS", 30_000, 100, 600_000),
      totalTimeoutMs: int(env, "NEGOTIATION_TOTAL_TIMEOUT_MS", 120_000, 100, 3_600_000),
    },
    auth: {
      jwtSecret: jwtSecret(env, "JWT_SECRET"),
      sessionTtlMs: int(env, "SESSION_TTL_MS", 12 * 3_600_000, 1000, 7 * 86_400_000),
      userTtlMs: int(env, "USER_TOKEN_TTL_MS", 365 * 86_400_000, 60_000, 3650 * 86_400_000),
      oidcIssuer: str(env, "OIDC_ISSUER", ""),
      oidcJwksUrl: url(env, "OIDC_JWKS_URL", ""),
      oidcAudience: str(env, "OIDC_AUDIENCE", ""),
    },
    limits: {
      maxMessageBytes: int(env, "MAX_MESSAGE_BYTES", 256 * 1024, 1024, 16 * 1024 * 1024),
      maxStreamsPerUser: int(env, "MAX_STREAMS_PER_USER", 8, 1, 1000),
      idleConnectionMs: int(env, "IDLE_CONNECTION_MS", 120_000, 100, 3_600_000),
      sendAudioPerSecond: int(env, "SEND_AUDIO_PER_SECOND", 100, 1, 10_000),
      maxAmountMinor: BigInt(int(env, "MAX_AMOUNT_MINOR", 100_000_000, 1, Number.MAX_SAFE_INTEGER)),
    },
    connections: {
      maxConnections: int(env, "MAX_CONNECTIONS", DC.maxConnections, 16, 1_000_000),
      maxConnectionsPerAddress: int(env, "MAX_CONNECTIONS_PER_ADDRESS", DC.maxConnectionsPerAddress, 1, 1_000_000),
      maxStreamsPerConnection: int(env, "H2_MAX_CONCURRENT_STREAMS", DC.maxStreamsPerConnection, 1, 10_000),
      maxStreamsPerAddress: int(env, "MAX_STREAMS_PER_ADDRESS", DC.maxStreamsPerAddress, 1, 1_000_000),
      maxHealthWatchesPerAddress: int(env, "HEALTH_WATCH_PER_ADDRESS", DC.maxHealthWatchesPerAddress, 1, 10_000),
      maxResetsPerConnectionPerSecond: int(env, "H2_MAX_RESETS_PER_SECOND", DC.maxResetsPerConnectionPerSecond, 1, 100_000),
      maxResetsPerAddressPerSecond: int(env, "H2_MAX_RESETS_PER_ADDRESS_PER_SECOND", DC.maxResetsPerAddressPerSecond, 1, 1_000_000),
      abuseBanMs: int(env, "ABUSE_BAN_MS", DC.abuseBanMs, 0, 3_600_000),
      handshakeTimeoutMs: int(env, "HANDSHAKE_TIMEOUT_MS", DC.handshakeTimeoutMs, 50, 600_000),
      httpHeadersTimeoutMs: int(env, "HTTP_HEADERS_TIMEOUT_MS", DC.httpHeadersTimeoutMs, 50, 600_000),
      httpRequestTimeoutMs: int(env, "HTTP_REQUEST_TIMEOUT_MS", DC.httpRequestTimeoutMs, 50, 3_600_000),
      roomCreatesPerAddressPerMinute: int(env, "ROOM_CREATES_PER_ADDRESS_PER_MINUTE", DC.roomCreatesPerAddressPerMinute, 1, 1_000_000),
      roomCreatesPerUserPerMinute: int(env, "ROOM_CREATES_PER_USER_PER_MINUTE", DC.roomCreatesPerUserPerMinute, 1, 1_000_000),
    },
    speech: {
      engine: oneOf(env, "SPEECH_ENGINE", elevenLabsApiKey ? "scribe" : "auto", ["auto", "pocketsphinx", "scribe", "device"]),
      elevenLabsApiKey,
      elevenLabsBaseUrl: url(env, "ELEVENLABS_BASE_URL", "wss://api.elevenlabs.io"),
      language: str(env, "SPEECH_LANGUAGE", "en"),
      // 16 × ≈20 MB (≈100 MB with the full model) of recognisers at most, whatever the number of rooms.
      maxProcesses: int(env, "SPEECH_MAX_PROCESSES", 16, 1, 10_000),
      endSilenceMs: int(env, "SPEECH_END_SILENCE_MS", 160, 60, 2000),
      languageModel: oneOf(env, "SPEECH_LANGUAGE_MODEL", "money", ["money", "debian"]),
    },
    agents: {
      engine: oneOf(env, "AGENT_ENGINE", anthropicApiKey ? "claude" : "offline", ["offline", "claude"]),
      anthropicApiKey,
      anthropicBaseUrl: url(env, "ANTHROPIC_BASE_URL", ""),
      model: modelId(env, "ANTHROPIC_MODEL", DEFAULT_ANTHROPIC_MODEL),
    },
    payments: {
      rail: oneOf(env, "PAYMENT_RAIL", stripeSecretKey ? "stripe" : "ledger", ["ledger", "stripe"]),
      stripeSecretKey,
      stripeWebhookSecret: str(env, "STRIPE_WEBHOOK_SECRET", ""),
      stripeApiBase: url(env, "STRIPE_API_BASE", ""),
      holdWarningMs: int(env, "HOLD_WARNING_MS", 86_400_000, 60_000, 7 * 86_400_000),
      stripePublishableKey: str(env, "STRIPE_PUBLISHABLE_KEY", ""),
      stripeJsUrl: url(env, "STRIPE_JS_URL", "https://js.stripe.com/v3/"),
      stripeReturnUrl: url(env, "STRIPE_RETURN_URL", "http://127.0.0.1:8080/?stripe=return"),
      stripeRefreshUrl: url(env, "STRIPE_REFRESH_URL", "http://127.0.0.1:8080/?stripe=refresh"),
      platformFeeBps: int(env, "PLATFORM_FEE_BPS", 0, 0, 10_000),
      stripePlatformCountry: countryCode(env, "STRIPE_PLATFORM_COUNTRY"),
    },
    monzoApiBase: url(env, "MONZO_API_BASE", "https://api.monzo.com"),
    webRoot: str(env, "WEB_ROOT", ""),
    metrics: bool(env, "METRICS", true),
    healthWatchIntervalMs: int(env, "HEALTH_WATCH_INTERVAL_MS", DEFAULT_HEALTH_WATCH_INTERVAL_MS, 10, 600_000),
    tls: tlsFiles(env),
    cluster: {
      redisUrl: url(env, "REDIS_URL", ""),
      nodeId: str(env, "NODE_ID", `${os.hostname()}-${process.pid}`),
      roomLeaseMs: int(env, "ROOM_LEASE_MS", DEFAULT_ROOM_LEASE_MS, 300, 600_000),
    },
  };
  if (config.connections.httpHeadersTimeoutMs > config.connections.httpRequestTimeoutMs) {
    throw new ConfigError("HTTP_HEADERS_TIMEOUT_MS must not be longer than HTTP_REQUEST_TIMEOUT_MS");
  }
  if (config.speech.engine === "scribe" && !elevenLabsApiKey) {
    throw new ConfigError("SPEECH_ENGINE=scribe needs ELEVENLABS_API_KEY");
  }
  if (config.agents.engine === "claude" && !anthropicApiKey) {
    throw new ConfigError("AGENT_ENGINE=claude needs ANTHROPIC_API_KEY");
  }
  if (config.payments.rail === "stripe" && !stripeSecretKey) {
    throw new ConfigError("PAYMENT_RAIL=stripe needs STRIPE_SECRET_KEY");
  }
  if (config.auth.oidcIssuer && !config.auth.oidcJwksUrl) {
    throw new ConfigError("OIDC_ISSUER needs OIDC_JWKS_URL");
  }
  return config;
}
