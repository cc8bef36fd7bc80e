/**
 * The one retry rule for every remote call (speech vendors, payment rails, model APIs): which
 * failures are worth another attempt, and how long to wait before it.
 */

/** A failure that says whether retrying may help; domain errors of remote engines carry it. */
export interface Retryable {
  readonly retryable: boolean;
}

/** HTTP statuses worth retrying: 408, 429 and 5xx; any other 4xx is the request's fault. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** True when `err` carries `retryable: true`; anything else (unknown errors included) is not retried. */
export function isRetryable(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as Partial<Retryable>).retryable === true;
}

/** Exponential backoff settings. */
export interface BackoffOptions {
  /** Delay before the first retry. Default 500 ms. */
  initialDelayMs?: number;
  /** Upper bound of any delay. Default 15 s. */
  maxDelayMs?: number;
  /** Growth per attempt. Default 2. */
  multiplier?: number;
  /** Random spread as a share of the delay, so many clients don't retry in step. Default 0.2. */
  jitter?: number;
}

/** Delay before retry number `attempt` (1 for the first retry). */
export function backoffDelayMs(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = options.initialDelayMs ?? 500;
  const max = options.maxDelayMs ?? 15_000;
  const multiplier = options.multiplier ?? 2;
  const jitter = options.jitter ?? 0.2;
  const base = Math.min(max, initial * multiplier ** Math.max(0, attempt - 1));
  return Math.round(Math.min(max, base * (1 - jitter + 2 * jitter * random())));
}
