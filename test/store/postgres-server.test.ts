import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createPostgresStore } from "../../src/store/postgres-store.js";
import { startTestApp, type TestApp } from "../support/app.js";
import { joinPerson, type Person } from "../support/people.js";
import { postgresUnavailable, startPostgres, uniqueDatabaseName, type PostgresServer } from "../support/postgres.js";

/*
 * The real server with DATABASE_URL: room events go through the asynchronous store, every event a
 * reader sees is already in PostgreSQL, and after a restart on the same database the room's
 * numbering goes on and a resuming reader gets nothing twice.
 */

const skipReason = postgresUnavailable();
if (skipReason) console.warn(`skipping the server on PostgreSQL: ${skipReason}`);

describe.skipIf(skipReason !== undefined)("the server on PostgreSQL", () => {
  let server: PostgresServer;
  const apps: TestApp[] = [];
  const people: Person[] = [];

  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterEach(async () => {
    for (const person of people.splice(0)) await person.panel.stop();
    for (const app of apps.splice(0)) await app.close();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("shows a room's events only once stored, and numbers on from them after a restart", { timeout: 60_000 }, async () => {
    const url = await server.createDatabase(uniqueDatabaseName("srv"));
    const first = await startTestApp({ DATABASE_URL: url });
    apps.push(first);
    const ada = await joinPerson(first.baseUrl, "pg-room", { displayName: "Ada" });
    const bo = await joinPerson(first.baseUrl, "pg-room", { displayName: "Bo" });
    people.push(ada, bo);
    await ada.say("the boiler needs a new pump");
    await bo.say("I can fit one on Tuesday");
    const isTranscript = (text: string) => (e: { event: { case?: string; value?: unknown } }) =>
      e.event.case === "transcript" && (e.event.value as { text: string }).text === text;
    await ada.panel.waitFor(isTranscript("I can fit one on Tuesday"), "Bo's words");

    const seen = ada.panel.events.map((e) => e.seq);
    expect(seen).toEqual([...seen].sort((x, y) => (x < y ? -1 : 1)));
    expect(new Set(seen).size).toBe(seen.length);
    const store = await createPostgresStore({ url });
    try {
      const stored = new Set((await store.loadRoomEvents("pg-room", 0n)).map((e) => e.seq));
      expect(seen.filter((seq) => !stored.has(seq))).toEqual([]);
    } finally {
      await store.close();
    }

    const lastSeen = seen.at(-1)!;
    for (const person of people.splice(0)) await person.panel.stop();
    await first.close();
    apps.splice(0);

    const second = await startTestApp({ DATABASE_URL: url });
    apps.push(second);
    const adaAgain = await joinPerson(second.baseUrl, "pg-room", { displayName: "Ada" }, { userToken: ada.userToken });
    people.push(adaAgain);
    await adaAgain.say("Tuesday is fine");
    await adaAgain.panel.waitFor(isTranscript("Tuesday is fine"), "Ada's words after the restart");
    const resumed = adaAgain.panel.events.filter((e) => e.seq > lastSeen);
    expect(resumed.length).toBeGreaterThan(0);
    // Everything after the restart is numbered after everything before it.
    const afterRestart = adaAgain.panel.events.find(isTranscript("Tuesday is fine"))!;
    expect(afterRestart.seq).toBeGreaterThan(lastSeen);
    const again = adaAgain.panel.events.map((e) => e.seq);
    expect(new Set(again).size).toBe(again.length);
  });
});
