import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PaymentSchema } from "../../gen/handshake/v1/deal_pb.js";
import type { PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { clients, grpcTransport, startTestApp, testProfile, type TestApp } from "../support/app.js";
import { recordPanel } from "../support/panel.js";
import { TEST_JWT_SECRET, driveDeal, expectCode, joinAs, type Person } from "../support/security.js";
import { settledStoreDigest, storeDigest } from "../support/store-rows.js";

/**
 * A room's history belongs to the people who were in it (DESIGN.md): a new pair on a reused
 * room code starts empty, a member who comes back gets the history back, the invite code and the
 * pair outlive a restart, new rooms get unguessable ids, and a refused JoinRoom stores nothing.
 */

const ENV = { JWT_SECRET: TEST_JWT_SECRET, LEAVE_GRACE_MS: "3600000" };

let dataDir: string;
let t: TestApp;
const people: Person[] = [];

async function person(roomId: string, profile: Parameters<typeof joinAs>[2], userToken = "", inviteCode = ""): Promise<Person> {
  const p = await joinAs(t, roomId, profile, userToken, inviteCode);
  people.push(p);
  return p;
}

/** What only a pair's conversation produces: transcripts, negotiations, contracts, payments. */
const PRIVATE_CASES = new Set(["transcript", "negotiation", "contract", "payment", "agentMessage", "trigger", "escrowHold", "milestone"]);
const privateEvents = (events: PanelEvent[]) => events.filter((e) => e.event.case !== undefined && PRIVATE_CASES.has(e.event.case));

/** Leaves and waits until the room is gone from the server. */
async function leaveAll(...ps: Person[]): Promise<void> {
  for (const p of ps) {
    await p.panel.stop();
    await p.room.leaveRoom({});
  }
}

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "handshake-privacy-"));
  t = await startTestApp(ENV, dataDir);
}, 30_000);

afterAll(async () => {
  for (const p of people) await p.panel.stop();
  await t?.close();
  await rm(dataDir, { recursive: true, force: true });
});

describe("a reused room code", () => {
  it("gives a stranger an empty room, numbered on from the old events", async () => {
    const { provider, client, contract } = await driveDeal(t, "pv-reuse");
    people.push(provider, client);
    const oldLastSeq = provider.panel.events.at(-1)!.seq;
    expect(privateEvents(provider.panel.events).length).toBeGreaterThan(0);
    await leaveAll(provider, client);

    const stranger = await person("pv-reuse", { displayName: "Mallory", role: PartyRole.CLIENT });
    await stranger.panel.waitFor((e) => e.event.case === "roomStatus", "the stranger's room status");
    const got = await stranger.room.getRoom({});
    expect(got.room?.participants.map((p) => p.userId)).toEqual([stranger.userId]);
    expect(got.contract).toBeUndefined();
    expect(got.negotiation).toBeUndefined();
    expect(privateEvents(stranger.panel.events)).toEqual([]);
    // Sequence numbers are never reused: the new pair's log goes on after the old one.
    expect(stranger.panel.events[0]!.seq).toBeGreaterThan(oldLastSeq);
    // A resume from before the new pair's start shows nothing of the old pair either.
    const resumed = recordPanel(stranger.room, "pv-reuse", 0n);
    await resumed.waitFor((e) => e.event.case === "roomStatus", "room status on a resume from 0");
    await resumed.stop();
    expect(privateEvents(resumed.events)).toEqual([]);
    await expectCode(() => stranger.contracts.getContract({ contractId: contract.id }), Code.PermissionDenied);
    expect((await stranger.contracts.listContracts({})).contracts).toEqual([]);
    await leaveAll(stranger);
  });

  it("gives a stranger who joins while one of the pair stays none of that pair's history", async () => {
    const { provider, client, contract } = await driveDeal(t, "pv-stay");
    people.push(provider, client);
    const history = privateEvents(provider.panel.events).map((e) => e.seq);
    expect(history.length).toBeGreaterThan(0);
    await client.panel.stop();
    await client.room.leaveRoom({});

    const stranger = await person("pv-stay", { displayName: "Mallory", role: PartyRole.CLIENT });
    await stranger.panel.waitFor((e) => e.event.case === "roomStatus" && e.event.value.participants.length === 2, "the new pair's room status");
    expect(privateEvents(stranger.panel.events)).toEqual([]);
    const resumed = recordPanel(stranger.room, "pv-stay", 0n);
    // The newest status (with the stranger in it) comes after anything older the log would give.
    const joinedStatus = (e: PanelEvent) => e.event.case === "roomStatus" && e.event.value.participants.some((p) => p.userId === stranger.userId);
    await resumed.waitFor(joinedStatus, "the new pair's status on a resume from 0");
    await resumed.stop();
    expect(privateEvents(resumed.events)).toEqual([]);
    const got = await stranger.room.getRoom({});
    expect(got.contract).toBeUndefined();
    expect(got.negotiation).toBeUndefined();
    await expectCode(() => stranger.contracts.getContract({ contractId: contract.id }), Code.PermissionDenied);
    // The one who stayed keeps their own history in the live room and their contract.
    expect((await provider.contracts.getContract({ contractId: contract.id })).contract?.id).toBe(contract.id);
    // A later money event of the earlier pair's contract (as settlement publishes one) reaches its
    // party, not the stranger.
    t.app.deps.rooms.publish("pv-stay", { event: { case: "payment", value: create(PaymentSchema, { id: "pay_later", contractId: contract.id }) } });
    await provider.panel.waitFor((e) => e.event.case === "payment" && e.event.value.id === "pay_later", "the earlier pair's payment event");
    // Events come in order: once the stranger has a line said after it, the payment would be there.
    await stranger.say("hello there");
    await stranger.panel.waitFor((e) => e.event.case === "transcript" && e.event.value.text === "hello there", "the stranger's own line");
    expect(stranger.panel.events.some((e) => e.event.case === "payment")).toBe(false);
    await leaveAll(stranger, provider);
  });

  it("gives a member of the pair their history back when they return", async () => {
    const { provider, client, contract } = await driveDeal(t, "pv-return");
    people.push(provider, client);
    const history = privateEvents(provider.panel.events).map((e) => e.seq);
    await leaveAll(provider, client);

    const back = await person("pv-return", {}, provider.userToken);
    await back.panel.waitFor((e) => e.event.case === "contract" && e.event.value.id === contract.id, "the pair's contract");
    expect(privateEvents(back.panel.events).map((e) => e.seq)).toEqual(history);
    await leaveAll(back);
  });
});

