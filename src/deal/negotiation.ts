import type { Negotiation, Proposal } from "../../gen/handshake/v1/deal_pb.js";

/** Negotiation states: one open negotiation per room; the rest are final. */
export type NegotiationState = "open" | "agreed" | "rejected" | "expired";

/** A state change, emitted once per real move (no-ops are not emitted). */
export interface NegotiationTransition {
  from: NegotiationState;
  to: NegotiationState;
  at: number;
}

/**
 * One negotiation between the room's two agents. Moves are checked here (turn order, round
 * limit, one currency, items summing to the total, only the parties), not trusted from agents.
 * Illegal moves throw `NegotiationMoveError`; the agents' tools turn that into a tool error.
 */
export interface NegotiationSession {
  readonly id: string;
  /** The negotiation as it stands, as the wire message. */
  snapshot(): Negotiation;
  state(): NegotiationState;
  /** Opening offer by the initiator's agent. */
  propose(userId: string, proposal: Proposal, reason: string): void;
  /** A new offer answering the other side's last one. */
  counter(userId: string, proposal: Proposal, reason: string): void;
  /** Accepts the other side's current offer. */
  accept(userId: string, reason: string): void;
  /** Walks away. */
  reject(userId: string, reason: string): void;
  /** Stops its timers; safe to call twice. */
  close(): void;
}

/** A move the negotiation refuses (not your turn, round limit, bad proposal, already ended). */
export class NegotiationMoveError extends Error {
  override readonly name = "NegotiationMoveError";
}
