import { collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { StageMetrics } from "../core/metrics.js";
import type { ServedBy } from "./interceptors.js";

/**
 * The Prometheus metrics of one server, served on `GET /metrics` (same port; METRICS=off turns it
 * off). Labels are bounded sets: the served method (only registered methods reach the hooks), the
 * path and the status code; never a room, user or contract id.
 */

/** Seconds. RPCs from a millisecond unary call to a stream held for half an hour. */
const RPC_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];
/** Seconds. From an offline agent's instant proposal to a Claude round near its timeout. */
const PROPOSAL_BUCKETS_S = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120];
/** Seconds. People read and sign in seconds to days. */
const SIGNING_BUCKETS_S = [1, 5, 15, 30, 60, 120, 300, 900, 3600, 4 * 3600, 86_400, 7 * 86_400];
/** Seconds. A SQLite commit in WAL mode takes tens of microseconds; a slow disk, milliseconds. */
const WRITE_BUCKETS_S = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];
/** Seconds. The ledger answers in a millisecond, Stripe in a few hundred. */
const RAIL_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** What the server's hooks record; the composition root creates it, the transport fills it. */
export interface ServerMetrics {
  /** Every metric of the process, RPCs, stages and Node's own (`process_*`, `nodejs_*`). */
  readonly registry: Registry;
  /** The domain's stage timings (trigger → proposal, drafted → signed, rail calls), into the same registry. */
  readonly stages: StageMetrics;
  /** One finished call: counted and timed by method, path and code. */
  callEnded(path: ServedBy, method: string, code: string, durationMs: number): void;
  /** A streaming call opened; the returned close (safe twice) is called when it ends. */
  streamOpened(path: ServedBy, method: string): () => void;
  /** The text exposition of every metric (`Content-Type` is `contentType`). */
  render(): Promise<string>;
  readonly contentType: string;
}

/** What the metrics read from the rest of the process when scraped. */
export interface MetricsSources {
  /** Live rooms now (RoomManager.size). */
  roomsLive(): number;
}

/** Creates the metrics of one server on a registry of its own (two servers in one process do not collide). */
export function createServerMetrics(sources: MetricsSources): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const duration = new Histogram({
    name: "handshake_rpc_duration_seconds",
    help: "RPCs served, by method (Service/Method), path (connect: connect-node; grpc-h2: the native gRPC fast path) and status code; _count is the number of calls.",
    labelNames: ["method", "path", "code"] as const,
    buckets: RPC_BUCKETS_S,
    registers: [registry],
  });
  const streams = new Gauge({
    name: "handshake_rpc_streams_open",
    help: "Streaming calls open now (PanelStream, AudioStream, peer audio, Health/Watch, reflection), by method and path.",
    labelNames: ["method", "path"] as const,
    registers: [registry],
  });
  new Gauge({
    name: "handshake_rooms_live",
    help: "Rooms live on this node.",
    registers: [registry],
    collect() {
      this.set(sources.roomsLive());
    },
  });
  const triggerToProposal = new Histogram({
    name: "handshake_trigger_to_proposal_seconds",
    help: "From a trigger to the first proposal of the negotiation it started.",
    buckets: PROPOSAL_BUCKETS_S,
    registers: [registry],
  });
  const draftedToSigned = new Histogram({
    name: "handshake_contract_drafted_to_signed_seconds",
    help: "From a contract's draft to its last signature.",
    buckets: SIGNING_BUCKETS_S,
    registers: [registry],
  });
  const railCalls = new Histogram({
    name: "handshake_payment_rail_call_duration_seconds",
    help: "Payment rail calls by rail (ledger, stripe), action (pay, hold, capture, release, status) and outcome (the rail's status, refused, or error: no answer).",
    labelNames: ["rail", "action", "outcome"] as const,
    buckets: RAIL_BUCKETS_S,
    registers: [registry],
  });
  const eventWrites = new Histogram({
    name: "handshake_event_log_write_seconds",
    help: "Committing one room event to the store, which every reader of the room waits for.",
    buckets: WRITE_BUCKETS_S,
    registers: [registry],
  });
  return {
    registry,
    contentType: registry.contentType,
    stages: {
      triggerToProposal: (seconds) => triggerToProposal.observe(seconds),
      draftedToSigned: (seconds) => draftedToSigned.observe(seconds),
      railCall: (rail, action, outcome, seconds) => railCalls.observe({ rail, action, outcome }, seconds),
      eventLogWrite: (seconds) => eventWrites.observe(seconds),
    },
    callEnded(path, method, code, durationMs) {
      duration.observe({ method, path, code }, durationMs / 1000);
    },
    streamOpened(path, method) {
      const labels = { method, path };
      streams.inc(labels);
      let open = true;
      return () => {
        if (!open) return;
        open = false;
        streams.dec(labels);
      };
    },
    render: () => registry.metrics(),
  };
}
