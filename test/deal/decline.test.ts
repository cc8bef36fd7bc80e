import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ContractStatus } from "../../gen/handshake/v1/deal_pb.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError } from "../../src/core/errors.js";
import { silentLogger } from "../../src/core/log.js";
import { createContractDesk, type ContractDesk } from "../../src/deal/contracts.js";
import { createTemplateDrafter } from "../../src/deal/contract-template.js";
import { createSqliteStore } from "../../src/store/sqlite-store.js";
import type { Store } from "../../src/store/store.js";
import { sampleContract } from "../support/store.js";

const PAT = "pat";
const CAM = "cam";
let store: Store;
let desk: ContractDesk;

beforeEach(async () => {
  store = await createSqliteStore({ path: ":memory:", log: silentLogger });
  for (const id of [PAT, CAM, "eve"]) await store.createUser({ id, createdAtMs: 1 });
  desk = createContractDesk({ store, drafter: createTemplateDrafter(), log: silentLogger, now: () => 1_700_000_000_000 });
});
afterEach(async () => {
  await store.close();
});

async function drafted(id = "ctr-1") {
  const contract = sampleContract({ id, providerId: PAT, clientId: CAM, createdAtMs: 1_000n });
  await store.insertContract(contract);
  return contract;
}

describe("declining a contract", () => {
  it("records who declined and why, durably, and refuses signatures after it", async () => {
    const contract = await drafted();
    await desk.sign(PAT, contract.id, contract.textSha256);
    const declined = await desk.decline(CAM, contract.id, "  The start date is wrong.  ", "room-1");
    expect(declined).toMatchObject({ status: ContractStatus.DECLINED, declinedReason: "The start date is wrong.", declinedByUserId: CAM });
    const stored = await store.getContract(contract.id);
    expect(stored).toMatchObject({ status: ContractStatus.DECLINED, declinedReason: "The start date is wrong.", declinedByUserId: CAM });
    expect(stored?.signatures.map((s) => s.userId)).toEqual([PAT]);
    await expect(desk.sign(CAM, contract.id, contract.textSha256)).rejects.toThrow(FailedPreconditionError);
    await expect(desk.decline(PAT, contract.id, "Me too")).rejects.toThrow(FailedPreconditionError);
  });

  it.each([
    ["", InvalidArgumentError],
    ["   ", InvalidArgumentError],
    ["x".repeat(501), InvalidArgumentError],
  ])("refuses the reason %j", async (reason, error) => {
    const contract = await drafted();
    await expect(desk.decline(CAM, contract.id, reason)).rejects.toThrow(error);
    expect((await store.getContract(contract.id))?.status).toBe(ContractStatus.AWAITING_SIGNATURES);
  });

  it("takes a reason of exactly 500 characters", async () => {
    const contract = await drafted();
    const declined = await desk.decline(PAT, contract.id, "é".repeat(500));
    expect(declined.declinedReason).toHaveLength(500);
  });

  it("only a party, only in the contract's room, only before both signed", async () => {
    const contract = await drafted();
    await expect(desk.decline("eve", contract.id, "Not mine")).rejects.toThrow(PermissionDeniedError);
    await expect(desk.decline(CAM, "ctr-unknown", "Gone")).rejects.toThrow(NotFoundError);
    await expect(desk.decline(CAM, contract.id, "Wrong room", "room-2")).rejects.toThrow(PermissionDeniedError);
    await desk.sign(PAT, contract.id, contract.textSha256);
    await desk.sign(CAM, contract.id, contract.textSha256);
    await expect(desk.decline(CAM, contract.id, "Too late")).rejects.toThrow(FailedPreconditionError);
    expect((await store.getContract(contract.id))?.status).toBe(ContractStatus.EXECUTING);
  });

  it("the store refuses a decline once every party has signed, whatever the status says", async () => {
    const contract = await drafted();
    await store.addSignature(contract.id, { $typeName: "handshake.v1.Signature", userId: PAT, textSha256: contract.textSha256, signedAtMs: 1n });
    await store.addSignature(contract.id, { $typeName: "handshake.v1.Signature", userId: CAM, textSha256: contract.textSha256, signedAtMs: 2n });
    await expect(store.declineContract(contract.id, { userId: CAM, reason: "Late", atMs: 3 })).rejects.toThrow(/signed by every party/);
  });
});
