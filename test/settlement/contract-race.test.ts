import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ContractStatus, EscrowHoldStatus, LineItemKind, MilestoneStatus, PaymentStatus } from "../../gen/handshake/v1/deal_pb.js";
import { createLedgerRail } from "../../src/payments/ledger-rail.js";
import { createScriptedRail } from "../../src/payments/testing/scripted-rail.js";
import { createContractExecutor } from "../../src/settlement/execution.js";
import { createMilestoneService } from "../../src/settlement/milestones.js";
import { createPostgresStore } from "../../src/store/postgres-store.js";
import type { Store } from "../../src/store/store.js";
import { startChildServer, type ChildServer } from "../support/restart.js";
import { CLIENT, PROVIDER, item, ledgerTotal, signedContract } from "../support/payment-fixtures.js";
import { postgresUnavailable, usePostgresDatabase } from "../support/postgres.js";

/*
 * Two nodes, one PostgreSQL: both try to carry out the same signed contract. The store's contract
 * lock (a PostgreSQL advisory lock) lets one node move the money; the other gets the lock after it
 * and finds the contract carried out, so each item is paid or held once and the rail is called
 * once per item in all.
 */

const skipReason = postgresUnavailable();
if (skipReason) console.warn(`skipping the two-node race: ${skipReason}`);

const items = () => [
  item({ id: "callout", description: "Call-out", kind: LineItemKind.IMMEDIATE, amountMinor: 6_000n }),
  item({ id: "boiler", description: "New boiler", kind: LineItemKind.ESCROW, amountMinor: 180_000n }),
];

