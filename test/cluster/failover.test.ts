import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import { ContractStatus, MilestoneStatus, type Contract } from "../../gen/handshake/v1/deal_pb.js";
import type { PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { bearer } from "../support/app.js";
import { retryWhileMoving } from "../support/cluster.js";
import { sha256Hex } from "../support/hash.js";
import { recordPanel, type PanelRecorder } from "../support/panel.js";
import { roomHeader } from "../support/people.js";
import { postgresUnavailable, startPostgres, type PostgresServer } from "../support/postgres.js";
import { startRedis, type TestRedis } from "../support/redis.js";
import {
  approvedAmount,
  draftedContract,
  joinRoom,
  moneyProblems,
  roofDeal,
  startChildServer,
  type ChildServer,
  type DealRun,
  type MoneyRecords,
} from "../support/restart.js";
import { startRouter, type Router } from "../support/router.js";
import { NODE_BEHIND_ROUTER_ENV } from "../../scripts/cluster-router.js";

/**
 * Three real nodes on one PostgreSQL database and one Redis, behind the HAProxy router: two people
 * strike the roof deal; the node that hosts their room is SIGKILLed between the two signatures;
 * the room goes on on another node, both PanelStreams resume from their last seq with nothing
 * missing or repeated, the second signature completes the deal, the escrow milestone is settled
 * through ContractService on a node that does not host the room (its events reach the room over
 * the bus), and the ledger shows each item paid once.
 */

const skip = postgresUnavailable();
const LEASE_MS = 1_500;

let postgres: PostgresServer;
let redis: TestRedis;
let databaseUrl: string;
let router: Router;
const nodes = new Map<string, ChildServer>();
const dataDirs: string[] = [];

async function startNode(id: string): Promise<ChildServer> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), `handshake-${id}-`));
  dataDirs.push(dataDir);
  const node = await startChildServer({
    // Behind the router every call comes from its one address: per-address limits are the router's.
    ...NODE_BEHIND_ROUTER_ENV,
    DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    REDIS_URL: redis.url,
    NODE_ID: id,
    ROOM_LEASE_MS: String(LEASE_MS),
    NEGOTIATION_ROUND_TIMEOUT_MS: "20000",
    NEGOTIATION_TOTAL_TIMEOUT_MS: "60000",
  });
  nodes.set(id, node);
  return node;
}

beforeAll(async () => {
  if (skip) return;
  [postgres, redis] = await Promise.all([startPostgres(), startRedis()]);
  databaseUrl = await postgres.createDatabase("failover");
  // The first node migrates the database and makes the token secret; the others find both.
  await startNode("node-1");
  await Promise.all([startNode("node-2"), startNode("node-3")]);
  router = await startRouter({ nodes: [...nodes].map(([id, node]) => ({ id, port: node.port })) });
}, 120_000);

afterAll(async () => {
  await router?.stop();
  await Promise.all([...nodes.values()].map((node) => node.stop("SIGKILL")));
  await redis?.stop();
  await postgres?.stop();
  await Promise.all(dataDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

/** RoomService through `baseUrl` as the clients call it: the session token and the room header. */
function roomClient(baseUrl: string, sessionToken: string, roomId: string): Client<typeof RoomService> {
  return createClient(RoomService, createGrpcTransport({ baseUrl, interceptors: [bearer(sessionToken), roomHeader(roomId)] }));
}

/** `promise`, or a failure naming `what` after 20 s: a stuck step says which one it was. */
async function step<T>(what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const stuck = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`stuck: ${what}`)), 20_000)));
  try {
    return await Promise.race([promise, stuck]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until the panel's stream has failed (its node died): a matcher that never matches rejects then. */
async function streamFailed(panel: PanelRecorder): Promise<void> {
  await panel.waitFor(() => false, "the stream's end").catch(() => undefined);
}

/** The contract's money records and the whole ledger, read from PostgreSQL (the shape moneyProblems checks). */
async function readMoneyRecords(url: string, contractId: string): Promise<MoneyRecords> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    const one = async (sql: string, args: unknown[] = []) => (await db.query(sql, args)).rows as Record<string, string>[];
    const contract = (await one("SELECT status FROM contracts WHERE id = $1", [contractId]))[0]!;
    const payments = (await one("SELECT status, amount_minor, line_item_id FROM payments WHERE contract_id = $1", [contractId])).map((r) => ({
      status: Number(r.status),
      amountMinor: BigInt(r.amount_minor!),
      lineItemId: r.line_item_id!,
    }));
    const holds = (await one("SELECT status, amount_minor, captured_minor, line_item_id FROM escrow_holds WHERE contract_id = $1", [contractId])).map((r) => ({
      status: Number(r.status),
      amountMinor: BigInt(r.amount_minor!),
      capturedMinor: BigInt(r.captured_minor!),
      lineItemId: r.line_item_id!,
    }));
    const milestones = (await one("SELECT status, captured_minor, line_item_id FROM milestones WHERE contract_id = $1", [contractId])).map((r) => ({
      status: Number(r.status),
      capturedMinor: BigInt(r.captured_minor!),
      lineItemId: r.line_item_id!,
    }));
    const ledger: Record<string, number> = {};
    for (const { memo } of await one("SELECT memo FROM ledger_transactions")) {
      const action = memo!.split(" ")[0] ?? "";
      ledger[action] = (ledger[action] ?? 0) + 1;
    }
    const balances: Record<string, bigint> = {};
    for (const r of await one("SELECT account, currency, SUM(amount_minor)::text AS balance FROM ledger_entries GROUP BY account, currency")) {
      balances[`${r.account} ${r.currency}`] = BigInt(r.balance!);
    }
    const total = (await one("SELECT COALESCE(SUM(amount_minor), 0)::text AS s FROM ledger_entries"))[0]!.s!;
    const open = (await one("SELECT COUNT(*)::text AS n FROM settlement_intents"))[0]!.n!;
    return { contractStatus: Number(contract.status), payments, holds, milestones, ledger, balances, ledgerTotal: BigInt(total), openIntents: Number(open) };
  } finally {
    await db.end();
  }
}

