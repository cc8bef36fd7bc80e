import type { Logger } from "pino";
import type { AudioFrame, DeviceTranscript } from "../../gen/handshake/v1/audio_pb.js";
import type { TokenService } from "../auth/tokens.js";
import type { ContractDesk } from "../deal/contracts.js";
import type { MilestoneService } from "../settlement/milestones.js";
import type { PaymentsDesk } from "../settlement/payments-desk.js";
import type { RoomManager } from "../room/room-manager.js";
import type { RecognisedSpeech } from "../room/room.js";
import type { Store } from "../store/store.js";
import type { ConnectionLimits } from "./connection-guard.js";
import type { ReadinessProbe } from "./health.js";
import type { ServerMetrics } from "./metrics.js";

/**
 * Checks of audio input at the boundary (src/audio, src/speech). Each throws a named input error.
 * A format needs none here: `Room.setAudioFormat` checks it as it builds the speech converter.
 */
export interface AudioInput {
  checkFrame(frame: AudioFrame): void;
  /**
   * `checkFrame` for a frame parsed in place on the fast path, whose number the parser already
   * bounded below 2^53: only the PCM payload's length is left to check.
   */
  checkPcmBytes(bytes: number): void;
  deviceTranscript(transcript: DeviceTranscript): RecognisedSpeech;
}

/** The milestone actions the parties call (start-up recovery is not theirs). */
export type MilestoneActions = Omit<MilestoneService, "resumeInterrupted">;

/** A raw HTTP endpoint outside the RPC routes (the Stripe webhook). */
export type RawHttpHandler = (body: Buffer, headers: Record<string, string | string[] | undefined>) => Promise<{ status: number; body: string }>;

/** The settings the transport reads; the composition root passes the whole configuration. */
export interface ServerConfig {
  corsOrigins: readonly string[];
  rooms: { slowReaderGraceMs: number };
  limits: {
    maxMessageBytes: number;
    maxStreamsPerUser: number;
    sendAudioPerSecond: number;
    maxAmountMinor: bigint;
    /** An HTTP/2 connection with no call open this long is closed (GOAWAY); default 120 s. */
    idleConnectionMs?: number;
  };
  /** The front door's limits (connection-guard.ts); its embedded defaults when absent. */
  connections?: ConnectionLimits;
  /** How often an open Health/Watch asks readiness again; health.ts's default when absent. */
  healthWatchIntervalMs?: number;
  /** Serve TLS (ALPN h2 and http/1.1) with these PEM files; clear text (h2c and HTTP/1.1) when absent. */
  tls?: { certFile: string; keyFile: string } | undefined;
}

/** Everything the transport layer calls into; built by src/compose/app.ts. */
export interface ServerDeps {
  config: ServerConfig;
  log: Logger;
  store: Store;
  tokens: TokenService;
  rooms: RoomManager;
  desk: ContractDesk;
  milestones: MilestoneActions;
  audio: AudioInput;
  /** POST endpoints by path, e.g. "/webhooks/stripe". */
  httpEndpoints: Map<string, RawHttpHandler>;
  /** Folder of the browser app's static files, served at "/"; undefined to serve none. */
  webRoot: string | undefined;
  /** PaymentsService: Stripe onboarding, saved cards, payment retries; undefined: the service answers FAILED_PRECONDITION. */
  payments?: PaymentsDesk;
  /** What readiness depends on besides the store (Redis in cluster mode). */
  readinessProbes?: readonly ReadinessProbe[];
  /** RPC and stage metrics, served on `GET /metrics`; undefined when METRICS=off. */
  metrics?: ServerMetrics;
}
