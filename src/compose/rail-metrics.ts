import type { Logger } from "pino";
import type { RailCallOutcome, StageMetrics } from "../core/metrics.js";
import { startStage } from "../core/tracing.js";
import { PaymentRailError, type PaymentRail, type RailRequest, type RailResult } from "../payments/rail.js";

/**
 * The rail the settlement saga calls, timed: every call's duration and outcome go to `metrics`
 * under the rail's configured name. Wrapping at the composition root keeps the rails and the saga
 * free of metrics code and catches every caller (payments, milestones, recovery, hold watching).
 * Each call is also a span (`payment.<action>`, a child of the deal's execution when there is
 * one), and with `log` every money movement (pay, hold, capture, release) is one info line:
 * contract, item, rail, amount, outcome and idempotency key; never a card or customer id.
 */
export function withRailMetrics(rail: PaymentRail, name: string, metrics: StageMetrics, log?: Logger): PaymentRail {
  const timed =
    (action: string, call: () => Promise<RailResult>, request?: RailRequest): Promise<RailResult> => {
      const started = performance.now();
      const span = startStage(`payment.${action}`, { attributes: { "handshake.rail": name, "handshake.payment.action": action } });
      const record = (outcome: RailCallOutcome, err?: unknown) => {
        const seconds = (performance.now() - started) / 1000;
        metrics.railCall(name, action, outcome, seconds);
        span.set({ "handshake.payment.outcome": outcome });
        span.end(outcome === "error" ? err : undefined);
        if (request && log) {
          log.info(
            {
              contractId: request.contractId,
              lineItemId: request.lineItemId,
              rail: name,
              action,
              amountMinor: request.amountMinor.toString(),
              currency: request.currency,
              outcome,
              idempotencyKey: request.idempotencyKey,
              durationMs: Math.round(seconds * 1000),
            },
            "money movement",
          );
        }
      };
      return span.run(call).then(
        (result) => {
          record(result.status);
          return result;
        },
        (err: unknown) => {
          // A refusal is the rail's answer; anything else left the outcome unknown.
          record(err instanceof PaymentRailError && !err.outcomeUnknown ? "refused" : "error", err);
          throw err;
        },
      );
    };
  return {
    kind: rail.kind,
    pay: (request) => timed("pay", () => rail.pay(request), request),
    hold: (request) => timed("hold", () => rail.hold(request), request),
    capture: (reference, request) => timed("capture", () => rail.capture(reference, request), request),
    release: (reference, request) => timed("release", () => rail.release(reference, request), request),
    status: (reference) => timed("status", () => rail.status(reference)),
    // A look-up that finds nothing is no rail outcome: only a found movement (or an error) is recorded.
    ...(rail.find
      ? {
          find: (request) => {
            const started = performance.now();
            const record = (outcome: RailCallOutcome) => metrics.railCall(name, "find", outcome, (performance.now() - started) / 1000);
            return rail.find!(request).then(
              (found) => {
                if (found) record(found.status);
                return found;
              },
              (err: unknown) => {
                record(err instanceof PaymentRailError && !err.outcomeUnknown ? "refused" : "error");
                throw err;
              },
            );
          },
        }
      : {}),
  };
}
