import { randomBytes } from "node:crypto";
import type { AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import { EscrowPreference, NegotiationStyle, PartyRole, RateUnit } from "../../gen/handshake/v1/profile_pb.js";
import { AudioControl } from "../../gen/handshake/v1/audio_pb.js";
import { InvalidArgumentError } from "../core/errors.js";
import { isSupportedCurrency } from "../core/money.js";

/**
 * Validators for request fields at the boundary, one per message kind. Each throws
 * InvalidFieldError naming the field; none changes anything.
 */

/**
 * A request field that is wrong: an InvalidArgumentError that also carries the field's path in
 * the request (`profile.rates[0].amount_minor`), which errors.ts sends as a BadRequest field
 * violation, and a stable reason for it.
 */
export class InvalidFieldError extends InvalidArgumentError {
  constructor(
    readonly field: string,
    message: string,
    readonly reason = "INVALID_FIELD",
  ) {
    super(message);
  }
}

const ROOM_ID = /^[A-Za-z0-9_-]{1,64}$/;
const CONTRACT_ID = /^ctr_[0-9a-f-]{36}$/;
const MILESTONE_ID = /^ctr_[0-9a-f-]{36}_m[0-9]{1,3}$/;

/** A room id: 1–64 of A–Z a–z 0–9 - _. */
export function checkRoomId(roomId: string, field = "room_id"): string {
  if (!ROOM_ID.test(roomId)) throw new InvalidFieldError(field, `${field} must be 1–64 characters of A–Z, a–z, 0–9, "-" or "_"`);
  return roomId;
}

/** A new room's id: 128 random bits (22 URL-safe characters), so nobody can guess their way in. */
export function newRoomId(): string {
  return `rm_${randomBytes(16).toString("base64url")}`;
}

/** A URL path with its percent-encoding decoded, or undefined when that encoding is malformed (`/%`). */
export function decodedPath(pathname: string): string | undefined {
  try {
    return decodeURIComponent(pathname);
  } catch {
    return undefined;
  }
}

/** A contract id as the server issues them. */
export function checkContractId(id: string): string {
  if (!CONTRACT_ID.test(id)) throw new InvalidFieldError("contract_id", "contract_id is not a contract id");
  return id;
}

/** A milestone id as the server issues them. */
export function checkMilestoneId(id: string): string {
  if (!MILESTONE_ID.test(id)) throw new InvalidFieldError("milestone_id", "milestone_id is not a milestone id");
  return id;
}

/** An invite code: empty, or 4–64 printable characters. */
export function checkInviteCode(code: string): string {
  if (code !== "" && !/^[\x21-\x7e]{4,64}$/.test(code)) throw new InvalidFieldError("invite_code", "invite_code must be 4–64 printable characters without spaces");
  return code;
}

/** A trigger keyword: 1–50 characters with a letter or digit, on one line. */
export function checkKeyword(keyword: string): string {
  checkLine(keyword, "keyword");
  const trimmed = keyword.trim();
  if (trimmed.length < 1 || trimmed.length > 50 || !/[\p{L}\p{N}]/u.test(trimmed)) {
    throw new InvalidFieldError("keyword", "keyword must be 1–50 characters including a letter or digit");
  }
  return trimmed;
}

/** A positive amount in minor units, below the configured ceiling. */
export function checkAmount(amountMinor: bigint, ceilingMinor: bigint, field = "amount_minor"): bigint {
  if (amountMinor <= 0n) throw new InvalidFieldError(field, `${field} must be greater than 0`);
  if (amountMinor > ceilingMinor) throw new InvalidFieldError(field, `${field} must be at most ${ceilingMinor}`);
  return amountMinor;
}

/** An audio control value. */
export function checkControl(control: AudioControl): AudioControl {
  if (!(control in AudioControl) || control === AudioControl.UNSPECIFIED) throw new InvalidFieldError("control", "control must be MUTE, UNMUTE or FLUSH");
  return control;
}

/** Controls other than tab, line feed and carriage return (which multi-line texts may hold). */
const CONTROLS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;
/** Any control character, or a line or paragraph separator: what breaks a one-line text. */
const LINE_BREAKING = /[\p{Cc}\u2028\u2029]/u;
/** Bidi embeddings, overrides and isolates, which make text display in another order than it reads. */
const BIDI_OVERRIDES = /[\u202a-\u202e\u2066-\u2069]/;

/** A one-line text (a name, a trade, an item): no control characters, newlines or bidi overrides. */
function checkLine(value: string, field: string): void {
  if (LINE_BREAKING.test(value)) throw new InvalidFieldError(field, `${field} must be one line without control characters`);
  if (BIDI_OVERRIDES.test(value)) throw new InvalidFieldError(field, `${field} contains bidi override characters`);
}

function checkText(value: string, field: string, min: number, max: number, multiLine = false): void {
  if (value.length < min || value.length > max) throw new InvalidFieldError(field, `${field} must be ${min}–${max} characters`);
  if (!multiLine) return checkLine(value, field);
  if (CONTROLS.test(value)) throw new InvalidFieldError(field, `${field} contains control characters`);
  if (BIDI_OVERRIDES.test(value)) throw new InvalidFieldError(field, `${field} contains bidi override characters`);
}

function checkEnum(value: number, enumObject: object, field: string): void {
  if (!(value in enumObject)) throw new InvalidFieldError(field, `${field} has an unknown value ${value}`);
}

/** An agent profile, whole. Amounts are checked against the ceiling; the currency must be supported. */
export function checkProfile(profile: AgentProfile | undefined, ceilingMinor: bigint): AgentProfile {
  if (!profile) throw new InvalidFieldError("profile", "profile is required");
  checkText(profile.displayName.trim(), "profile.display_name", 1, 100);
  checkLine(profile.displayName, "profile.display_name");
  checkEnum(profile.role, PartyRole, "profile.role");
  checkText(profile.trade, "profile.trade", 0, 100);
  if (profile.experienceYears > 80) throw new InvalidFieldError("profile.experience_years", "profile.experience_years must be 0–80");
  if (profile.rates.length > 20) throw new InvalidFieldError("profile.rates", "profile.rates may hold at most 20 rates");
  profile.rates.forEach((rate, i) => {
    checkText(rate.description, `profile.rates[${i}].description`, 1, 200);
    checkAmount(rate.amountMinor, ceilingMinor, `profile.rates[${i}].amount_minor`);
    checkEnum(rate.unit, RateUnit, `profile.rates[${i}].unit`);
  });
  checkEnum(profile.style, NegotiationStyle, "profile.style");
  if (!isSupportedCurrency(profile.currency)) throw new InvalidFieldError("profile.currency", "profile.currency must be a supported ISO 4217 code such as GBP, EUR or USD");
  if (profile.maxAutoApproveMinor < 0n || profile.maxAutoApproveMinor > ceilingMinor) {
    throw new InvalidFieldError("profile.max_auto_approve_minor", `profile.max_auto_approve_minor must be 0–${ceilingMinor}`);
  }
  checkEnum(profile.escrowPreference, EscrowPreference, "profile.escrow_preference");
  if (profile.escrowThresholdMinor < 0n || profile.escrowThresholdMinor > ceilingMinor) {
    throw new InvalidFieldError("profile.escrow_threshold_minor", `profile.escrow_threshold_minor must be 0–${ceilingMinor}`);
  }
  checkText(profile.customInstructions, "profile.custom_instructions", 0, 4000, true);
  if (profile.contextDocuments.length > 10) throw new InvalidFieldError("profile.context_documents", "profile.context_documents may hold at most 10 documents");
  profile.contextDocuments.forEach((doc, i) => {
    checkText(doc.title, `profile.context_documents[${i}].title`, 1, 200);
    checkText(doc.text, `profile.context_documents[${i}].text`, 0, 20_000, true);
  });
  // Stripe customers, payment methods and connected accounts are created and bound to a user by
  // the server (DESIGN.md): a client naming one could have another person's card charged.
  const stripeIds: [string, string][] = [
    [profile.stripeAccountId, "profile.stripe_account_id"],
    [profile.stripeCustomerId, "profile.stripe_customer_id"],
    [profile.stripePaymentMethodId, "profile.stripe_payment_method_id"],
  ];
  for (const [value, field] of stripeIds) {
    if (value !== "") throw new InvalidFieldError(field, `${field} may not be set: Stripe ids are created by the server`);
  }
  // What Stripe says of the connected account is recorded by the server from Stripe, never claimed.
  if (profile.stripeChargesEnabled || profile.stripePayoutsEnabled) {
    throw new InvalidFieldError("profile.stripe_charges_enabled", "profile.stripe_charges_enabled and profile.stripe_payouts_enabled may not be set: the server records them from Stripe");
  }
  checkText(profile.monzoAccessToken, "profile.monzo_access_token", 0, 2000);
  profile.displayName = profile.displayName.trim();
  return profile;
}

/**
 * The profile to store for a request's (checked) profile: the Stripe ids the server bound to the
 * user earlier are kept, since a request can never carry them (see `checkProfile`).
 */
export function withServerStripeIds(profile: AgentProfile, stored: AgentProfile | undefined): AgentProfile {
  return {
    ...profile,
    stripeAccountId: stored?.stripeAccountId ?? "",
    stripeCustomerId: stored?.stripeCustomerId ?? "",
    stripePaymentMethodId: stored?.stripePaymentMethodId ?? "",
    stripeChargesEnabled: stored?.stripeChargesEnabled ?? false,
    stripePayoutsEnabled: stored?.stripePayoutsEnabled ?? false,
  };
}