describe("new rooms", () => {
  it("JoinRoom with an empty room_id creates a room under an unguessable id that the second person joins", async () => {
    const anonymous = createClient(RoomService, grpcTransport(t.baseUrl));
    const first = await anonymous.joinRoom({ roomId: "", profile: testProfile({ displayName: "Ida" }) });
    const second = await anonymous.joinRoom({ roomId: "", profile: testProfile({ displayName: "Jo" }) });
    const ids = [first.room!.roomId, second.room!.roomId];
    for (const id of ids) expect(id).toMatch(/^rm_[A-Za-z0-9_-]{22}$/);
    expect(ids[0]).not.toBe(ids[1]);
    const guest = await anonymous.joinRoom({ roomId: ids[0]!, profile: testProfile({ displayName: "Kim", role: PartyRole.PROVIDER }) });
    expect(guest.room?.participants.map((p) => p.displayName)).toEqual(["Ida", "Kim"]);
    for (const joined of [first, second, guest]) await clients(t.baseUrl, joined.sessionToken).room.leaveRoom({});
  });
});

describe("a refused JoinRoom", () => {
  // The largest profile the API takes (~200 KB): what 2,980 refused joins once wrote 622 MB of.
  const bigProfile = testProfile({
    displayName: "Flood",
    customInstructions: "i".repeat(4000),
    contextDocuments: Array.from({ length: 10 }, (_, i) => ({ title: `doc ${i}`, text: "x".repeat(20_000) })),
  });

  it.each([
    ["a third person in a full room", "pv-full", "", Code.ResourceExhausted],
    ["a wrong invite code", "pv-locked", "wrong-code", Code.PermissionDenied],
    ["no invite code", "pv-locked", "", Code.PermissionDenied],
  ] as const)("stores nothing: %s", async (_name, roomId, inviteCode, code) => {
    if (roomId === "pv-full" && !people.some((p) => p.roomId === roomId)) {
      await person(roomId, { displayName: "Ann" });
      await person(roomId, { displayName: "Ben", role: PartyRole.PROVIDER });
    }
    if (roomId === "pv-locked" && !people.some((p) => p.roomId === roomId)) await person(roomId, { displayName: "Host" }, "", "right-code");
    const member = people.find((p) => p.roomId === roomId)!;
    const outsider = people.find((p) => p.roomId === "pv-outsider") ?? (await person("pv-outsider", { displayName: "Out" }));
    const before = { store: await settledStoreDigest(dataDir), room: await member.room.getRoom({}) };
    const anonymous = createClient(RoomService, grpcTransport(t.baseUrl));
    for (let i = 0; i < 20; i++) await expectCode(() => anonymous.joinRoom({ roomId, inviteCode, profile: bigProfile }), code);
    // A known user refused keeps the profile they had: nothing is overwritten either.
    await expectCode(() => anonymous.joinRoom({ roomId, inviteCode, profile: bigProfile, userToken: outsider.userToken }), code);
    expect({ store: storeDigest(dataDir), room: await member.room.getRoom({}) }).toEqual(before);
  });

  it("stores nothing at the room limit", async () => {
    const small = await startTestApp({ ...ENV, MAX_ROOMS: "1" });
    try {
      const host = await joinAs(small, "pv-only", { displayName: "Only" });
      const before = await settledStoreDigest(small.dataDir);
      const anonymous = createClient(RoomService, grpcTransport(small.baseUrl));
      for (let i = 0; i < 10; i++) await expectCode(() => anonymous.joinRoom({ roomId: `pv-more-${i}`, profile: bigProfile }), Code.ResourceExhausted);
      await expectCode(() => anonymous.joinRoom({ roomId: "", profile: bigProfile }), Code.ResourceExhausted);
      expect(storeDigest(small.dataDir)).toEqual(before);
      await host.panel.stop();
    } finally {
      await small.close();
    }
  });
});

