import path from "node:path";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import Database from "better-sqlite3";
import { AgentProfileSchema } from "../../gen/handshake/v1/profile_pb.js";

/** The Stripe ids the server binds to a user (by onboarding or a saved card), never a request. */
export interface ServerStripeIds {
  stripeAccountId?: string;
  stripeCustomerId?: string;
  stripePaymentMethodId?: string;
  /** Defaults to true with a stripeAccountId: an account bound here has finished onboarding. */
  stripeChargesEnabled?: boolean;
  stripePayoutsEnabled?: boolean;
}

/**
 * Writes Stripe ids into the stored profile of `userId` in the SQLite database of `dataDir`, as
 * the server's own onboarding would: requests may not carry them. Works while a server runs on it.
 */
export function bindStripeIds(dataDir: string, userId: string, ids: ServerStripeIds): void {
  const db = new Database(path.join(dataDir, "handshake.db"), { timeout: 5_000 });
  try {
    const row = db.prepare("SELECT profile FROM profiles WHERE user_id = ?").get(userId) as { profile: Buffer } | undefined;
    if (!row) throw new Error(`no stored profile for ${userId}`);
    const onboarded = ids.stripeAccountId ? { stripeChargesEnabled: true, stripePayoutsEnabled: true } : {};
    const profile = { ...fromBinary(AgentProfileSchema, row.profile), ...onboarded, ...ids };
    db.prepare("UPDATE profiles SET profile = ? WHERE user_id = ?").run(Buffer.from(toBinary(AgentProfileSchema, profile)), userId);
  } finally {
    db.close();
  }
}
