import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ContractStatus } from "../../gen/handshake/v1/deal_pb.js";
import { PanelEventSchema } from "../../gen/handshake/v1/events_pb.js";
import { silentLogger } from "../../src/core/log.js";
import { createLocalBus } from "../../src/events/bus.js";
import { createLocalDirectory } from "../../src/room/placement.js";
import { RoomManager, type RoomPlacement } from "../../src/room/room-manager.js";
import { createSqliteStore } from "../../src/store/sqlite-store.js";
import type { Store } from "../../src/store/store.js";
import { clientProfile, createFakeRoomStages, providerProfile, testRoomSettings, type FakeRoomStages } from "../support/room-stages.js";
import { sampleContract, tempDir } from "../support/store.js";

/**
 * A room whose node died while its contract's payments ran is rebuilt on a cluster node with
 * those payments running again (execution is idempotent: what was paid stays paid once); one
 * that was only waiting for signatures is left waiting.
 */

const SAM = "u_sam";
const ALEX = "u_alex";
const ROOM = "room-executing";

let fakes: FakeRoomStages;
let store: Store;
let cleanup: () => Promise<void>;
const managers: RoomManager[] = [];

beforeEach(async () => {
  const dir = await tempDir();
  cleanup = dir.cleanup;
  store = await createSqliteStore({ path: `${dir.dir}/handshake.db`, log: silentLogger });
  fakes = createFakeRoomStages();
});
afterEach(async () => {
  for (const manager of managers.splice(0)) await manager.shutdown(new Error("test over"));
  await store.close();
  await cleanup();
});

/** A cluster node's room manager (it rebuilds rooms on a room call) on the shared store. */
function clusterNode(nodeId: string): RoomManager {
  const placement: RoomPlacement = { directory: createLocalDirectory(nodeId), bus: createLocalBus(), rebuildsOnCall: true };
  const settings = { ...testRoomSettings(), maxRooms: 3, leaveGraceMs: 30_000, idleRoomMs: 600_000 };
  const manager = new RoomManager(fakes.stages, store, settings, silentLogger, Date.now, placement);
  managers.push(manager);
  return manager;
}

/** What the dead node left in the store: the pair, their profiles, and the contract in its log with `status`. */
async function leftBehind(status: ContractStatus): Promise<string> {
  await store.createUserWithProfile({ id: SAM, createdAtMs: 1 }, providerProfile());
  await store.createUserWithProfile({ id: ALEX, createdAtMs: 1 }, clientProfile());
  await store.startRoom({ roomId: ROOM, inviteCode: "", historyAfterSeq: 0n, atMs: 1 });
  await store.addRoomMember(ROOM, SAM, 1);
  await store.addRoomMember(ROOM, ALEX, 1);
  const contract = sampleContract({ id: "ctr-executing", providerId: SAM, clientId: ALEX, createdAtMs: 1_000n, roomId: ROOM });
  await store.insertContract(contract);
  await store.setContractStatus(contract.id, status);
  const event = create(PanelEventSchema, { seq: 1n, atMs: 1n, roomId: ROOM, event: { case: "contract", value: contract } });
  await store.recordRoomEvent(ROOM, event, { keep: 100 });
  return contract.id;
}

describe("a rebuilt room's contract", () => {
  it("is paid on when its node died while paying", async () => {
    const contractId = await leftBehind(ContractStatus.EXECUTING);
    await clusterNode("node-heir").host(ROOM, SAM);
    await expect.poll(() => fakes.executed.map((c) => c.id)).toEqual([contractId]);
    expect(fakes.executed[0]?.status).toBe(ContractStatus.EXECUTING);
  });

  it("is left alone while it awaits signatures", async () => {
    await leftBehind(ContractStatus.AWAITING_SIGNATURES);
    const manager = clusterNode("node-heir");
    await manager.host(ROOM, SAM);
    expect(manager.get(ROOM)?.deal().contract?.status).toBe(ContractStatus.AWAITING_SIGNATURES);
    expect(fakes.executed).toEqual([]);
  });
});
