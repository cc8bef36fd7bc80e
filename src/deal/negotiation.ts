import { clone, create } from "@bufbuild/protobuf";
import {
  LineItemKind,
  NegotiationRoundSchema,
  NegotiationSchema,
  NegotiationStatus,
  ProposalSchema,
  RoundAction,
  type Negotiation,
  type Proposal,
} from "../../gen/handshake/v1/deal_pb.js";

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

/**
 * What can happen to a negotiation. Agents' moves (`offer` covers propose and counter) and the
 * session's own events: a counter beyond the round limit, and the two timeouts.
 */
export type NegotiationEvent =
  | { type: "offer" }
  | { type: "accept" }
  | { type: "reject" }
  | { type: "round_limit" }
  | { type: "round_timeout" }
  | { type: "total_timeout" };

/**
 * The pure state function. Returns the next state, or `undefined` when the event is not allowed
 * in `state`. Timeouts after the end are no-ops (same state); moves after the end are illegal.
 */
export function nextNegotiationState(
  state: NegotiationState,
  event: NegotiationEvent,
): NegotiationState | undefined {
  if (state !== "open") {
    // A timer racing the final move must not resurrect or re-end a negotiation.
    return event.type === "round_timeout" || event.type === "total_timeout" ? state : undefined;
  }
  switch (event.type) {
    case "offer":
      return "open";
    case "accept":
      return "agreed";
    case "reject":
    case "round_limit":
      return "rejected";
    case "round_timeout":
    case "total_timeout":
      return "expired";
  }
}

/** Options of `createNegotiationSession`. */
export interface NegotiationSessionOptions {
  id: string;
  roomId: string;
  /** User whose words triggered it; their agent makes the opening offer. */
  initiatorUserId: string;
  participants: [string, string];
  /** Most offers (propose + counters) before it is rejected; default 5. */
  maxRounds?: number;
  /** Time each side has to make its next move, milliseconds. */
  roundTimeoutMs: number;
  /** Time for the whole negotiation, milliseconds. */
  totalTimeoutMs: number;
  now?: () => number;
  /**
   * An open negotiation as it was stored, to go on with (its room moved to another node, or the
   * server restarted): its rounds, turn and offer count, and its clocks, which kept running meanwhile.
   */
  restored?: Negotiation;
  /** Called after every change (a round added, a state change) with a fresh copy. */
  onChange: (negotiation: Negotiation, transition: NegotiationTransition | undefined) => void;
}

/** Most line items in one proposal. */
export const MAX_LINE_ITEMS = 50;
/** Largest single amount accepted, minor units (10^13: keeps totals far inside int64). */
export const MAX_AMOUNT_MINOR = 10_000_000_000_000n;

const STATUS_OF: Record<NegotiationState, NegotiationStatus> = {
  open: NegotiationStatus.OPEN,
  agreed: NegotiationStatus.AGREED,
  rejected: NegotiationStatus.REJECTED,
  expired: NegotiationStatus.EXPIRED,
};

/**
 * Checks a proposal against the deal rules shared by the session and the agents' tools.
 * Returns the reason it is invalid, or `undefined` when it is fine.
 */
