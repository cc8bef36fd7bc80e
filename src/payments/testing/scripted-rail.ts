import type { PaymentRail, PaymentRailError, RailRequest, RailResult } from "../rail.js";

type Method = "pay" | "hold" | "capture" | "release" | "status";

/** One call the scripted rail received. */
export interface RailCall {
  method: Method;
  reference?: string;
  request?: RailRequest;
}

/**
 * A test rail wrapping a real one (usually the ledger): records every call, can refuse the next
 * call of a method with a scripted `PaymentRailError`, can give holds an expiry, and runs a hook
 * before each call (to look at the store at that moment).
 */
export interface ScriptedRail extends PaymentRail {
  calls: RailCall[];
  /** The next call of `method` throws `error` without reaching the inner rail. */
  failNext(method: Method, error: PaymentRailError): void;
  /** Holds placed from now on report `expiresAtMs = now() + ms` (the ledger's holds never lapse). */
  holdsExpireAfter(ms: number | undefined): void;
  /** Runs before every call reaches the inner rail. */
  beforeCall: ((call: RailCall) => Promise<void>) | undefined;
}

/** Wraps `inner`; `now` is the clock used for scripted expiry times. */
export function createScriptedRail(inner: PaymentRail, now: () => number = () => Date.now()): ScriptedRail {
  const failures = new Map<Method, PaymentRailError[]>();
  let expireAfterMs: number | undefined;

  async function call(c: RailCall, fn: () => Promise<RailResult>): Promise<RailResult> {
    rail.calls.push(c);
    await rail.beforeCall?.(c);
    const scripted = failures.get(c.method)?.shift();
    if (scripted) throw scripted;
    return fn();
  }

  const rail: ScriptedRail = {
    kind: inner.kind,
    calls: [],
    beforeCall: undefined,
    failNext(method, error) {
      failures.set(method, [...(failures.get(method) ?? []), error]);
    },
    holdsExpireAfter(ms) {
      expireAfterMs = ms;
    },
    pay: (request) => call({ method: "pay", request }, () => inner.pay(request)),
    hold: (request) =>
      call({ method: "hold", request }, async () => {
        const result = await inner.hold(request);
        return expireAfterMs === undefined ? result : { ...result, expiresAtMs: now() + expireAfterMs };
      }),
    capture: (reference, request) => call({ method: "capture", reference, request }, () => inner.capture(reference, request)),
    release: (reference, request) => call({ method: "release", reference, request }, () => inner.release(reference, request)),
    status: (reference) => call({ method: "status", reference }, () => inner.status(reference)),
  };
  return rail;
}
