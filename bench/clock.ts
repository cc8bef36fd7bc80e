/** Microseconds on this process's clock (Unix epoch based, sub-millisecond), for frame latencies. */
export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}
