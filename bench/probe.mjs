/**
 * Preloaded (node --import) into the server and the floor relay by `npm run bench`, so both are
 * read the same way. Plain JavaScript: the server runs bundled, without a TypeScript loader.
 * - SIGWINCH runs a full garbage collection: memory read right after counts what is kept, not
 *   garbage awaiting collection (start-up and joins leave megabytes of it).
 * - With BENCH_CPU_PROF_DIR set (`--cpu-prof`): the first SIGUSR2 starts the V8 profiler, the
 *   second writes `<BENCH_CPU_PROF_DIR>/<BENCH_CPU_PROF_NAME>-<time>.cpuprofile`, a profile of the
 *   measurement window only. Read it with bench/profile-summary.ts or Chrome DevTools.
 * - With BENCH_HEAP_SNAPSHOT_DIR set (`--heap-snapshot`): each SIGTTIN collects garbage and writes
 *   `<dir>/<BENCH_CPU_PROF_NAME>-<n>.heapsnapshot`; bench/heap-diff.ts tells what was added between two.
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

const heapDir = process.env.BENCH_HEAP_SNAPSHOT_DIR;
if (heapDir) {
  let taken = 0;
  process.on("SIGTTIN", () => {
    const file = path.join(heapDir, `${process.env.BENCH_CPU_PROF_NAME ?? "process"}-${++taken}.heapsnapshot`);
    /** @type {string[]} */
    const chunks = [];
    const onChunk = (/** @type {{ params: { chunk: string } }} */ message) => chunks.push(message.params.chunk);
    session.on("HeapProfiler.addHeapSnapshotChunk", onChunk);
    session.post("HeapProfiler.collectGarbage", () =>
      session.post("HeapProfiler.takeHeapSnapshot", { reportProgress: false }, (/** @type {Error | null} */ err) => {
        session.off("HeapProfiler.addHeapSnapshotChunk", onChunk);
        if (err) process.stderr.write(`heap snapshot failed: ${err.message}\n`);
        else {
          writeFileSync(file, chunks.join(""));
          process.stderr.write(`heap snapshot written: ${file}\n`);
        }
      }),
    );
  });
}
