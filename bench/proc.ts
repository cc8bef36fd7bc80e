/**
 * CPU and memory of another process, read from /proc (Linux): CPU time of all its threads
 * (JavaScript, GC helpers, libuv pool) and its resident set size.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

let clockTicks: number | undefined;

/** Kernel clock ticks per second (USER_HZ), for /proc/<pid>/stat times. */
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** CPU seconds (user + system) the process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / ticksPerSecond();
}

/** CPU seconds the whole machine has been busy (all cores: user, nice, system, irq, softirq, steal). */
export function machineBusySeconds(): number {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / ticksPerSecond();
}

/** Resident set size in megabytes. */
export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return match?.[1] ? Number(match[1]) / 1024 : 0;
}

/** Samples a process between `start` and `stop`: CPU as % of one core, RSS mean and peak. */
export class ProcessSampler {
  private startCpu = 0;
  private startMachine = 0;
  private startWall = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly rss: number[] = [];

  constructor(readonly pid: number) {}

  start(): void {
    this.startCpu = cpuSeconds(this.pid);
    this.startMachine = machineBusySeconds();
    this.startWall = performance.now();
    this.rss.length = 0;
    this.timer = setInterval(() => {
      try {
        this.rss.push(rssMb(this.pid));
      } catch {
        // The process ended; stop() reports what was seen.
      }
    }, 250);
  }

  /**
   * CPU % of one core over the window, RSS (MB) mean and peak, and the whole machine's busy CPU
   * (% of one core; the service, the generator and anything else running).
   */
  stop(): { cpuPct: number; rssMeanMb: number; rssPeakMb: number; machineCpuPct: number } {
    if (this.timer) clearInterval(this.timer);
    const wallS = (performance.now() - this.startWall) / 1000;
    const machine = machineBusySeconds() - this.startMachine;
    let cpu = 0;
    try {
      cpu = cpuSeconds(this.pid) - this.startCpu;
      this.rss.push(rssMb(this.pid));
    } catch {
      // Gone: CPU stays 0.
    }
    const mean = this.rss.length ? this.rss.reduce((a, b) => a + b, 0) / this.rss.length : 0;
    return {
      cpuPct: wallS > 0 ? (cpu / wallS) * 100 : 0,
      rssMeanMb: mean,
      rssPeakMb: Math.max(0, ...this.rss),
      machineCpuPct: wallS > 0 ? (machine / wallS) * 100 : 0,
    };
  }
}
