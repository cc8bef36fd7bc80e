/**
 * How the domain reports its stages' timings without knowing Prometheus: rooms, the contract desk
 * and the payment rails call a `StageMetrics`; the composition root passes the one the server's
 * /metrics serves (src/server/metrics.ts), everything else gets `noopStageMetrics`. Labels are
 * fixed words, never an id.
 */

/** What a payment rail call came to: the rail's answer, a refusal it gave, or no answer (outcome unknown). */
export type RailCallOutcome = "succeeded" | "held" | "captured" | "released" | "failed" | "requires_action" | "refused" | "error";

/** The stage timings the domain records; every duration in seconds. */
export interface StageMetrics {
  /** A negotiation's first proposal, `seconds` after the trigger that started it. */
  triggerToProposal(seconds: number): void;
  /** A contract's last signature, `seconds` after it was drafted. */
  draftedToSigned(seconds: number): void;
  /** One call of a payment rail (`rail` ledger | stripe; `action` pay | hold | capture | release | status). */
  railCall(rail: string, action: string, outcome: RailCallOutcome, seconds: number): void;
  /** One room event committed to the store before any reader sees it (the panel waits for it). */
  eventLogWrite(seconds: number): void;
  /** A negotiation ended (`outcome` agreed | rejected | expired | …) after `rounds` rounds and `seconds`. */
  negotiationEnded?(outcome: string, rounds: number, seconds: number): void;
  /** A server speech engine's final transcript, `seconds` after the end of the utterance it covers. */
  speechFinal?(engine: string, seconds: number): void;
  /** A server speech engine reported a failure (`code` one of the engines' fixed codes: rate_limited, auth_failed, …). */
  speechError?(engine: string, code: string): void;
  /** One store call (`method` is the Store interface's method name), `seconds` long. */
  storeCall?(method: string, outcome: "ok" | "error", seconds: number): void;
  /** One HTTP request to an outside service (`service` anthropic | monzo | …), by outcome (`ok`, `http_4xx`, `http_429`, `http_5xx`, `network`). */
  externalCall?(service: string, outcome: ExternalCallOutcome, seconds: number): void;
}

/** How an outside service's HTTP request ended: answered well, refused (by class), or no answer. */
export type ExternalCallOutcome = "ok" | "http_4xx" | "http_429" | "http_5xx" | "network";

/**
 * Audio frames counted on the hot path as plain integer increments (no label look-up, no call):
 * `relayed` once per frame handed to a listener's stream, `dropped` per frame a listener's stream
 * refused because it fell behind (the stream is then ended). Read by the metrics at each scrape; one
 * count for the process, like Node's own metrics.
 */
export const audioFrameCounts = { relayed: 0, dropped: 0 };

/** Records nothing: the default where no metrics are served (tests, METRICS=off). */
export const noopStageMetrics: StageMetrics = {
  triggerToProposal() {},
  draftedToSigned() {},
  railCall() {},
  eventLogWrite() {},
};
