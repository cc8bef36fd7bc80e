import type { RailCallOutcome, StageMetrics } from "../core/metrics.js";
import { PaymentRailError, type PaymentRail, type RailResult } from "../payments/rail.js";

/**
 * The rail the settlement saga calls, timed: every call's duration and outcome go to `metrics`
 * under the rail's configured name. Wrapping at the composition root keeps the rails and the saga
 * free of metrics code and catches every caller (payments, milestones, recovery, hold watching).
 */
export function withRailMetrics(rail: PaymentRail, name: string, metrics: StageMetrics): PaymentRail {
  const timed =
    (action: string, call: () => Promise<RailResult>): Promise<RailResult> => {
      const started = performance.now();
      const record = (outcome: RailCallOutcome) => metrics.railCall(name, action, outcome, (performance.now() - started) / 1000);
      return call().then(
        (result) => {
          record(result.status);
          return result;
        },
        (err: unknown) => {
          // A refusal is the rail's answer; anything else left the outcome unknown.
          record(err instanceof PaymentRailError && !err.outcomeUnknown ? "refused" : "error");
          throw err;
        },
      );
    };
  return {
    kind: rail.kind,
    pay: (request) => timed("pay", () => rail.pay(request)),
    hold: (request) => timed("hold", () => rail.hold(request)),
    capture: (reference, request) => timed("capture", () => rail.capture(reference, request)),
    release: (reference, request) => timed("release", () => rail.release(reference, request)),
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