export function validateProposal(proposal: Proposal, participants: readonly [string, string]): string | undefined {
  if (!/^[A-Z]{3}$/.test(proposal.currency)) {
    return `currency must be an ISO 4217 code of three upper-case letters, got "${proposal.currency}"`;
  }
  const [a, b] = participants;
  const parties = new Set([a, b]);
  if (!parties.has(proposal.providerUserId) || !parties.has(proposal.clientUserId)) {
    return "provider and client must be the two participants";
  }
  if (proposal.providerUserId === proposal.clientUserId) {
    return "provider and client must be different people";
  }
  const items = proposal.lineItems;
  if (items.length < 1 || items.length > MAX_LINE_ITEMS) {
    return `a proposal needs 1 to ${MAX_LINE_ITEMS} line items, got ${items.length}`;
  }
  const ids = new Set<string>();
  let sum = 0n;
  for (const [index, item] of items.entries()) {
    const where = `line item ${index + 1}${item.id ? ` (${item.id})` : ""}`;
    if (item.id === "") return `${where}: id is required`;
    if (ids.has(item.id)) return `${where}: id is used twice`;
    ids.add(item.id);
    const description = item.description.trim();
    if (description.length < 1 || item.description.length > 500) {
      return `${where}: description must be 1–500 characters`;
    }
    if (item.kind === LineItemKind.UNSPECIFIED) return `${where}: kind must be immediate, escrow or conditional`;
    if (item.amountMinor <= 0n) return `${where}: amount must be greater than zero`;
    if (item.amountMinor > MAX_AMOUNT_MINOR) return `${where}: amount is too large`;
    if (item.quantity < 1) return `${where}: quantity must be at least 1`;
    if (item.unitPriceMinor < 0n) return `${where}: unit price must not be negative`;
    if (item.quantity > 1 && item.unitPriceMinor === 0n) return `${where}: a counted item needs a unit price`;
    if (item.unitPriceMinor !== 0n && BigInt(item.quantity) * item.unitPriceMinor !== item.amountMinor) {
      return `${where}: quantity × unit price (${item.quantity} × ${item.unitPriceMinor}) must equal the amount ${item.amountMinor}`;
    }
    if (item.range) {
      if (item.range.minMinor <= 0n) return `${where}: range minimum must be greater than zero`;
      if (item.range.minMinor > item.range.maxMinor) return `${where}: range minimum must not exceed its maximum`;
      if (item.amountMinor !== item.range.maxMinor) {
        return `${where}: a ranged item's amount must equal the range maximum (${item.range.maxMinor})`;
      }
      // The final price of a ranged item is only known later: money must be held, not paid.
      if (item.kind === LineItemKind.IMMEDIATE) return `${where}: a ranged item must be escrow or conditional`;
    }
    if (item.kind !== LineItemKind.IMMEDIATE && (!item.milestone || item.milestone.title.trim() === "")) {
      return `${where}: escrow and conditional items need milestone terms with a title`;
    }
    if (item.kind === LineItemKind.CONDITIONAL && item.condition.trim() === "") {
      return `${where}: a conditional item needs its condition`;
    }
    for (const factor of item.pricingFactors) {
      if (factor.name.trim() === "") return `${where}: every pricing factor needs a name`;
    }
    sum += item.amountMinor;
  }
  if (sum !== proposal.totalMinor) {
    return `total ${proposal.totalMinor} must equal the sum of the line items (${sum})`;
  }
  return undefined;
}

/**
 * Creates the negotiation for one trigger. Turn order: the initiator proposes, then the sides
 * alternate; each offer answers the other side's last one. After `maxRounds` offers the side
 * to answer may only accept or reject: a further counter is refused and ends it as rejected.
 */
