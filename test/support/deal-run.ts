import { PaymentStatus, type Contract } from "../../gen/handshake/v1/deal_pb.js";
import type { TestApp } from "./app.js";
import { sha256Hex } from "./hash.js";
import type { Person } from "./people.js";
import { driveDeal } from "./security.js";

/**
 * One whole deal on a running server (offline engines, ledger): talk, the drafted contract, both
 * signatures, and the payment's success on the client's panel. Panels are left open for the caller.
 */
export async function paidDeal(t: TestApp, roomId: string): Promise<{ provider: Person; client: Person; contract: Contract }> {
  const { provider, client, contract } = await driveDeal(t, roomId);
  const textSha256 = sha256Hex(contract.text);
  await provider.room.signContract({ contractId: contract.id, textSha256 });
  await client.room.signContract({ contractId: contract.id, textSha256 });
  await client.panel.waitFor((e) => e.event.case === "payment" && e.event.value.status === PaymentStatus.SUCCEEDED, "payment");
  return { provider, client, contract };
}
