import type { Store } from "./store.js";

/**
 * The writes of a deal's money path, in the store: signatures, contract status, payment and hold
 * intents and results, milestones, settlement intents and outcomes, and the embedded ledger's
 * postings. Room events and profiles are not counted, so the Nth write of a deal is the same
 * write on every run.
 */
export const MONEY_PATH_WRITES: readonly (keyof Store)[] = [
  "addSignature",
  "setContractStatus",
  "recordPaymentIntent",
  "recordPaymentResult",
  "recordHoldIntent",
  "recordHoldResult",
  "saveMilestone",
  "recordSettlementIntent",
  "recordSettlementOutcome",
  "postLedgerTransaction",
];

/**
 * Crash-test hook. With `HANDSHAKE_KILL_AT_WRITE=N` set, the process SIGKILLs itself right after
 * its Nth money-path write (see MONEY_PATH_WRITES) has committed, first printing
 * `kill-point <N> <method>` on stderr; `HANDSHAKE_KILL_WRITES=a,b` counts only those methods.
 * Without the variable the store is returned untouched: the hook is inert in production.
 */
export function withKillPoint(store: Store, env: NodeJS.ProcessEnv = process.env): Store {
  const raw = env.HANDSHAKE_KILL_AT_WRITE;
  if (raw === undefined || raw === "") return store;
  const killAt = Number(raw);
  if (!Number.isInteger(killAt) || killAt < 1) throw new Error(`HANDSHAKE_KILL_AT_WRITE must be a positive integer, got "${raw}"`);
  const only = env.HANDSHAKE_KILL_WRITES?.split(",").map((s) => s.trim()).filter(Boolean);
  const counted = new Set<string>(only && only.length > 0 ? only : MONEY_PATH_WRITES);
  let writes = 0;
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof property !== "string" || !counted.has(property) || typeof value !== "function") return value;
      return async (...args: unknown[]) => {
        const result: unknown = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        writes += 1;
        if (writes === killAt) {
          // Synchronous on a pipe or file, so the line is out before the signal lands.
          process.stderr.write(`kill-point ${writes} ${property}\n`);
          process.kill(process.pid, "SIGKILL");
        }
        return result;
      };
    },
  });
}
