import { ResourceExhaustedError } from "../core/errors.js";

/** Keys tracked at most; past it, keys whose budget is whole again are forgotten first. */
const MAX_KEYS = 100_000;

/** One key's budget: tokens left at `atMs`. */
interface Bucket {
  tokens: number;
  atMs: number;
}

/**
 * A token bucket per key ("a:<address>", "u:<user>"): `perMinute` tokens, refilled evenly. Room
 * creation takes one from the caller's address and one from their user, so one anonymous client
 * (a fresh user per join) cannot take every room slot.
 */
export class CreationLimit {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * Takes one token from every key's budget (`perMinute` each), or throws ResourceExhaustedError
   * with `retryAfterMs` and takes none when any is empty.
   */
  take(keys: ReadonlyArray<{ key: string; perMinute: number; what: string }>): void {
    const t = this.now();
    const buckets = keys.map(({ key, perMinute, what }) => {
      const rate = perMinute / 60_000;
      const bucket = this.buckets.get(key);
      const tokens = bucket ? Math.min(perMinute, bucket.tokens + (t - bucket.atMs) * rate) : perMinute;
      if (tokens < 1) {
        const retryAfterMs = Math.ceil((1 - tokens) / rate);
        throw new ResourceExhaustedError(`too many new rooms from ${what}: try again in ${Math.ceil(retryAfterMs / 1000)} s`, { retryAfterMs });
      }
      return { key, tokens };
    });
    if (this.buckets.size > MAX_KEYS) this.prune(t);
    for (const { key, tokens } of buckets) this.buckets.set(key, { tokens: tokens - 1, atMs: t });
  }

  /** Forgets buckets that refilled (a minute is the longest refill); memory stays bounded. */
  private prune(t: number): void {
    for (const [key, bucket] of this.buckets) if (t - bucket.atMs >= 60_000) this.buckets.delete(key);
  }
}
