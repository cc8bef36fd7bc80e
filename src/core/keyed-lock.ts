/**
 * Runs work one at a time per key: a contract's payments, confirmations and hold checks read and
 * write one state in turn. In one process it is a queue per key; a store shared by several nodes
 * gives one that also holds across them (`Store.contractLock`).
 */
export interface KeyedLock {
  /** Runs `fn` once every earlier task of `key` has finished (whether it succeeded or threw). */
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
}

/** Creates an in-process lock keyed by string; each key runs its tasks one after another. */
export function createKeyedLock(): KeyedLock {
  const tails = new Map<string, Promise<unknown>>();
  return {
    run<T>(key: string, fn: () => Promise<T>): Promise<T> {
      const previous = tails.get(key) ?? Promise.resolve();
      const result = previous.then(fn, fn);
      const tail = result.then(
        () => undefined,
        () => undefined,
      );
      tails.set(key, tail);
      void tail.then(() => {
        if (tails.get(key) === tail) tails.delete(key);
      });
      return result;
    },
  };
}
