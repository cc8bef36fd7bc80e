import { clone, create } from "@bufbuild/protobuf";
import { ApprovalRequestSchema, ApprovalStatus, type ApprovalRequest } from "../../gen/handshake/v1/events_pb.js";
import { FailedPreconditionError, NotFoundError, PermissionDeniedError } from "../core/errors.js";

/** Where a person's approval of terms above their max auto-approve stands. */
export type ApprovalState = "pending" | "approved" | "declined" | "expired";

/** What moves an approval: the person's two answers, and the negotiation ending first. */
export type ApprovalEvent = "approve" | "decline" | "expire";

/** An approval change, emitted once per real move. */
export interface ApprovalTransition {
  from: ApprovalState;
  to: ApprovalState;
  at: number;
}

/**
 * The pure approval machine: `undefined` means illegal. A request is answered once; expiry after
 * an answer is a no-op (the negotiation ending after the person answered changes nothing).
 */
export function nextApprovalState(state: ApprovalState, event: ApprovalEvent): ApprovalState | undefined {
  if (state !== "pending") return event === "expire" ? state : undefined;
  switch (event) {
    case "approve":
      return "approved";
    case "decline":
      return "declined";
    case "expire":
      return "expired";
  }
}

/** Applies an event; refuses illegal moves (a second answer) with FailedPreconditionError, ignores no-ops. */
export function transitionApproval(state: ApprovalState, event: ApprovalEvent, at: number): ApprovalTransition | undefined {
  const to = nextApprovalState(state, event);
  if (to === undefined) throw new FailedPreconditionError(`this approval request was already answered (${state})`);
  return to === state ? undefined : { from: state, to, at };
}

/** The wire enum of an approval state. */
export function toApprovalStatus(state: ApprovalState): ApprovalStatus {
  switch (state) {
    case "pending":
      return ApprovalStatus.PENDING;
    case "approved":
      return ApprovalStatus.APPROVED;
    case "declined":
      return ApprovalStatus.DECLINED;
    case "expired":
      return ApprovalStatus.EXPIRED;
  }
}

/** What an agent asks its person to approve. */
export interface ApprovalAsk {
  negotiationId: string;
  /** The commitment in words, e.g. "Pay £450.00 to Sam for Gutter repair". */
  summary: string;
  amountMinor: bigint;
  /** The max auto-approve it exceeds. */
  limitMinor: bigint;
  currency: string;
}

/** How an approval ended, as the asking agent learns it. */
export type ApprovalOutcome = "approved" | "declined" | "expired";

/** The approval requests of one room. */
export interface ApprovalBook {
  /** Opens a PENDING request to `userId`; resolves when they answer or it expires. */
  ask(userId: string, ask: ApprovalAsk): Promise<ApprovalOutcome>;
  /**
   * The person's answer. Unknown id: NotFoundError; another person's request:
   * PermissionDeniedError; already answered or expired: FailedPreconditionError.
   */
  answer(userId: string, approvalId: string, approve: boolean): ApprovalRequest;
  /** Expires what is still pending for a negotiation (it ended), or everything when no id is given. */
  expire(negotiationId?: string): void;
}

/** Answered requests kept for a late second answer to be told "already answered". */
const KEEP_ANSWERED = 100;

/**
 * Creates a room's approval book. Every change (opened, answered, expired) goes to `onChange`
 * as the wire message, for the room to show to the addressed person only.
 */
export function createApprovalBook(options: {
  onChange: (request: ApprovalRequest) => void;
  newId: () => string;
  now?: () => number;
}): ApprovalBook {
  const now = options.now ?? Date.now;
  const entries = new Map<string, { state: ApprovalState; request: ApprovalRequest; settle?: (outcome: ApprovalOutcome) => void }>();

  function move(id: string, event: ApprovalEvent): ApprovalRequest {
    const entry = entries.get(id);
    if (!entry) throw new NotFoundError(`approval request ${id} not found`);
    const change = transitionApproval(entry.state, event, now());
    if (change) {
      entry.state = change.to;
      entry.request.status = toApprovalStatus(change.to);
      options.onChange(clone(ApprovalRequestSchema, entry.request));
      const settle = entry.settle;
      entry.settle = undefined;
      settle?.(change.to as ApprovalOutcome);
      trim();
    }
    return clone(ApprovalRequestSchema, entry.request);
  }

  function trim(): void {
    const answered = [...entries].filter(([, e]) => e.state !== "pending");
    for (const [id] of answered.slice(0, Math.max(0, answered.length - KEEP_ANSWERED))) entries.delete(id);
  }

  return {
    ask(userId, ask) {
      const id = options.newId();
      const request = create(ApprovalRequestSchema, {
        id,
        userId,
        negotiationId: ask.negotiationId,
        summary: ask.summary,
        amountMinor: ask.amountMinor,
        limitMinor: ask.limitMinor,
        currency: ask.currency,
        status: ApprovalStatus.PENDING,
      });
      return new Promise<ApprovalOutcome>((resolve) => {
        entries.set(id, { state: "pending", request, settle: resolve });
        options.onChange(clone(ApprovalRequestSchema, request));
      });
    },
    answer(userId, approvalId, approve) {
      const entry = entries.get(approvalId);
      if (!entry) throw new NotFoundError(`approval request ${approvalId} not found`);
      if (entry.request.userId !== userId) throw new PermissionDeniedError("this approval request is addressed to the other person");
      return move(approvalId, approve ? "approve" : "decline");
    },
    expire(negotiationId) {
      for (const [id, entry] of [...entries]) {
        if (entry.state !== "pending") continue;
        if (negotiationId !== undefined && entry.request.negotiationId !== negotiationId) continue;
        move(id, "expire");
      }
    },
  };
}
