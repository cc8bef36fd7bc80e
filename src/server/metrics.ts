import { collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { ServedBy } from "./interceptors.js";

/**
 * The Prometheus metrics of one server, served on `GET /metrics` (same port; METRICS=off turns it
 * off). Labels are bounded sets: the served method (only registered methods reach the hooks), the
 * path and the status code; never a room, user or contract id.
 */

/** Seconds. RPCs from a millisecond unary call to a stream held for half an hour. */
const RPC_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];

/** What the server's hooks record; the composition root creates it, the transport fills it. */
export interface ServerMetrics {
  /** Every metric of the process, RPCs, stages and Node's own (`process_*`, `nodejs_*`). */
  readonly registry: Registry;
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
  return {
    registry,
    contentType: registry.contentType,
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