describe.skipIf(skip)("three nodes, one lost mid-deal", () => {
  it("moves the room to another node between the two signatures: streams resume without a gap or a repeat, the deal completes, each item is paid once", async () => {
    const roomId = "roof-failover";
    const run: DealRun = { roomId, deal: roofDeal };
    const provider = (run.provider = await joinRoom(router.url, roomId, roofDeal.provider));
    const client = (run.client = await joinRoom(router.url, roomId, roofDeal.client));
    const directory = new Redis(redis.url);
    try {
      const ownerId = await directory.get(`handshake:room:${roomId}:owner`);
      const owner = nodes.get(ownerId ?? "");
      expect(owner, `the room's owner in the directory: ${ownerId}`).toBeDefined();

      await step("the talk", roofDeal.talk(provider, client));
      const contract = (run.contract = await step("the drafted contract", draftedContract(provider)));
      await provider.room.signContract({ contractId: contract.id, textSha256: sha256Hex(contract.text) });
      await step("the first signature", client.panel.waitFor((e) => e.event.case === "executionStep" && e.event.value.step === "signature", "the first signature"));

      // The owner dies between the two signatures.
      await owner!.stop("SIGKILL");
      await step("the streams failing", Promise.all([streamFailed(provider.panel), streamFailed(client.panel)]));
      const seenBefore = new Map([
        [provider.userId, [...provider.panel.events]],
        [client.userId, [...client.panel.events]],
      ]);
      await provider.panel.stop();
      await client.panel.stop();

      // Their clients call again through the router: the room is claimed and rebuilt on another node.
      const providerRoom = roomClient(router.url, provider.sessionToken, roomId);
      const clientRoom = roomClient(router.url, client.sessionToken, roomId);
      const status = await retryWhileMoving(() => providerRoom.getRoom({}));
      expect(status.contract?.id).toBe(contract.id);
      expect(status.room?.participants.map((p) => p.userId).sort()).toEqual([provider.userId, client.userId].sort());
      const newOwnerId = await directory.get(`handshake:room:${roomId}:owner`);
      expect(newOwnerId).not.toBe(ownerId);
      expect([...nodes.keys()]).toContain(newOwnerId);

      const lastSeq = (userId: string) => seenBefore.get(userId)!.at(-1)!.seq;
      const providerPanel = recordPanel(providerRoom, roomId, lastSeq(provider.userId));
      const clientPanel = recordPanel(clientRoom, roomId, lastSeq(client.userId));
      try {
        const signed = await retryWhileMoving(() => clientRoom.signContract({ contractId: contract.id, textSha256: sha256Hex(contract.text) }));
        expect(signed.contract?.signatures.map((s) => s.userId).sort()).toEqual([provider.userId, client.userId].sort());
        const active = await step("the contract active", clientPanel.waitFor((e) => e.event.case === "contract" && e.event.value.status === ContractStatus.ACTIVE, "the contract active"));
        expect(active.seq).toBeGreaterThan(lastSeq(client.userId));

        // The milestone is settled through ContractService on a node that does not host the room.
        const elsewhere = [...nodes].find(([id, node]) => id !== newOwnerId && node.process.exitCode === null && node.process.signalCode === null)![1];
        const contractsOf = (token: string) => createClient(ContractService, createGrpcTransport({ baseUrl: elsewhere.baseUrl, interceptors: [bearer(token)] }));
        const current = (await contractsOf(provider.userToken).getContract({ contractId: contract.id })).contract as Contract;
        const milestone = current.milestones[0]!;
        const amountMinor = approvedAmount(milestone);
        await contractsOf(provider.userToken).proposeMilestoneAmount({ contractId: contract.id, milestoneId: milestone.id, amountMinor });
        await contractsOf(client.userToken).approveMilestoneAmount({ contractId: contract.id, milestoneId: milestone.id, amountMinor });
        // Heard in the room on its new node, through the bus.
        for (const panel of [providerPanel, clientPanel]) {
          await step("the settled milestone on the panel", panel.waitFor((e) => e.event.case === "milestone" && e.event.value.status === MilestoneStatus.COMPLETED, "the settled milestone"));
        }
        await step("the contract completed", clientPanel.waitFor((e) => e.event.case === "contract" && e.event.value.status === ContractStatus.COMPLETED, "the contract completed"));
      } finally {
        await providerPanel.stop();
        await clientPanel.stop();
      }

      // Each person's stream, before and after the move, is one run of their log: nothing missing, nothing repeated.
      for (const [person, after] of [
        [provider, providerPanel.events],
        [client, clientPanel.events],
      ] as const) {
        const seqs = [...seenBefore.get(person.userId)!, ...after].map((e: PanelEvent) => e.seq);
        expect(new Set(seqs).size).toBe(seqs.length);
        const whole = recordPanel(roomClient(router.url, person.sessionToken, roomId), roomId);
        await step("the whole log", whole.waitFor((e) => e.seq >= seqs.at(-1)!, "the whole log"));
        await whole.stop();
        expect(whole.events.map((e) => e.seq).filter((s) => s <= seqs.at(-1)!)).toEqual(seqs);
      }

      expect(moneyProblems(await readMoneyRecords(databaseUrl, contract.id), run, "approve")).toEqual([]);
    } finally {
      directory.disconnect();
    }
  }, 60_000);
});
