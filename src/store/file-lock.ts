import { closeSync, constants, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";

/** Another live process holds the lock: two servers on one SQLite file would corrupt each other's view. */
export class DataDirLockedError extends Error {
  override readonly name = "DataDirLockedError";
  constructor(
    readonly lockPath: string,
    readonly ownerPid: number,
  ) {
    super(
      `the data folder ${dirname(lockPath)} is in use by process ${ownerPid} (lock file ${lockPath}); ` +
        "stop that server or give this one another DATA_DIR (several nodes share a PostgreSQL DATABASE_URL instead)",
    );
  }
}

/** A held lock; `release` deletes the lock file, safe to call twice. */
export interface FileLock {
  readonly path: string;
  release(): void;
}

/**
 * Takes the lock file at `lockPath` for this process's life: created with O_EXCL and holding
 * `<pid> <start time>`. A file left by a process that is gone (SIGKILL, a crash; or a pid that was
 * reused since, told apart by the start time in /proc) is stale and taken over. Node has no
 * flock(2) without a native addon; O_EXCL is atomic on local filesystems.
 */
export function acquireFileLock(lockPath: string): FileLock {
  const me = ownerLine(process.pid);
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(lockPath, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = readOwner(lockPath);
      if (owner && isAlive(owner)) throw new DataDirLockedError(lockPath, owner.pid);
      // Stale (or half-written by a process that died mid-write): remove and try again.
      try {
        unlinkSync(lockPath);
      } catch (unlinkErr) {
        if ((unlinkErr as NodeJS.ErrnoException).code !== "ENOENT") throw unlinkErr;
      }
      continue;
    }
    try {
      writeSync(fd, me);
    } finally {
      closeSync(fd);
    }
    let released = false;
    return {
      path: lockPath,
      release() {
        if (released) return;
        released = true;
        // Only our own file: a lock taken over after we were wrongly judged stale is not ours to delete.
        if (readFileSafe(lockPath) === me) unlinkSync(lockPath);
      },
    };
  }
  throw new Error(`could not take the lock file ${lockPath}: it keeps coming back`);
}

interface Owner {
  pid: number;
  startTime: string | undefined;
}

function ownerLine(pid: number): string {
  return `${pid} ${startTimeOf(pid) ?? "-"}\n`;
}

function readOwner(lockPath: string): Owner | undefined {
  const text = readFileSafe(lockPath);
  const match = text === undefined ? null : /^(\d+) (\S+)\n$/.exec(text);
  if (!match) return undefined;
  return { pid: Number(match[1]), startTime: match[2] === "-" ? undefined : match[2] };
}

function readFileSafe(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** Whether the process that wrote the lock still runs (the same process, not a reused pid). */
function isAlive(owner: Owner): boolean {
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const now = startTimeOf(owner.pid);
  return owner.startTime === undefined || now === undefined || now === owner.startTime;
}

/** The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), where /proc exists. */
function startTimeOf(pid: number): string | undefined {
  const stat = readFileSafe(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // The command name (field 2) is in parentheses and may hold spaces; count from after it.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return fields[19];
}