describe("across a restart", () => {
  it("the invite code and the pair still hold: strangers are refused, members get their history back", async () => {
    const host = await person("pv-restart", { displayName: "Ann", role: PartyRole.PROVIDER }, "", "door-code-7");
    const guest = await person("pv-restart", { displayName: "Ben", role: PartyRole.CLIENT }, "", "door-code-7");
    await host.say("The gate code is four four seven one.");
    await guest.panel.waitFor((e) => e.event.case === "transcript" && e.event.value.text.includes("four four seven one"), "the transcript");
    const history = privateEvents(guest.panel.events).map((e) => e.seq);
    await host.panel.stop();
    await guest.panel.stop();

    await t.close();
    t = await startTestApp(ENV, dataDir);

    const anonymous = createClient(RoomService, grpcTransport(t.baseUrl));
    const before = await settledStoreDigest(dataDir);
    await expectCode(() => anonymous.joinRoom({ roomId: "pv-restart", profile: testProfile({ displayName: "Mallory" }) }), Code.PermissionDenied);
    await expectCode(() => anonymous.joinRoom({ roomId: "pv-restart", inviteCode: "door-code-8", profile: testProfile({ displayName: "Mallory" }) }), Code.PermissionDenied);
    // With the right code a stranger is still a third person: both members are still the room's.
    await expectCode(() => anonymous.joinRoom({ roomId: "pv-restart", inviteCode: "door-code-7", profile: testProfile({ displayName: "Mallory" }) }), Code.ResourceExhausted);
    expect(storeDigest(dataDir)).toEqual(before);
    expect(t.app.deps.rooms.get("pv-restart")).toBeUndefined();

    // A member comes back without the code and finds the conversation where it was.
    const back = await person("pv-restart", { displayName: "Ann", role: PartyRole.PROVIDER }, host.userToken);
    await back.panel.waitFor((e) => e.event.case === "transcript" && e.event.value.text.includes("four four seven one"), "the transcript after the restart");
    expect(privateEvents(back.panel.events).map((e) => e.seq)).toEqual(history);
    expect((await back.room.getRoom({})).room?.inviteOnly).toBe(true);
    await expectCode(() => anonymous.joinRoom({ roomId: "pv-restart", profile: testProfile({ displayName: "Mallory" }) }), Code.PermissionDenied);
    const guestBack = await person("pv-restart", { displayName: "Ben", role: PartyRole.CLIENT }, guest.userToken);
    expect((await guestBack.room.getRoom({})).room?.participants.map((p) => p.userId)).toEqual([host.userId, guest.userId]);
  }, 60_000);
});
