import { createHash, randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import {
  ContractSchema,
  ContractStatus,
  LineItemKind,
  MilestoneSchema,
  MilestoneStatus,
  PartySchema,
  SignatureSchema,
  type Contract,
  type Negotiation,
} from "../../gen/handshake/v1/deal_pb.js";
import { PartyRole, type AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import type { TranscriptEntry } from "../../gen/handshake/v1/transcript_pb.js";
import { StoreConflictError, type Store } from "../store/store.js";
import type { ContractDrafter } from "./contract-drafter.js";
import { draftFromTemplate } from "./contract-template.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError } from "../core/errors.js";
import type { StageMetrics } from "../core/metrics.js";

/** Lower-case hex SHA-256 of a contract text (UTF-8). The one definition of a contract's hash. */
export function contractHash(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** What drafting needs from the room. */
export interface DraftRequest {
  roomId: string;
  negotiation: Negotiation;
  profiles: ReadonlyMap<string, AgentProfile>;
  conversation: readonly TranscriptEntry[];
}

/** The outcome of a signature. */
export interface SignOutcome {
  contract: Contract;
  /** True when this signature was the last one needed. */
  fullySigned: boolean;
}

/** Drafts, signs and reads contracts; the rules of who may see and sign live here. */
export interface ContractDesk {
  draft(request: DraftRequest): Promise<Contract>;
  /** Signs as `userId`. `roomId`, when given, must be the contract's room (session tokens). */
  sign(userId: string, contractId: string, textSha256: string, roomId?: string): Promise<SignOutcome>;
  /**
   * Declines a drafted contract as `userId` (a party) with a reason of 1–500 characters, before
   * both have signed; nothing is paid. `roomId`, when given, must be the contract's room.
   */
  decline(userId: string, contractId: string, reason: string, roomId?: string): Promise<Contract>;
  /** The contract, if `userId` is a party. */
  get(userId: string, contractId: string): Promise<Contract>;
  list(userId: string, pageSize: number, cursor?: string): Promise<{ contracts: Contract[]; nextCursor?: string }>;
}

/** Options of the contract desk. */
export interface ContractDeskOptions {
  store: Store;
  drafter: ContractDrafter;
  log: Logger;
  now?: () => number;
  /** Where drafted → fully signed is timed; none recorded when absent. */
  metrics?: StageMetrics;
  /**
   * Why the payee cannot be paid on the configured rail yet (no Stripe account, onboarding not
   * finished), or undefined when they can; asked before drafting, so nobody signs what cannot be paid.
   */
  payeeNotReady?: (payeeUserId: string) => Promise<string | undefined>;
}

/** The payee cannot be paid yet, so no contract is drafted; the message says what they must do. */
export class PayeeNotReadyError extends FailedPreconditionError {}

const SHA256_HEX = /^[0-9a-f]{64}$/;
/** Longest reason for declining a contract, characters. */
export const MAX_DECLINE_REASON = 500;

/** Creates the contract desk. */
export function createContractDesk(options: ContractDeskOptions): ContractDesk {
  const { store, log } = options;
  const now = options.now ?? Date.now;

  async function getForParty(userId: string, contractId: string): Promise<Contract> {
    const contract = await store.getContract(contractId);
    if (!contract) throw new NotFoundError(`contract ${contractId} not found`);
    if (!contract.parties.some((p) => p.userId === userId)) {
      throw new PermissionDeniedError("you are not a party to this contract");
    }
    return contract;
  }

  return {
    async draft({ roomId, negotiation, profiles, conversation }) {
      const proposal = negotiation.currentProposal;
      if (!proposal) throw new FailedPreconditionError("negotiation has no agreed proposal");
      const notReady = await options.payeeNotReady?.(proposal.providerUserId);
      if (notReady) throw new PayeeNotReadyError(notReady);
      const parties = [
        { userId: proposal.providerUserId, role: PartyRole.PROVIDER },
        { userId: proposal.clientUserId, role: PartyRole.CLIENT },
      ].map(({ userId, role }) =>
        create(PartySchema, { userId, role, displayName: profiles.get(userId)?.displayName ?? userId }),
      );
      let drafted: { title: string; text: string };
      try {
        drafted = await options.drafter.draft({ proposal, parties, conversation });
        if (!drafted.text.trim()) throw new Error("drafter returned an empty text");
      } catch (err) {
        log.warn({ err, roomId }, "contract drafter failed; using the template");
        drafted = draftFromTemplate({ proposal, parties, conversation });
      }
      const id = `ctr_${randomUUID()}`;
      const createdAtMs = BigInt(now());
      const milestones = proposal.lineItems
        .filter((item) => item.kind === LineItemKind.ESCROW || item.kind === LineItemKind.CONDITIONAL)
        .map((item, i) =>
          create(MilestoneSchema, {
            id: `${id}_m${i + 1}`,
            contractId: id,
            lineItemId: item.id,
            terms: item.milestone ?? { title: item.description },
            status: MilestoneStatus.PENDING,
            minMinor: item.range?.minMinor ?? item.amountMinor,
            maxMinor: item.range?.maxMinor ?? item.amountMinor,
            currency: proposal.currency,
            updatedAtMs: createdAtMs,
          }),
        );
      const contract = create(ContractSchema, {
        id,
        roomId,
        negotiationId: negotiation.id,
        title: drafted.title,
        text: drafted.text,
        textSha256: contractHash(drafted.text),
        parties,
        terms: proposal,
        status: ContractStatus.AWAITING_SIGNATURES,
        createdAtMs,
        milestones,
      });
      await store.insertContract(contract);
      return contract;
    },

    async sign(userId, contractId, textSha256, roomId) {
      if (!SHA256_HEX.test(textSha256)) throw new InvalidArgumentError("text_sha256 must be 64 lower-case hex characters");
      const contract = await getForParty(userId, contractId);
      if (roomId !== undefined && contract.roomId !== roomId) {
        throw new PermissionDeniedError("this contract belongs to another room");
      }
      if (contract.status !== ContractStatus.AWAITING_SIGNATURES) {
        throw new FailedPreconditionError("contract is no longer awaiting signatures");
      }
      if (contract.signatures.some((s) => s.userId === userId)) {
        throw new FailedPreconditionError("you have already signed this contract");
      }
      if (textSha256 !== contract.textSha256) {
        throw new FailedPreconditionError("text_sha256 does not match the contract text; fetch the contract again and re-read it");
      }
      let signed: Contract;
      try {
        // The last signature moves the contract to EXECUTING in the same transaction (no stuck half).
        signed = await store.addSignature(
          contractId,
          create(SignatureSchema, { userId, textSha256, signedAtMs: BigInt(now()) }),
          { statusWhenFullySigned: ContractStatus.EXECUTING },
        );
      } catch (err) {
        if (err instanceof StoreConflictError) throw new FailedPreconditionError("you have already signed this contract");
        throw err;
      }
      const fullySigned = signed.parties.every((p) => signed.signatures.some((s) => s.userId === p.userId));
      // Wall-clock from the stored draft time, so a signature after a restart is timed too.
      if (fullySigned) options.metrics?.draftedToSigned(Math.max(0, now() - Number(signed.createdAtMs)) / 1000);
      return { contract: signed, fullySigned };
    },

    async decline(userId, contractId, reason, roomId) {
      const why = reason.trim();
      if (why.length < 1 || [...why].length > MAX_DECLINE_REASON) {
        throw new InvalidArgumentError(`reason must be 1–${MAX_DECLINE_REASON} characters`);
      }
      const contract = await getForParty(userId, contractId);
      if (roomId !== undefined && contract.roomId !== roomId) {
        throw new PermissionDeniedError("this contract belongs to another room");
      }
      if (contract.status !== ContractStatus.AWAITING_SIGNATURES) {
        throw new FailedPreconditionError("contract is no longer awaiting signatures, so it cannot be declined");
      }
      try {
        return await store.declineContract(contractId, { userId, reason: why, atMs: now() });
      } catch (err) {
        // Both signed (or it was declined) between the read above and the write.
        if (err instanceof StoreConflictError) throw new FailedPreconditionError("contract is no longer awaiting signatures, so it cannot be declined");
        throw err;
      }
    },

    get: getForParty,

    list: (userId, pageSize, cursor) =>
      store.listContractsForUser(userId, { limit: pageSize, ...(cursor ? { cursor } : {}) }),
  };
}
