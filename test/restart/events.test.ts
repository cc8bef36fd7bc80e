import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { LineItemKind, type Contract } from "../../gen/handshake/v1/deal_pb.js";
import type { PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { bearer } from "../support/app.js";
import { recordPanel } from "../support/panel.js";
import { draftedContract, joinRoom, roofDeal, startChildServer, type ChildServer, type Person } from "../support/restart.js";

const NEGOTIATION_ENV = { NEGOTIATION_ROUND_TIMEOUT_MS: "20000", NEGOTIATION_TOTAL_TIMEOUT_MS: "60000" };

/** Everything a test started, torn down in reverse whatever happened. */
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "handshake-events-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function childServer(env: Record<string, string>): Promise<ChildServer> {
  const child = await startChildServer({ ...NEGOTIATION_ENV, ...env });
  cleanups.push(() => child.stop("SIGKILL"));
  return child;
}

/** Ends people's panel streams; their server may already be gone. */
async function stopPanels(...people: Person[]): Promise<void> {
  for (const p of people) await p.panel.stop();
}

const isTranscript = (text: string) => (e: PanelEvent) => e.event.case === "transcript" && e.event.value.text === text;

/** A panel reader of `person` on the restarted server, resuming after `afterSeq`. */
function resume(person: Person, afterSeq: bigint) {
  const panel = recordPanel(person.room, person.roomId, afterSeq);
  cleanups.push(() => panel.stop());
  return panel;
}

/**
 * After the restart the delivered event is there under its seq, and what comes after is numbered
 * on from it: no event seen before the kill is lost, no seq is given twice.
 */
async function expectKeptAndNumberedOn(server: ChildServer, roomId: string, people: [Person, Person], seq: bigint, text: string): Promise<void> {
  const [provider, client] = people;
  const back = await joinRoom(server.baseUrl, roomId, roofDeal.provider, provider.userToken);
  const clientBack = await joinRoom(server.baseUrl, roomId, roofDeal.client, client.userToken);
  cleanups.push(() => stopPanels(back, clientBack));
  const panel = resume(back, seq - 1n);
  const first = await panel.waitFor((e) => e.seq >= seq, "the delivered event");
  expect(first.seq).toBe(seq);
  expect(first.event).toEqual({ case: "transcript", value: expect.objectContaining({ text, isFinal: true }) });
  await clientBack.say("Is that with VAT?");
  const next = await panel.waitFor(isTranscript("Is that with VAT?"), "the next transcript");
  expect(next.seq).toBeGreaterThan(seq);
  // Every seq once: the rejoins' status events after the restart were numbered on too.
  const seqs = panel.events.map((e) => e.seq);
  expect(new Set(seqs).size).toBe(seqs.length);
  expect(seqs.every((s) => s >= seq)).toBe(true);
}

