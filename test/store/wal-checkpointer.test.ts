import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import Database from "better-sqlite3";
import { expect, it } from "vitest";
import { PanelEventSchema } from "../../gen/handshake/v1/events_pb.js";
import { createSqliteStore } from "../../src/store/sqlite-store.js";
import { tempDirPerTest } from "../support/temp-dir.js";

const dir = tempDirPerTest();

const walBytes = (path: string) => (existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0);

it("keeps the WAL bounded by checkpointing it from its worker while the loop commits, and loses nothing", async () => {
  const path = join(dir(), "handshake.db");
  const checkpointIntervalMs = 20;
  const store = await createSqliteStore({ path, checkpointIntervalMs });
  const text = "x".repeat(2000);
  const commits = 3000;
  let largestWal = 0;
  for (let seq = 1; seq <= commits; seq++) {
    const event = create(PanelEventSchema, { seq: BigInt(seq), atMs: 1n, roomId: "r1", event: { case: "transcript", value: { text, isFinal: true } } });
    await store.appendRoomEvents("r1", [event], commits);
    if (seq % 20 === 0) {
      largestWal = Math.max(largestWal, walBytes(path));
      // A serving loop is never all commits: in the pauses the worker's checkpoint catches up. Each
      // pause outlasts the worker's interval, so a loaded machine (other test files on both
      // cores) still gives it a turn in most pauses.
      await new Promise((resolve) => setTimeout(resolve, checkpointIntervalMs + 5));
    }
  }
  // Every commit appends at least one 4 KiB page: unchecked, the WAL would pass 12 MB; the
  // commits' own fallback checkpoint would let it reach 16 MiB.
  expect(largestWal).toBeGreaterThan(0);
  expect(largestWal).toBeLessThan(4 * 1024 * 1024);
  expect((await store.loadRoomEvents("r1", 0n)).length).toBe(commits);
  await store.close();

  // Closed cleanly, the WAL is folded into the database file.
  expect(walBytes(path)).toBe(0);
  const db = new Database(path, { readonly: true });
  expect((db.prepare("SELECT COUNT(*) AS n FROM room_events").get() as { n: number }).n).toBe(commits);
  db.close();
});
