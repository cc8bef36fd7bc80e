import type { Logger } from "pino";
import { ContractStatus } from "../../gen/handshake/v1/deal_pb.js";
import type { Store } from "../store/store.js";
import type { ContractExecutor } from "./execution.js";
import type { MilestoneService } from "./milestones.js";

/** What start-up recovery works with. */
export interface SettlementRecoveryOptions {
  store: Store;
  executor: ContractExecutor;
  milestones: MilestoneService;
  log: Logger;
}

/**
 * Start-up recovery of the money path, in order: (1) the saga is finished for every contract a
 * crash left mid-way (PENDING payments and holds, EXECUTING contracts, fully signed ones still
 * AWAITING_SIGNATURES); (2) every capture or release whose intent was recorded but not its outcome
 * is sent again with the same key; (3) every contract still in escrow is reconciled: HELD holds
 * against the rail, milestones against holds, the status against the items, and its holds
 * watched for expiry again. One broken contract is logged and never stops the others.
 */
export async function recoverSettlement(options: SettlementRecoveryOptions): Promise<void> {
  const { store, executor, milestones, log } = options;
  await executor.resumePending();
  const ids = new Set<string>((await store.listSettlementIntents()).map((i) => i.contractId));
  for (const status of [ContractStatus.ACTIVE, ContractStatus.PAYMENT_FAILED]) {
    for (const contract of await store.listContractsWithStatus(status)) ids.add(contract.id);
  }
  for (const id of ids) {
    try {
      await milestones.resumeInterrupted(id);
      await executor.reconcile(id, { checkRail: true });
    } catch (err) {
      log.error({ err, contractId: id }, "recovering a contract's settlement failed");
    }
  }
}