describe("room events across a SIGKILL", () => {
  it("keeps an event the process died right after handing to a reader, under its seq; the next gets a new one", async () => {
    const dataDir = await tempDir();
    // The kill point fires synchronously right after the first transcript was handed to a reader.
    const first = await childServer({ DATA_DIR: dataDir, HANDSHAKE_KILL_AFTER_EVENT: "transcript" });
    const provider = await joinRoom(first.baseUrl, "events-kill-point", roofDeal.provider);
    const client = await joinRoom(first.baseUrl, "events-kill-point", roofDeal.client);
    await provider.panel.waitFor((e) => e.event.case === "roomStatus" && e.event.value.paired, "paired");
    await provider.say("The call-out is sixty pounds.").catch(() => undefined);
    await first.exited;
    expect(first.process.signalCode).toBe("SIGKILL");
    const fired = /kill-point event (\d+) transcript/.exec(first.stderr());
    expect(fired).not.toBeNull();
    const seq = BigInt(fired![1]!);
    await stopPanels(provider, client);
    // Whatever the readers got before the connection died carries the same seq.
    for (const seen of [...provider.panel.events, ...client.panel.events].filter(isTranscript("The call-out is sixty pounds."))) expect(seen.seq).toBe(seq);

    const second = await childServer({ DATA_DIR: dataDir });
    await expectKeptAndNumberedOn(second, "events-kill-point", [provider, client], seq, "The call-out is sixty pounds.");
  }, 60_000);

  it("keeps an event a reader received when the process is killed from outside", async () => {
    const dataDir = await tempDir();
    const first = await childServer({ DATA_DIR: dataDir });
    const provider = await joinRoom(first.baseUrl, "events-sigkill", roofDeal.provider);
    const client = await joinRoom(first.baseUrl, "events-sigkill", roofDeal.client);
    await provider.say("The call-out is sixty pounds.");
    const seen = await client.panel.waitFor(isTranscript("The call-out is sixty pounds."), "the transcript");
    await first.stop("SIGKILL");
    await stopPanels(provider, client);

    const second = await childServer({ DATA_DIR: dataDir });
    await expectKeptAndNumberedOn(second, "events-sigkill", [provider, client], seen.seq, "The call-out is sixty pounds.");
  }, 60_000);

  it("tells a reader resuming from before the kept window about the gap, over gRPC and Connect, after a restart", async () => {
    const dataDir = await tempDir();
    const env = { DATA_DIR: dataDir, ROOM_EVENT_LOG_SIZE: "10" };
    const first = await childServer(env);
    const provider = await joinRoom(first.baseUrl, "events-gap", roofDeal.provider);
    const client = await joinRoom(first.baseUrl, "events-gap", roofDeal.client);
    for (let i = 1; i <= 30; i++) await provider.say(`Line ${i} of the quote.`);
    const last = await client.panel.waitFor(isTranscript("Line 30 of the quote."), "the last line");
    await first.stop("SIGKILL");
    await stopPanels(provider, client);

    const second = await childServer(env);
    const back = await joinRoom(second.baseUrl, "events-gap", roofDeal.client, client.userToken);
    cleanups.push(() => stopPanels(back));
    const connect = createClient(RoomService, createConnectTransport({ baseUrl: second.baseUrl, httpVersion: "1.1", interceptors: [bearer(back.sessionToken)] }));
    for (const room of [back.room, connect]) {
      const panel = recordPanel(room, "events-gap", 3n);
      cleanups.push(() => panel.stop());
      const gap = await panel.waitFor((e) => e.event.case === "gap", "the gap");
      expect(panel.events[0]).toBe(gap);
      if (gap.event.case !== "gap") throw new Error("unreachable");
      expect(gap.event.value.afterSeq).toBe(3n);
      const missing = gap.event.value.lastMissingSeq;
      expect(gap.seq).toBe(missing);
      expect(missing).toBeGreaterThan(3n);
      // Then the kept events, from right after what is missing, through the last line.
      const kept = await panel.waitFor((e) => e.seq === last.seq, "the last kept line");
      expect(kept.event).toEqual(last.event);
      expect(panel.events[1]!.seq).toBeGreaterThan(missing);
      expect(panel.events.slice(1).filter((e) => e.event.case === "gap")).toEqual([]);
      await panel.stop();
    }
  }, 60_000);

  it("brings the conversation back after a restart mid-call: 'handshake' then makes a deal on the prices said before", async () => {
    const dataDir = await tempDir();
    const first = await childServer({ DATA_DIR: dataDir });
    const provider = await joinRoom(first.baseUrl, "events-conversation", roofDeal.provider);
    const client = await joinRoom(first.baseUrl, "events-conversation", roofDeal.client);
    await client.say("Water is coming through the ceiling when it rains. Can you repair the roof?");
    await provider.say("The call-out is sixty pounds.");
    await provider.say("The repair itself could be anything from 150 to 250 pounds, depending on what I find up there.");
    await client.panel.waitFor(isTranscript("The repair itself could be anything from 150 to 250 pounds, depending on what I find up there."), "the range");
    await first.stop("SIGKILL");
    await stopPanels(provider, client);

    const second = await childServer({ DATA_DIR: dataDir });
    const providerBack = await joinRoom(second.baseUrl, "events-conversation", roofDeal.provider, provider.userToken);
    const clientBack = await joinRoom(second.baseUrl, "events-conversation", roofDeal.client, client.userToken);
    cleanups.push(() => stopPanels(providerBack, clientBack));
    await clientBack.say("OK, that sounds good to me. Handshake.");
    const contract: Contract = await draftedContract(providerBack);
    const items = contract.terms?.lineItems ?? [];
    expect(items).toHaveLength(2);
    expect(items.find((i) => i.kind === LineItemKind.IMMEDIATE)?.amountMinor).toBe(6_000n);
    expect(items.find((i) => i.kind === LineItemKind.ESCROW)?.range).toMatchObject({ minMinor: 15_000n, maxMinor: 25_000n });
    // The restored talk was not emitted again: each line is in the log once.
    const lines = providerBack.panel.events.filter(isTranscript("The call-out is sixty pounds."));
    expect(lines).toHaveLength(1);
    expect(providerBack.panel.events.some((e) => e.event.case === "error" && e.event.value.stage === "agent")).toBe(false);
  }, 90_000);

  it("remembers across a restart which agreement already became a contract: the same 'handshake' again makes no second one", async () => {
    const dataDir = await tempDir();
    const first = await childServer({ DATA_DIR: dataDir });
    const provider = await joinRoom(first.baseUrl, "events-one-deal", roofDeal.provider);
    const client = await joinRoom(first.baseUrl, "events-one-deal", roofDeal.client);
    await roofDeal.talk(provider, client);
    const drafted = await draftedContract(provider);
    await first.stop("SIGKILL");
    await stopPanels(provider, client);

    const second = await childServer({ DATA_DIR: dataDir });
    const providerBack = await joinRoom(second.baseUrl, "events-one-deal", roofDeal.provider, provider.userToken);
    const clientBack = await joinRoom(second.baseUrl, "events-one-deal", roofDeal.client, client.userToken);
    cleanups.push(() => stopPanels(providerBack, clientBack));
    await clientBack.say("Handshake.");
    const refused = await providerBack.panel.waitFor((e) => e.event.case === "error" && e.event.value.stage === "trigger", "the trigger's refusal");
    expect(refused.event.value).toMatchObject({ code: "no_new_terms" });
    // The panel starts with the restored history (the first trigger, the contract); nothing new was started.
    const contractIds = new Set(providerBack.panel.events.filter((e) => e.event.case === "contract").map((e) => (e.event.value as Contract).id));
    expect([...contractIds]).toEqual([drafted.id]);
    const triggers = providerBack.panel.events.filter((e) => e.event.case === "trigger");
    expect(triggers).toHaveLength(1);
    expect(triggers[0]!.seq).toBeLessThan(refused.seq);
  }, 90_000);
});
