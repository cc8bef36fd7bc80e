import { readFile } from "node:fs/promises";
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import {
  AgentProfileSchema,
  EscrowPreference,
  NegotiationStyle,
  PartyRole,
  RateSchema,
  RateUnit,
  type AgentProfile,
} from "../../gen/handshake/v1/profile_pb.js";
import { parseMoney } from "../shared/format.js";

/** Profile settings as given on the command line; every field is optional and overrides the file. */
export interface ProfileFlags {
  /** Path of a JSON AgentProfile (proto JSON names, e.g. `{"displayName": "Sam", "role": "PARTY_ROLE_PROVIDER"}`). */
  profile?: string;
  name?: string;
  role?: string;
  trade?: string;
  currency?: string;
  /** Decimal amount in the profile's currency, e.g. "250" or "249.99". */
  maxAutoApprove?: string;
  style?: string;
  escrow?: string;
  /** Decimal amount in the profile's currency. */
  escrowThreshold?: string;
  experience?: string;
  instructions?: string;
  /** Each "description:amount[:unit]", e.g. "call-out:80:job" or "labour:45:hour". */
  rates?: string[];
}

/** Thrown for a profile flag or file that cannot be used; the message names it. */
export class ProfileError extends Error {
  override readonly name = "ProfileError";
}

const ROLES: Record<string, PartyRole> = { provider: PartyRole.PROVIDER, client: PartyRole.CLIENT, unspecified: PartyRole.UNSPECIFIED };
const STYLES: Record<string, NegotiationStyle> = {
  aggressive: NegotiationStyle.AGGRESSIVE,
  balanced: NegotiationStyle.BALANCED,
  conservative: NegotiationStyle.CONSERVATIVE,
};
const ESCROW: Record<string, EscrowPreference> = {
  never: EscrowPreference.NEVER,
  "above-threshold": EscrowPreference.ABOVE_THRESHOLD,
  always: EscrowPreference.ALWAYS,
};
const UNITS: Record<string, RateUnit> = { hour: RateUnit.HOUR, day: RateUnit.DAY, job: RateUnit.JOB, item: RateUnit.ITEM };

function pick<T>(table: Record<string, T>, value: string, flag: string): T {
  const found = table[value.toLowerCase()];
  if (found === undefined) throw new ProfileError(`--${flag} must be one of ${Object.keys(table).join(", ")} (got "${value}")`);
  return found;
}

function amount(value: string, currency: string, flag: string): bigint {
  try {
    return parseMoney(value, currency);
  } catch (err) {
    throw new ProfileError(`--${flag}: ${(err as Error).message}`);
  }
}

/** Builds an AgentProfile from a profile file (if any) and flags; flags win. */
export async function buildProfile(flags: ProfileFlags): Promise<AgentProfile> {
  let profile = create(AgentProfileSchema, {});
  if (flags.profile) {
    let json: JsonValue;
    try {
      json = JSON.parse(await readFile(flags.profile, "utf8")) as JsonValue;
    } catch (err) {
      throw new ProfileError(`cannot read profile ${flags.profile}: ${(err as Error).message}`);
    }
    try {
      profile = fromJson(AgentProfileSchema, json);
    } catch (err) {
      throw new ProfileError(`profile ${flags.profile} is not an AgentProfile: ${(err as Error).message}`);
    }
  }
  if (flags.name !== undefined) profile.displayName = flags.name;
  if (flags.role !== undefined) profile.role = pick(ROLES, flags.role, "role");
  if (flags.trade !== undefined) profile.trade = flags.trade;
  if (flags.currency !== undefined) profile.currency = flags.currency.toUpperCase();
  if (profile.currency === "") profile.currency = "GBP";
  if (flags.maxAutoApprove !== undefined) profile.maxAutoApproveMinor = amount(flags.maxAutoApprove, profile.currency, "max-auto-approve");
  if (flags.style !== undefined) profile.style = pick(STYLES, flags.style, "style");
  if (flags.escrow !== undefined) profile.escrowPreference = pick(ESCROW, flags.escrow, "escrow");
  if (flags.escrowThreshold !== undefined) profile.escrowThresholdMinor = amount(flags.escrowThreshold, profile.currency, "escrow-threshold");
  if (flags.experience !== undefined) {
    const years = Number(flags.experience);
    if (!Number.isInteger(years) || years < 0 || years > 80) throw new ProfileError("--experience must be a whole number of years from 0 to 80");
    profile.experienceYears = years;
  }
  if (flags.instructions !== undefined) profile.customInstructions = flags.instructions;
  for (const spec of flags.rates ?? []) {
    const [description, value, unit] = spec.split(":");
    if (!description || !value) throw new ProfileError(`--rate must look like "call-out:80:job" (got "${spec}")`);
    profile.rates.push(
      create(RateSchema, {
        description,
        amountMinor: amount(value, profile.currency, "rate"),
        unit: unit ? pick(UNITS, unit, "rate unit") : RateUnit.JOB,
      }),
    );
  }
  if (profile.displayName.trim() === "") throw new ProfileError("a display name is needed: --name or displayName in --profile");
  return profile;
}
