import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  ContractSchema,
  ContractStatus,
  LineItemKind,
  LineItemSchema,
  MilestoneSchema,
  MilestoneStatus,
  type Contract,
  type LineItem,
} from "../../gen/handshake/v1/deal_pb.js";
import { AgentProfileSchema, PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import type { ExecutionEvent } from "../../src/settlement/execution.js";
import { createSqliteStore } from "../../src/store/sqlite-store.js";
import type { Store } from "../../src/store/store.js";
import { idempotencyKey } from "../../src/settlement/idempotency.js";
import { sha256Hex } from "./hash.js";

/** The paying side of every test contract. */
export const CLIENT = "u_client";
/** The paid side of every test contract. */
export const PROVIDER = "u_provider";

/** A throwaway SQLite store (or `opened`, any empty store) with both users and their profiles (Stripe ids included). */
export async function openStore(
  profiles: { client?: MessageInitShape<typeof AgentProfileSchema>; provider?: MessageInitShape<typeof AgentProfileSchema> } = {},
  opened?: Store,
): Promise<Store> {
  const store = opened ?? (await createSqliteStore({ path: ":memory:" }));
  await store.createUser({ id: CLIENT, createdAtMs: 1 });
  await store.createUser({ id: PROVIDER, createdAtMs: 1 });
  await store.saveProfile(
    CLIENT,
    create(AgentProfileSchema, {
      displayName: "Alex",
      role: PartyRole.CLIENT,
      currency: "GBP",
      stripeCustomerId: "cus_alex",
      stripePaymentMethodId: "pm_card_visa",
      ...profiles.client,
    }),
  );
  await store.saveProfile(
    PROVIDER,
    create(AgentProfileSchema, { displayName: "Sam", role: PartyRole.PROVIDER, currency: "GBP", stripeAccountId: "acct_sam", ...profiles.provider }),
  );
  return store;
}

/** A line item; `kind` and `amountMinor` are the usual knobs. */
export function item(init: MessageInitShape<typeof LineItemSchema>): LineItem {
  return create(LineItemSchema, { quantity: 1, ...init });
}

let contractSeq = 0;

/**
 * A contract both parties have signed (status EXECUTING, as signing leaves it), with a milestone
 * per escrow or conditional item, inserted into the store.
 */
export async function signedContract(
  store: Store,
  lineItems: LineItem[],
  init: { id?: string; currency?: string; signers?: string[] } = {},
): Promise<Contract> {
  const id = init.id ?? `ctr_test_${++contractSeq}`;
  const currency = init.currency ?? "GBP";
  const text = `Contract ${id}: ${lineItems.map((i) => i.description).join("; ")}`;
  const sha = sha256Hex(text);
  const contract = create(ContractSchema, {
    id,
    roomId: "room_1",
    negotiationId: "neg_1",
    title: "Boiler repair",
    text,
    textSha256: sha,
    parties: [
      { userId: PROVIDER, displayName: "Sam", role: PartyRole.PROVIDER },
      { userId: CLIENT, displayName: "Alex", role: PartyRole.CLIENT },
    ],
    terms: {
      id: "prop_1",
      summary: "Boiler repair",
      currency,
      totalMinor: lineItems.reduce((sum, i) => sum + i.amountMinor, 0n),
      lineItems,
      providerUserId: PROVIDER,
      clientUserId: CLIENT,
    },
    signatures: (init.signers ?? [PROVIDER, CLIENT]).map((userId, n) => ({ userId, textSha256: sha, signedAtMs: BigInt(10 + n) })),
    status: ContractStatus.EXECUTING,
    createdAtMs: 5n,
    milestones: lineItems
      .filter((i) => i.kind === LineItemKind.ESCROW || i.kind === LineItemKind.CONDITIONAL)
      .map((i, n) =>
        create(MilestoneSchema, {
          id: `${id}_m${n + 1}`,
          contractId: id,
          lineItemId: i.id,
          terms: i.milestone ?? { title: i.description },
          status: MilestoneStatus.PENDING,
          minMinor: i.range?.minMinor ?? i.amountMinor,
          maxMinor: i.range?.maxMinor ?? i.amountMinor,
          currency,
        }),
      ),
  });
  await store.insertContract(contract);
  return contract;
}

/** Collects execution events; `next` resolves at the first later event matching a predicate. */
export function eventLog(): {
  events: ExecutionEvent[];
  listener: (e: ExecutionEvent) => void;
  next: (match: (e: ExecutionEvent) => boolean) => Promise<ExecutionEvent>;
} {
  const events: ExecutionEvent[] = [];
  const waiters: { match: (e: ExecutionEvent) => boolean; resolve: (e: ExecutionEvent) => void }[] = [];
  return {
    events,
    listener: (e) => {
      events.push(e);
      for (const w of [...waiters]) {
        if (w.match(e)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(e);
        }
      }
    },
    next: (match) => new Promise((resolve) => waiters.push({ match, resolve })),
  };
}

/** Sums every user's ledger accounts plus funding per currency: a balanced ledger sums to zero. */
export async function ledgerTotal(store: Store, currency: string, users: string[] = [CLIENT, PROVIDER]): Promise<bigint> {
  let total = await store.getLedgerBalance("external:funding", currency);
  for (const u of users) {
    for (const suffix of ["available", "held", "received"]) total += await store.getLedgerBalance(`user:${u}:${suffix}`, currency);
  }
  return total;
}

/** The key of one settlement attempt of `amountMinor` (its attempt id is random): a pattern to match. */
export function attemptKeyPattern(contractId: string, lineItemId: string, action: "capture" | "release", amountMinor: bigint): RegExp {
  const base = idempotencyKey(contractId, lineItemId, action).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`^${base}:${amountMinor}:a[0-9a-f]{12}$`);
}
