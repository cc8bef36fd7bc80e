import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import Database from "better-sqlite3";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ContractStatus, PaymentStatus } from "../../gen/handshake/v1/deal_pb.js";
import { AgentProfileSchema } from "../../gen/handshake/v1/profile_pb.js";
import { startFakeStripe } from "../../src/payments/testing/fake-stripe-server.js";
import { clients, startTestApp, testProfile } from "../support/app.js";
import { sha256Hex } from "../support/hash.js";
import { draftedContract, joinRoom, roofDeal } from "../support/restart.js";
import { bindStripeIds } from "../support/stripe-ids.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function storedProfile(dataDir: string, userId: string) {
  const db = new Database(path.join(dataDir, "handshake.db"), { readonly: true });
  try {
    const row = db.prepare("SELECT profile FROM profiles WHERE user_id = ?").get(userId) as { profile: Buffer };
    return fromBinary(AgentProfileSchema, row.profile);
  } finally {
    db.close();
  }
}

async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

describe("Stripe ids belong to the server, never to a request", () => {
  it("a payer naming another user's customer or payment method is refused, and nothing is charged", async () => {
    const fake = await startFakeStripe();
    cleanups.push(() => fake.close());
    const env = {
      PAYMENT_RAIL: "stripe",
      STRIPE_SECRET_KEY: "sk_test_x",
      STRIPE_API_BASE: fake.url,
      NEGOTIATION_ROUND_TIMEOUT_MS: "20000",
      NEGOTIATION_TOTAL_TIMEOUT_MS: "60000",
    };
    const app = await startTestApp(env);
    cleanups.push(() => app.close());

    // The victim's card, bound to them by the server.
    const victim = await joinRoom(app.baseUrl, "ids-victim", { ...roofDeal.client, displayName: "Vic" });
    cleanups.push(() => victim.panel.stop());
    bindStripeIds(app.dataDir, victim.userId, { stripeCustomerId: "cus_victim", stripePaymentMethodId: "pm_victim_card" });

    // Naming them at join or later is refused, with the field named.
    const anonymous = clients(app.baseUrl).room;
    const atJoin = await refusal(anonymous.joinRoom({ roomId: "ids-deal", profile: testProfile({ ...roofDeal.client, stripePaymentMethodId: "pm_victim_card" }) }));
    expect(atJoin.code).toBe(Code.InvalidArgument);
    expect(atJoin.rawMessage).toContain("profile.stripe_payment_method_id");
    expect(atJoin.rawMessage).toContain("Stripe ids are created by the server");

    const provider = await joinRoom(app.baseUrl, "ids-deal", roofDeal.provider);
    const payer = await joinRoom(app.baseUrl, "ids-deal", roofDeal.client);
    cleanups.push(() => provider.panel.stop(), () => payer.panel.stop());
    bindStripeIds(app.dataDir, provider.userId, { stripeAccountId: "acct_rita" });
    for (const [field, init] of [
      ["profile.stripe_customer_id", { stripeCustomerId: "cus_victim" }],
      ["profile.stripe_payment_method_id", { stripePaymentMethodId: "pm_victim_card" }],
      ["profile.stripe_account_id", { stripeAccountId: "acct_rita" }],
    ] as const) {
      const err = await refusal(payer.room.setProfile({ profile: testProfile({ ...roofDeal.client, ...init }) }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain(field);
    }

    // A profile change keeps what the server bound: the victim still pays with their own card.
    await victim.room.setProfile({ profile: testProfile({ ...roofDeal.client, displayName: "Victor" }) });
    expect(storedProfile(app.dataDir, victim.userId)).toMatchObject({ displayName: "Victor", stripeCustomerId: "cus_victim", stripePaymentMethodId: "pm_victim_card" });
    expect(storedProfile(app.dataDir, payer.userId)).toMatchObject({ stripeCustomerId: "", stripePaymentMethodId: "" });

    // The deal goes ahead: the payer has no card of their own, so their payment fails and nobody is charged.
    await roofDeal.talk(provider, payer);
    const drafted = await draftedContract(provider);
    await provider.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
    await payer.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
    await expect
      .poll(async () => (await payer.contracts.getContract({ contractId: drafted.id })).contract!.status, { timeout: 15_000 })
      .toBe(ContractStatus.PAYMENT_FAILED);
    const contract = (await payer.contracts.getContract({ contractId: drafted.id })).contract!;
    expect(contract.payments.every((p) => p.status === PaymentStatus.FAILED)).toBe(true);
    expect(fake.created()).toBe(0);
    expect(fake.requests.some((r) => /cus_victim|pm_victim_card/.test(r.rawBody))).toBe(false);
  }, 60_000);
});