export function createNegotiationSession(options: NegotiationSessionOptions): NegotiationSession {
  const now = options.now ?? Date.now;
  const maxRounds = options.maxRounds ?? 5;
  const [first, second] = options.participants;
  if (first === second) throw new Error("a negotiation needs two different participants");
  if (first !== options.initiatorUserId && second !== options.initiatorUserId) {
    throw new Error("the initiator must be a participant");
  }
  if (!Number.isInteger(maxRounds) || maxRounds < 1) throw new Error("maxRounds must be a positive integer");

  const { restored } = options;
  if (restored && (restored.status !== NegotiationStatus.OPEN || restored.id !== options.id)) {
    throw new Error("only an open negotiation with this id can be restored");
  }
  const startedAt = now();
  let state: NegotiationState = "open";
  // Each offer (propose or counter) counts against the round limit and numbers its proposal id.
  let offers = restored ? restored.rounds.filter((r) => r.action === RoundAction.PROPOSE || r.action === RoundAction.COUNTER).length : 0;
  let proposalSeq = offers;
  const negotiation: Negotiation = restored
    ? clone(NegotiationSchema, restored)
    : create(NegotiationSchema, {
        id: options.id,
        roomId: options.roomId,
        status: NegotiationStatus.OPEN,
        initiatorUserId: options.initiatorUserId,
        maxRounds,
        startedAtMs: BigInt(startedAt),
        expiresAtMs: BigInt(startedAt + options.totalTimeoutMs),
      });

  let roundTimer: ReturnType<typeof setTimeout> | undefined;
  let totalTimer: ReturnType<typeof setTimeout> | undefined = setTimeout(
    () => timeout("total_timeout", "total timeout: the negotiation took too long"),
    Math.max(0, Number(negotiation.expiresAtMs) - startedAt),
  );
  // A restored round's clock started at its last move.
  armRoundTimer(restored ? Number(restored.rounds.at(-1)?.atMs ?? restored.startedAtMs) : startedAt);

  function armRoundTimer(fromMs = now()): void {
    if (roundTimer !== undefined) clearTimeout(roundTimer);
    roundTimer = setTimeout(
      () => timeout("round_timeout", "round timeout: no move was made in time"),
      Math.max(0, fromMs + options.roundTimeoutMs - now()),
    );
  }

  function stopTimers(): void {
    if (roundTimer !== undefined) clearTimeout(roundTimer);
    if (totalTimer !== undefined) clearTimeout(totalTimer);
    roundTimer = undefined;
    totalTimer = undefined;
  }

  function emit(transition: NegotiationTransition | undefined): void {
    options.onChange(clone(NegotiationSchema, negotiation), transition);
  }

  /** Applies an event: refuses it when illegal, moves the state, records why it ended. */
  function transition(event: NegotiationEvent, endReason?: string): NegotiationTransition | undefined {
    const to = nextNegotiationState(state, event);
    if (to === undefined) {
      throw new NegotiationMoveError(`the negotiation has already ended (${state})`);
    }
    if (to === state) return undefined;
    const from = state;
    state = to;
    negotiation.status = STATUS_OF[to];
    if (endReason !== undefined) negotiation.endReason = endReason;
    if (to !== "open") stopTimers();
    return { from, to, at: now() };
  }

  function timeout(type: "round_timeout" | "total_timeout", reason: string): void {
    if (type === "round_timeout") roundTimer = undefined;
    else totalTimer = undefined;
    const change = transition({ type }, reason);
    if (change) emit(change);
  }

  function requireOpen(): void {
    if (state !== "open") throw new NegotiationMoveError(`the negotiation has already ended (${state})`);
  }

  function requireParticipant(userId: string): void {
    if (userId !== first && userId !== second) {
      throw new NegotiationMoveError(`user ${userId} is not a participant in this negotiation`);
    }
  }

  /** Whose move it is: the initiator opens, then whoever did not make the offer on the table. */
  function turn(): string {
    const current = negotiation.currentProposal;
    if (!current) return options.initiatorUserId;
    return current.proposedByUserId === first ? second : first;
  }

  function addRound(userId: string, action: RoundAction, reason: string, proposal?: Proposal): void {
    negotiation.rounds.push(
      create(NegotiationRoundSchema, {
        number: negotiation.rounds.length + 1,
        fromUserId: userId,
        action,
        proposal: proposal ? clone(ProposalSchema, proposal) : undefined,
        reason,
        atMs: BigInt(now()),
      }),
    );
  }

  function offer(kind: "propose" | "counter", userId: string, proposal: Proposal, reason: string): void {
    requireOpen();
    requireParticipant(userId);
    if (kind === "propose" && negotiation.currentProposal) {
      throw new NegotiationMoveError("an offer is already on the table: counter, accept or reject it");
    }
    if (kind === "counter" && !negotiation.currentProposal) {
      throw new NegotiationMoveError("there is no offer to counter yet: the initiator must propose first");
    }
    if (turn() !== userId) throw new NegotiationMoveError("not your turn: wait for the other side's move");
    if (offers >= maxRounds) {
      // The last allowed offer went unanswered by acceptance: the negotiation ends here.
      const change = transition({ type: "round_limit" }, `round limit: ${maxRounds} offers made without agreement`);
      addRound(userId, RoundAction.REJECT, `round limit reached (${maxRounds} offers)`);
      emit(change);
      throw new NegotiationMoveError(
        `round limit: ${maxRounds} offers were made without agreement; the negotiation is rejected`,
      );
    }
    const invalid = validateProposal(proposal, options.participants);
    if (invalid !== undefined) throw new NegotiationMoveError(`proposal invalid: ${invalid}`);
    const current = negotiation.currentProposal;
    if (current && current.currency !== proposal.currency) {
      throw new NegotiationMoveError(
        `proposal invalid: the negotiation is in ${current.currency}; a counter-offer must use the same currency`,
      );
    }
    transition({ type: "offer" });
    proposalSeq += 1;
    const stored = clone(ProposalSchema, proposal);
    stored.id = `${options.id}-p${proposalSeq}`;
    stored.proposedByUserId = userId;
    stored.createdAtMs = BigInt(now());
    offers += 1;
    negotiation.currentProposal = stored;
    addRound(userId, kind === "propose" ? RoundAction.PROPOSE : RoundAction.COUNTER, reason, stored);
    armRoundTimer();
    emit(undefined);
  }

  return {
    id: options.id,
    snapshot: () => clone(NegotiationSchema, negotiation),
    state: () => state,
    propose: (userId, proposal, reason) => offer("propose", userId, proposal, reason),
    counter: (userId, proposal, reason) => offer("counter", userId, proposal, reason),
    accept(userId, reason) {
      requireOpen();
      requireParticipant(userId);
      const current = negotiation.currentProposal;
      if (!current) throw new NegotiationMoveError("there is no offer to accept yet");
      if (current.proposedByUserId === userId) {
        throw new NegotiationMoveError("not your turn: you cannot accept your own offer");
      }
      const change = transition({ type: "accept" });
      addRound(userId, RoundAction.ACCEPT, reason);
      emit(change);
    },
    reject(userId, reason) {
      requireOpen();
      requireParticipant(userId);
      // Either side may walk away at any time: a person is never held in a negotiation.
      const change = transition({ type: "reject" }, reason.trim() === "" ? "rejected" : reason);
      addRound(userId, RoundAction.REJECT, reason);
      emit(change);
    },
    close() {
      stopTimers();
    },
  };
}