/** Resolves once `check` returns true, asking again on each turn of the event loop's timers. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe.skipIf(skipReason !== undefined)("two nodes racing on one contract (PostgreSQL)", () => {
  const database = usePostgresDatabase("race");
  let url: string;
  beforeEach(() => {
    url = database();
  });
  const stores: Store[] = [];
  const nodes: ChildServer[] = [];
  const folders: string[] = [];

  afterEach(async () => {
    for (const node of nodes.splice(0)) await node.stop("SIGTERM");
    for (const folder of folders.splice(0)) await rm(folder, { recursive: true, force: true });
    for (const store of stores.splice(0)) await store.close();
  });

  /** A node's store: its own pools, as another process would have. */
  async function nodeStore(): Promise<Store> {
    const store = await createPostgresStore({ url });
    stores.push(store);
    return store;
  }

  it("lets one node move the money while the other waits on the lock, then finds it done and calls the rail for nothing", async () => {
    const storeA = await nodeStore();
    const storeB = await nodeStore();
    for (const id of [CLIENT, PROVIDER]) await storeA.createUser({ id, createdAtMs: 1 });
    const contract = await signedContract(storeA, items());

    const railA = createScriptedRail(createLedgerRail(storeA));
    const railB = createScriptedRail(createLedgerRail(storeB));
    const nodeA = createContractExecutor({ store: storeA, rail: railA, onEvent: () => {}, lock: storeA.contractLock });
    const nodeB = createContractExecutor({ store: storeB, rail: railB, onEvent: () => {}, lock: storeB.contractLock });

    // Node B starts while node A is inside its first rail call, holding the contract's lock; A goes
    // on only once PostgreSQL shows B's session waiting for that advisory lock (or, were there no
    // lock, once B reached the rail itself, which the assertions below then refuse).
    const watcher = new pg.Client({ connectionString: url });
    await watcher.connect();
    let nodeBRun: Promise<unknown> | undefined;
    railA.beforeCall = async () => {
      if (nodeBRun) return;
      nodeBRun = nodeB.execute(contract);
      await until("node B waits for the contract lock", async () => {
        const { rows } = await watcher.query<{ n: string }>("SELECT count(*)::text AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
        return rows[0]?.n === "1" || railB.calls.length > 0;
      });
    };
    try {
      const afterA = await nodeA.execute(contract);
      const afterB = (await nodeBRun) as typeof afterA;
      expect(afterA.status).toBe(ContractStatus.ACTIVE);
      expect(afterB.status).toBe(ContractStatus.ACTIVE);
      expect(afterB.payments).toEqual(afterA.payments);
      expect(afterB.holds).toEqual(afterA.holds);
    } finally {
      await watcher.end();
      nodeA.close();
      nodeB.close();
    }

    expect(railA.calls.map((c) => [c.method, c.request?.lineItemId])).toEqual([
      ["pay", "callout"],
      ["hold", "boiler"],
    ]);
    expect(railB.calls).toEqual([]);
    const stored = (await storeB.getContract(contract.id))!;
    expect(stored.payments.map((p) => [p.lineItemId, p.status])).toEqual([["callout", PaymentStatus.SUCCEEDED]]);
    expect(stored.holds.map((h) => [h.lineItemId, h.status])).toEqual([["boiler", EscrowHoldStatus.HELD]]);
    expect(await storeB.getBalances(PROVIDER)).toMatchObject([{ currency: "GBP", receivedMinor: 6_000n }]);
    expect(await storeB.getBalances(CLIENT)).toMatchObject([{ currency: "GBP", availableMinor: -186_000n, heldMinor: 180_000n }]);
    expect(await ledgerTotal(storeB, "GBP")).toBe(0n);
  });

  it("captures a milestone once when its two confirmations (each clicked twice) land on two nodes at once", async () => {
    const storeA = await nodeStore();
    const storeB = await nodeStore();
    for (const id of [CLIENT, PROVIDER]) await storeA.createUser({ id, createdAtMs: 1 });
    const railA = createScriptedRail(createLedgerRail(storeA));
    const railB = createScriptedRail(createLedgerRail(storeB));
    const executor = createContractExecutor({ store: storeA, rail: railA, onEvent: () => {}, lock: storeA.contractLock });
    const contract = await executor.execute(await signedContract(storeA, items()));
    executor.close();
    const milestoneId = contract.milestones[0]!.id;
    const nodeA = createMilestoneService({ store: storeA, rail: railA, onEvent: () => {}, lock: storeA.contractLock });
    const nodeB = createMilestoneService({ store: storeB, rail: railB, onEvent: () => {}, lock: storeB.contractLock });

    // With only a lock inside each node (as before PostgreSQL), the nodes read the milestone at once
    // and both capture (tried: two capture calls); with none, a confirmation is lost instead.
    await Promise.all([
      nodeA.confirm(PROVIDER, contract.id, milestoneId),
      nodeB.confirm(CLIENT, contract.id, milestoneId),
      nodeA.confirm(CLIENT, contract.id, milestoneId),
      nodeB.confirm(PROVIDER, contract.id, milestoneId),
    ]);

    const captures = [...railA.calls, ...railB.calls].filter((c) => c.method === "capture");
    expect(captures).toHaveLength(1);
    const done = (await storeB.getContract(contract.id))!;
    expect(done.milestones[0]).toMatchObject({ status: MilestoneStatus.COMPLETED, providerConfirmed: true, clientConfirmed: true, capturedMinor: 180_000n });
    expect(done.holds[0]!.status).toBe(EscrowHoldStatus.CAPTURED);
    expect(await storeB.getBalances(PROVIDER)).toMatchObject([{ currency: "GBP", receivedMinor: 186_000n }]);
    expect(await ledgerTotal(storeB, "GBP")).toBe(0n);
  });

  it("two server processes started together on one database both resume the same signed contract: one ledger movement per item", { timeout: 90_000 }, async () => {
    const seed = await nodeStore();
    for (const id of [CLIENT, PROVIDER]) await seed.createUser({ id, createdAtMs: 1 });
    // Signed by both and EXECUTING: what a node that died mid-execution leaves for start-up recovery.
    const contract = await signedContract(seed, items());

    // Two processes: nothing in memory is shared, only PostgreSQL. Each gets its own (unused) DATA_DIR.
    const dataDirs = await Promise.all([0, 1].map(() => mkdtemp(path.join(os.tmpdir(), "handshake-race-"))));
    folders.push(...dataDirs);
    nodes.push(...(await Promise.all(dataDirs.map((dir) => startChildServer({ DATABASE_URL: url, DATA_DIR: dir, WEB_ROOT: dir })))));
    await until("the contract is carried out", async () => (await seed.getContract(contract.id))?.status === ContractStatus.ACTIVE);

    const done = (await seed.getContract(contract.id))!;
    expect(done.payments.map((p) => [p.lineItemId, p.status])).toEqual([["callout", PaymentStatus.SUCCEEDED]]);
    expect(done.holds.map((h) => [h.lineItemId, h.status])).toEqual([["boiler", EscrowHoldStatus.HELD]]);
    const watcher = new pg.Client({ connectionString: url });
    await watcher.connect();
    try {
      const { rows } = await watcher.query<{ memo: string; legs: string }>(
        "SELECT t.memo, count(e.leg_index)::text AS legs FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id GROUP BY t.id, t.memo ORDER BY t.at_ms",
      );
      // Two movements in all (the call-out paid, the boiler held), whichever node made them.
      expect(rows).toHaveLength(2);
    } finally {
      await watcher.end();
    }
    expect(await seed.getBalances(PROVIDER)).toMatchObject([{ currency: "GBP", receivedMinor: 6_000n }]);
    expect(await seed.getBalances(CLIENT)).toMatchObject([{ currency: "GBP", availableMinor: -186_000n, heldMinor: 180_000n }]);
    expect(await ledgerTotal(seed, "GBP")).toBe(0n);

    // The rail was called once per item by the two processes together (each call is one "money
    // movement" log line): the one that got the contract's lock second found it carried out.
    // Stopped first, so every line they wrote has been read.
    for (const node of nodes) await node.stop("SIGTERM");
    const movements = nodes.flatMap((node) => node.logs.filter((line) => line.msg === "money movement").map((line) => [line.action, line.lineItemId]));
    expect(movements.sort()).toEqual([
      ["hold", "boiler"],
      ["pay", "callout"],
    ]);
  });
});
