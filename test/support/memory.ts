import v8 from "node:v8";
import { runInNewContext } from "node:vm";

/**
 * Runs V8's garbage collector, so a test can measure what is really retained; works without
 * --expose-gc on the command line. Undefined where V8 refuses (then skip the memory check).
 */
export const gc: (() => void) | undefined = (() => {
  const fromGlobal = (globalThis as { gc?: () => void }).gc;
  if (fromGlobal) return fromGlobal;
  try {
    v8.setFlagsFromString("--expose-gc");
    return runInNewContext("gc") as () => void;
  } catch {
    return undefined;
  }
})();
