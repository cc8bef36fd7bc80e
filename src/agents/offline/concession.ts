import { NegotiationStyle } from "../../../gen/handshake/v1/profile_pb.js";
import { minorDigits } from "../../core/money.js";

/**
 * Faratin, Sierra & Jennings (1998) polynomial time-dependent concession, the convention used
 * here (it matches Genius' TimeDependentAgent):
 *
 *   α(t) = κ + (1 − κ) · t^(1/β),   t ∈ [0, 1]
 *   provider (wants more):  offer(t) = reservation + (1 − α(t)) · (target − reservation)
 *   client   (wants less):  offer(t) = target + α(t) · (reservation − target)
 *
 * α(0) = κ (κ = 0: open at the target) and α(1) = 1 (the reservation at the deadline).
 * β < 1 is Boulware (holds, concedes late), β = 1 linear, β > 1 Conceder (moves early).
 * A Boulware agent at half time has conceded less than half: α(0.5) = 0.5^(1/β) < 0.5.
 *
 * Time: t = offersSoFar / (maxRounds − 1), where offersSoFar counts the offers already made in
 * the negotiation before the one being computed. The opening offer is at t = 0 and the last
 * offer the negotiation allows (number maxRounds) at t = 1, so each side reaches its reservation
 * by the deadline. (This is the brief's t = round/maxRounds with rounds counted from 0 and
 * rescaled so the final permitted offer lands on t = 1.)
 */

/** β per negotiation style: AGGRESSIVE 0.2 (Genius' Boulware e), BALANCED 1, CONSERVATIVE 2 (Genius' Conceder e). */
export const STYLE_BETA: Readonly<Record<NegotiationStyle, number>> = {
  [NegotiationStyle.UNSPECIFIED]: 1,
  [NegotiationStyle.AGGRESSIVE]: 0.2,
  [NegotiationStyle.BALANCED]: 1,
  [NegotiationStyle.CONSERVATIVE]: 2,
};

/** α(t) = κ + (1 − κ)·t^(1/β), with t clipped to [0, 1]. */
export function concessionAlpha(t: number, beta: number, kappa = 0): number {
  if (!(beta > 0)) throw new Error("beta must be positive");
  const time = Math.min(1, Math.max(0, t));
  return kappa + (1 - kappa) * Math.pow(time, 1 / beta);
}

/** Normalised time of the next offer: offersSoFar / (maxRounds − 1), clipped to [0, 1]. */
export function negotiationTime(offersSoFar: number, maxRounds: number): number {
  if (maxRounds <= 1) return 1;
  return Math.min(1, Math.max(0, offersSoFar / (maxRounds - 1)));
}

/** One side's bounds: where it opens and the worst it accepts. */
export interface Position {
  side: "provider" | "client";
  targetMinor: bigint;
  reservationMinor: bigint;
  currency: string;
}

/**
 * The offer at time t, in minor units, rounded to whole major units in the side's favour
 * (provider up, client down) and never past its own target or reservation.
 */
export function offerAt(position: Position, t: number, beta: number, kappa = 0): bigint {
  const alpha = concessionAlpha(t, beta, kappa);
  const { targetMinor: target, reservationMinor: reservation } = position;
  const gap = Number(target - reservation); // Amounts are far below 2^53: exact enough for a share.
  const step = 10n ** BigInt(minorDigits(position.currency));
  if (position.side === "provider") {
    // Provider: target ≥ reservation; concede down from target.
    const raw = reservation + BigInt(Math.ceil((1 - alpha) * gap));
    const rounded = ceilTo(raw, step);
    return clamp(rounded > target ? raw : rounded, reservation, target);
  }
  // Client: target ≤ reservation; concede up from target.
  const raw = target + BigInt(Math.floor(alpha * -gap));
  const rounded = floorTo(raw, step);
  return clamp(rounded < target ? raw : rounded, target, reservation);
}

/** Rounds up to a multiple of step (positive amounts). */
export function ceilTo(value: bigint, step: bigint): bigint {
  const rest = value % step;
  return rest === 0n ? value : value + (step - rest);
}

/** Rounds down to a multiple of step (positive amounts). */
export function floorTo(value: bigint, step: bigint): bigint {
  return value - (value % step);
}

function clamp(value: bigint, low: bigint, high: bigint): bigint {
  return value < low ? low : value > high ? high : value;
}
