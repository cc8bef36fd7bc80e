import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ContractStatus, NegotiationStatus } from "../../gen/handshake/v1/deal_pb.js";
import { ApprovalStatus, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { clients } from "../support/app.js";
import { retryWhileMoving } from "../support/cluster.js";
import { recordPanel } from "../support/panel.js";
import { joinPerson } from "../support/people.js";
import { startRedis } from "../support/redis.js";
import { startChildServer, type ChildServer } from "../support/restart.js";

/**
 * A node dies while a negotiation is open (the paying agent waits on its person's approval): the
 * room is rebuilt from the store on the next room call, with the open negotiation where it stood,
 * and the people's streams resume from their last seq. A cluster node (REDIS_URL) restarted on the
 * same data folder takes the same path as another node taking over (test/cluster/failover.test.ts).
 */

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function node(dataDir: string, redisUrl: string, nodeId: string): Promise<ChildServer> {
  const server = await startChildServer({
    DATA_DIR: dataDir,
    REDIS_URL: redisUrl,
    NODE_ID: nodeId,
    ROOM_LEASE_MS: "1500",
    NEGOTIATION_ROUND_TIMEOUT_MS: "30000",
    NEGOTIATION_TOTAL_TIMEOUT_MS: "60000",
  });
  cleanups.push(() => server.stop("SIGKILL"));
  return server;
}

const pendingApproval = (e: PanelEvent) => e.event.case === "approvalRequest" && e.event.value.status === ApprovalStatus.PENDING;

describe("a node lost while a negotiation is open", () => {
  it("rebuilds the room with the negotiation where it stood: the agent asks its person again, and the approved deal is drafted", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "handshake-negotiation-failover-"));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const roomId = "gutter-failover";
    const first = await node(dataDir, redis.url, "node-first");
    const sam = await joinPerson(first.baseUrl, roomId, { displayName: "Sam", role: PartyRole.PROVIDER, trade: "roofer" });
    const alex = await joinPerson(first.baseUrl, roomId, { displayName: "Alex", role: PartyRole.CLIENT, maxAutoApproveMinor: 10_000n });
    await alex.say("Can you fix the gutter?");
    await sam.say("I can fix your gutter today for four hundred and fifty pounds.");
    // Alex's agent opens, and must ask Alex first: £450 is above Alex's £100 auto-approve.
    await alex.say("OK, handshake.");
    const askedEvent = await alex.panel.waitFor(pendingApproval, "the approval request");
    if (askedEvent.event.case !== "approvalRequest") throw new Error("unreachable");
    const asked = askedEvent.event.value;
    const before = (await alex.room.getRoom({})).negotiation!;
    expect(before.status).toBe(NegotiationStatus.OPEN);
    expect(before.id).toBe(asked.negotiationId);

    await first.stop("SIGKILL");
    await alex.panel.stop();
    await sam.panel.stop();
    const lastSeen = (events: PanelEvent[]) => events.at(-1)!.seq;
    const [alexSeen, samSeen] = [[...alex.panel.events], [...sam.panel.events]];

    // The same session tokens, on the node that takes over.
    const second = await node(dataDir, redis.url, "node-second");
    const alexAgain = clients(second.baseUrl, alex.sessionToken);
    const samAgain = clients(second.baseUrl, sam.sessionToken);
    // The first call rebuilds the room here, once the dead node's lease has lapsed.
    await retryWhileMoving(() => alexAgain.room.getRoom({}));
    const alexPanel = recordPanel(alexAgain.room, roomId, lastSeen(alexSeen));
    const samPanel = recordPanel(samAgain.room, roomId, lastSeen(samSeen));
    cleanups.push(async () => {
      await alexPanel.stop();
      await samPanel.stop();
    });
    const againEvent = await alexPanel.waitFor((e) => pendingApproval(e) && e.event.case === "approvalRequest" && e.event.value.id !== asked.id, "the approval asked again");
    if (againEvent.event.case !== "approvalRequest") throw new Error("unreachable");
    const askedAgain = againEvent.event.value;
    // The request nobody can answer any more is shown as expired; the new one is for the same negotiation.
    const expired = alexPanel.events.find((e) => e.event.case === "approvalRequest" && e.event.value.id === asked.id);
    expect(expired?.event.value).toMatchObject({ status: ApprovalStatus.EXPIRED });
    expect(askedAgain).toMatchObject({ negotiationId: before.id, amountMinor: asked.amountMinor });

    const resumed = (await alexAgain.room.getRoom({})).negotiation!;
    expect(resumed.id).toBe(before.id);
    expect(resumed.rounds.slice(0, before.rounds.length)).toEqual(before.rounds);
    await alexAgain.room.answerApproval({ approvalId: askedAgain.id, approve: true });
    const drafted = await samPanel.waitFor((e) => e.event.case === "contract" && e.event.value.status === ContractStatus.AWAITING_SIGNATURES, "the contract");
    if (drafted.event.case !== "contract") throw new Error("unreachable");
    expect(drafted.event.value.negotiationId).toBe(before.id);
    expect(drafted.event.value.terms?.totalMinor).toBe(45_000n);

    // Each stream, before and after the move, is one run of the room's log: nothing repeated, nothing missing.
    for (const [seen, after, userId] of [
      [alexSeen, alexPanel.events, alex.userId],
      [samSeen, samPanel.events, sam.userId],
    ] as const) {
      const seqs = [...seen, ...after].map((e) => e.seq);
      expect(new Set(seqs).size).toBe(seqs.length);
      expect([...seqs].sort((x, y) => (x < y ? -1 : 1))).toEqual(seqs);
      const whole = recordPanel(clients(second.baseUrl, userId === alex.userId ? alex.sessionToken : sam.sessionToken).room, roomId);
      await whole.waitFor((e) => e.seq >= seqs.at(-1)!, "the whole log");
      await whole.stop();
      expect(whole.events.map((e) => e.seq).filter((s) => s <= seqs.at(-1)!)).toEqual(seqs);
    }
  });
});
