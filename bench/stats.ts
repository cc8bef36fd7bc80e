/** Percentiles for the bench: a fixed-bucket latency histogram and plain sorted samples. */

/** Bucket width of LatencyHistogram, microseconds. */
const BUCKET_US = 10;
/** Buckets cover 0 to 2 s; slower samples land in the last bucket (max stays exact). */
const BUCKETS = 200_000;

/**
 * Relay latencies in 10 µs buckets: recording allocates nothing, whatever the frame count.
 * Negative samples (clock steps) count as 0.
 */
export class LatencyHistogram {
  private readonly buckets = new Uint32Array(BUCKETS);
  private maxUs = 0;
  count = 0;

  record(us: number): void {
    const v = us < 0 ? 0 : us;
    const i = Math.min(BUCKETS - 1, Math.floor(v / BUCKET_US));
    this.buckets[i]!++;
    this.count++;
    if (v > this.maxUs) this.maxUs = v;
  }

  /** The latency at or below which `p` percent of samples fall, in milliseconds. */
  percentileMs(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.buckets[i]!;
      if (seen >= rank) return Math.min(this.maxUs, (i + 1) * BUCKET_US) / 1000;
    }
    return this.maxUs / 1000;
  }

  /** p50, p95, p99 and max, in milliseconds rounded to 0.01. */
  summary(): { p50Ms: number; p95Ms: number; p99Ms: number; maxMs: number } {
    return {
      p50Ms: round2(this.percentileMs(50)),
      p95Ms: round2(this.percentileMs(95)),
      p99Ms: round2(this.percentileMs(99)),
      maxMs: round2(this.maxUs / 1000),
    };
  }
}

/** Nearest-rank percentile of `samples` (any unit); 0 when empty. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return 0;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/** Rounds to two decimals. */
export function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/** A figure over `--repeat N` runs: the median, with the lowest and highest seen. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** The median (the mean of the middle two for an even count), min and max of `values`, rounded to 0.01. */
export function spread(values: readonly number[]): Spread {
  if (values.length === 0) return { median: 0, min: 0, max: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
  return { median: round2(median), min: round2(sorted[0]!), max: round2(sorted[sorted.length - 1]!) };
}
