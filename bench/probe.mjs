/**
 * Preloaded (node --import) into the server and the floor relay by `npm run bench`, so both are
 * read the same way. Plain JavaScript: the server runs bundled, without a TypeScript loader.
 * - SIGWINCH runs a full garbage collection: memory read right after counts what is kept, not
 *   garbage awaiting collection (start-up and joins leave megabytes of it).
 * - With BENCH_CPU_PROF_DIR set (`--cpu-prof`): the first SIGUSR2 starts the V8 profiler, the
 *   second writes `<BENCH_CPU_PROF_DIR>/<BENCH_CPU_PROF_NAME>-<time>.cpuprofile`, a profile of the
 *   measurement window only. Read it with bench/profile-summary.ts or Chrome DevTools.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import path from "node:path";

const session = new Session();
session.connect();

process.on("SIGWINCH", () => session.post("HeapProfiler.collectGarbage"));

const dir = process.env.BENCH_CPU_PROF_DIR;
if (dir) {
  let running = false;
  process.on("SIGUSR2", () => {
    if (!running) {
      running = true;
      session.post("Profiler.enable", () => session.post("Profiler.start"));
      return;
    }
    running = false;
    session.post("Profiler.stop", (/** @type {Error | null} */ err, /** @type {{ profile: object }} */ result) => {
      if (err) {
        process.stderr.write(`cpu profile failed: ${err.message}\n`);
        return;
      }
      const file = path.join(dir, `${process.env.BENCH_CPU_PROF_NAME ?? "process"}-${new Date().toISOString().replace(/[:.]/g, "-")}.cpuprofile`);
      writeFileSync(file, JSON.stringify(result.profile));
      process.stderr.write(`cpu profile written: ${file}\n`);
    });
  });
}
