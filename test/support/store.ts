import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  ContractSchema,
  ContractStatus,
  EscrowHoldSchema,
  EscrowHoldStatus,
  LineItemKind,
  MilestoneSchema,
  MilestoneStatus,
  PaymentRail,
  PaymentSchema,
  PaymentStatus,
  ProposalSchema,
  type Contract,
  type EscrowHold,
  type Payment,
} from "../../gen/handshake/v1/deal_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { sha256Hex } from "./hash.js";

/** A fresh temporary folder and a function that removes it. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "handshake-store-"));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * A drafted contract between `providerId` and `clientId`: one immediate item (£50) and one escrow
 * item in a £100–£200 range with its milestone, awaiting signatures.
 */
export function sampleContract(opts: { id: string; providerId: string; clientId: string; createdAtMs: bigint; roomId?: string }): Contract {
  const text = `Contract ${opts.id}: ${opts.providerId} fixes the boiler of ${opts.clientId}. Ünïcode £ ok.`;
  const terms = create(ProposalSchema, {
    id: `prop-${opts.id}`,
    summary: "Boiler repair",
    currency: "GBP",
    totalMinor: 25_000n,
    proposedByUserId: opts.providerId,
    providerUserId: opts.providerId,
    clientUserId: opts.clientId,
    createdAtMs: opts.createdAtMs - 1000n,
    lineItems: [
      { id: "item-1", description: "Call-out", kind: LineItemKind.IMMEDIATE, amountMinor: 5_000n, quantity: 1, unitPriceMinor: 5_000n },
      {
        id: "item-2",
        description: "Fit new boiler",
        kind: LineItemKind.ESCROW,
        amountMinor: 20_000n,
        range: { minMinor: 10_000n, maxMinor: 20_000n },
        quantity: 1,
        unitPriceMinor: 20_000n,
        milestone: { title: "Boiler fitted", deliverables: ["boiler", "flue"], verificationMethod: "photo", completionCriteria: "runs" },
      },
    ],
  });
  return create(ContractSchema, {
    id: opts.id,
    roomId: opts.roomId ?? "room-1",
    negotiationId: `neg-${opts.id}`,
    title: "Boiler repair",
    text,
    textSha256: sha256Hex(text),
    parties: [
      { userId: opts.providerId, displayName: "Pat Provider", role: PartyRole.PROVIDER },
      { userId: opts.clientId, displayName: "Cam Client", role: PartyRole.CLIENT },
    ],
    terms,
    status: ContractStatus.AWAITING_SIGNATURES,
    createdAtMs: opts.createdAtMs,
    milestones: [
      create(MilestoneSchema, {
        id: `ms-${opts.id}-2`,
        contractId: opts.id,
        lineItemId: "item-2",
        terms: terms.lineItems[1]?.milestone,
        status: MilestoneStatus.PENDING,
        minMinor: 10_000n,
        maxMinor: 20_000n,
        currency: "GBP",
        updatedAtMs: opts.createdAtMs,
      }),
    ],
  });
}

/** A PENDING ledger payment intent for the contract's immediate item. */
export function samplePayment(contract: Contract, id = `pay-${contract.id}-1`): Payment {
  return create(PaymentSchema, {
    id,
    contractId: contract.id,
    lineItemId: "item-1",
    payerUserId: contract.parties[1]?.userId ?? "",
    payeeUserId: contract.parties[0]?.userId ?? "",
    amountMinor: 5_000n,
    currency: "GBP",
    status: PaymentStatus.PENDING,
    idempotencyKey: `${contract.id}:item-1:pay`,
    rail: PaymentRail.LEDGER,
    updatedAtMs: contract.createdAtMs + 10n,
  });
}

/** A PENDING ledger hold intent for the contract's escrow item, at its maximum. */
export function sampleHold(contract: Contract, id = `hold-${contract.id}-2`): EscrowHold {
  return create(EscrowHoldSchema, {
    id,
    contractId: contract.id,
    lineItemId: "item-2",
    payerUserId: contract.parties[1]?.userId ?? "",
    payeeUserId: contract.parties[0]?.userId ?? "",
    amountMinor: 20_000n,
    currency: "GBP",
    status: EscrowHoldStatus.PENDING,
    idempotencyKey: `${contract.id}:item-2:hold`,
    rail: PaymentRail.LEDGER,
    updatedAtMs: contract.createdAtMs + 20n,
  });
}
