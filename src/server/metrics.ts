import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { audioFrameCounts, type StageMetrics } from "../core/metrics.js";
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
/** Seconds. An offline negotiation agrees in milliseconds; five Claude rounds near their timeouts take minutes. */
const NEGOTIATION_BUCKETS_S = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Rounds: a negotiation has at most five. */
const ROUND_BUCKETS = [1, 2, 3, 4, 5];
/** Seconds. A streaming engine finalises within a second of the utterance's end; a batch decoder in a few. */
const SPEECH_BUCKETS_S = [0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10];
/** Seconds. From a cached SQLite read to a PostgreSQL transaction over a slow network. */
const STORE_BUCKETS_S = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
/** The calls whose RESOURCE_EXHAUSTED ends a panel stream that fell behind (it resumes from its last seq). */
const PANEL_METHOD = "handshake.v1.RoomService/PanelStream";
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
  /** Events queued for the PanelStream reader furthest behind (RoomManager.panelQueueDepth). */
  panelQueueDepth?(): number;
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
  const negotiationRounds = new Histogram({
    name: "handshake_negotiation_rounds",
    help: "Rounds of each ended negotiation, by outcome (agreed, rejected, expired).",
    labelNames: ["outcome"] as const,
    buckets: ROUND_BUCKETS,
    registers: [registry],
  });
  const negotiationDuration = new Histogram({
    name: "handshake_negotiation_duration_seconds",
    help: "From a negotiation's trigger to its end, by outcome (agreed, rejected, expired).",
    labelNames: ["outcome"] as const,
    buckets: NEGOTIATION_BUCKETS_S,
    registers: [registry],
  });
  const speechFinal = new Histogram({
    name: "handshake_speech_final_latency_seconds",
    help: "From the end of an utterance to its final transcript, by server speech engine.",
    labelNames: ["engine"] as const,
    buckets: SPEECH_BUCKETS_S,
    registers: [registry],
  });
  const speechErrors = new Counter({
    name: "handshake_speech_errors_total",
    help: "Failures server speech engines reported (ElevenLabs Scribe, PocketSphinx), by engine and code (rate_limited, auth_failed, server_error, …).",
    labelNames: ["engine", "code"] as const,
    registers: [registry],
  });
  const storeCalls = new Histogram({
    name: "handshake_store_call_duration_seconds",
    help: "Store calls (SQLite or PostgreSQL queries and transactions) by Store method and outcome (ok, error).",
    labelNames: ["method", "outcome"] as const,
    buckets: STORE_BUCKETS_S,
    registers: [registry],
  });
  new Counter({
    name: "handshake_audio_frames_relayed_total",
    help: "Audio frames handed to a listener's peer-audio stream (both paths, this process).",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(audioFrameCounts.relayed);
    },
  });
  new Counter({
    name: "handshake_audio_frames_dropped_total",
    help: "Audio frames a listener's stream refused because it fell behind (the stream is then ended with RESOURCE_EXHAUSTED; this process).",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(audioFrameCounts.dropped);
    },
  });
  const externalCalls = new Histogram({
    name: "handshake_external_call_duration_seconds",
    help: "HTTP requests to outside services (anthropic, monzo) by service and outcome (ok, http_4xx, http_429, http_5xx, network: no answer); SDK retries are separate requests.",
    labelNames: ["service", "outcome"] as const,
    buckets: RAIL_BUCKETS_S,
    registers: [registry],
  });
  new Gauge({
    name: "handshake_panel_stream_queue_depth_max",
    help: "Events queued for the PanelStream reader furthest behind on this node; at PANEL_QUEUE_SIZE it is reset.",
    registers: [registry],
    collect() {
      this.set(sources.panelQueueDepth?.() ?? 0);
    },
  });
  const panelResets = new Counter({
    name: "handshake_panel_stream_resets_total",
    help: "PanelStreams ended with RESOURCE_EXHAUSTED, by path: almost always a reader that fell too far behind (it resumes from its last seq), else a stream limit.",
    labelNames: ["path"] as const,
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
      negotiationEnded(outcome, rounds, seconds) {
        negotiationRounds.observe({ outcome }, rounds);
        negotiationDuration.observe({ outcome }, seconds);
      },
      speechFinal: (engine, seconds) => speechFinal.observe({ engine }, seconds),
      // Codes are the engines' own fixed words; anything else is folded so the label set stays bounded.
      speechError: (engine, code) => speechErrors.inc({ engine, code: /^[a-z_]{1,40}$/.test(code) ? code : "other" }),
      storeCall: (method, outcome, seconds) => storeCalls.observe({ method, outcome }, seconds),
      externalCall: (service, outcome, seconds) => externalCalls.observe({ service, outcome }, seconds),
    },
    callEnded(path, method, code, durationMs) {
      duration.observe({ method, path, code }, durationMs / 1000);
      if (code === "ResourceExhausted" && method === PANEL_METHOD) panelResets.inc({ path });
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
