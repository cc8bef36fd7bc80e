/**
 * A push/pull queue between a producer that must never block (the event log's fan-out, the audio
 * relay) and one async reader. The producer bounds it: `size` says how far the reader is behind.
 */
export interface AsyncQueue<T> {
  /** Queues `item` and wakes the reader; ignored once the queue has ended or failed. */
  push(item: T): void;
  /** Ends the queue quietly: the reader gets what is queued, then finishes. Safe to call twice. */
  end(): void;
  /** Ends the queue with `error`: what is queued is dropped and the reader throws it. The first error wins. */
  fail(error: Error): void;
  /** Items queued and not yet taken by the reader. */
  readonly size: number;
  /** True once `end` or `fail` was called. */
  readonly closed: boolean;
  /**
   * Yields queued items as they come until the queue ends (returns), fails (throws) or `signal`
   * aborts (ends it quietly: what is already queued is still yielded). One reader at a time.
   */
  drain(signal?: AbortSignal): AsyncGenerator<T>;
}

/** Makes an empty queue, or one holding `initial` (e.g. a resumed reader's backlog). */
export function createAsyncQueue<T>(initial: T[] = []): AsyncQueue<T> {
  const items = initial;
  let wake: (() => void) | undefined;
  let failure: Error | undefined;
  let ended = false;

  const queue: AsyncQueue<T> = {
    push(item) {
      if (failure || ended) return;
      items.push(item);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
    fail(error) {
      if (failure) return;
      failure = error;
      items.length = 0;
      wake?.();
    },
    get size() {
      return items.length;
    },
    get closed() {
      return ended || failure !== undefined;
    },
    async *drain(signal) {
      const onAbort = () => queue.end();
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        for (;;) {
          if (items.length > 0) {
            yield items.shift() as T;
            continue;
          }
          if (failure) throw failure;
          if (ended || signal?.aborted) return;
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      } finally {
        signal?.removeEventListener("abort", onAbort);
      }
    },
  };
  return queue;
}
