/**
 * Serialises work per contract inside this process, so two confirmations arriving together (or a
 * resume racing an execute) read and write one state at a time. The default instance is shared
 * by the executor and the milestone service.
 */
export interface KeyedLock {
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
}

/** Creates a lock keyed by string; each key runs its tasks one after another. */
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

/** The lock the executor and the milestone service use unless given another. */
export const sharedContractLock: KeyedLock = createKeyedLock();
