import type { StageMetrics } from "../core/metrics.js";
import type { Store } from "../store/store.js";

/**
 * The store the rest of the process uses, timed: every Store method's call (a SQLite statement or
 * transaction, a PostgreSQL round trip) goes to `metrics.storeCall` by method name and outcome.
 * Observed at the Store interface, so both stores are timed without code in either; the label
 * set is the interface's method names. Without a `storeCall` hook the store is returned as is.
 */
export function withStoreMetrics(store: Store, metrics: StageMetrics): Store {
  const storeCall = metrics.storeCall?.bind(metrics);
  if (!storeCall) return store;
  // By function, not name: a method replaced on the store later is timed as itself.
  const timed = new WeakMap<object, unknown>();
  return new Proxy(store, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function" || typeof property !== "string") return value;
      let wrapper = timed.get(value);
      if (!wrapper) {
        wrapper = function (this: unknown, ...args: unknown[]) {
          const started = performance.now();
          const record = (outcome: "ok" | "error") => storeCall(property, outcome, (performance.now() - started) / 1000);
          let result: unknown;
          try {
            // Called on the store itself: its private fields do not exist on the proxy.
            result = (value as (...a: unknown[]) => unknown).apply(target, args);
          } catch (err) {
            record("error");
            throw err;
          }
          if (result instanceof Promise) {
            return result.then(
              (answer: unknown) => {
                record("ok");
                return answer;
              },
              (err: unknown) => {
                record("error");
                throw err;
              },
            );
          }
          record("ok");
          return result;
        };
        timed.set(value, wrapper);
      }
      return wrapper;
    },
  });
}
