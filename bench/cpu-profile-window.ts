/**
 * Preloaded into the server by `npm run bench -- --cpu-prof` (node --import): a V8 CPU profile
 * of the measurement window only, not of start-up, joins or the pipeline phase. The first
 * SIGUSR2 starts the profiler, the second writes `<BENCH_CPU_PROF_DIR>/<BENCH_CPU_PROF_NAME>-<time>.cpuprofile`.
 * Read it with bench/profile-summary.ts or Chrome DevTools.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import path from "node:path";

const dir = process.env.BENCH_CPU_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  let running = false;
  process.on("SIGUSR2", () => {
    if (!running) {
      running = true;
      session.post("Profiler.enable", () => session.post("Profiler.start"));
      return;
    }
    running = false;
    session.post("Profiler.stop", (err, result) => {
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
