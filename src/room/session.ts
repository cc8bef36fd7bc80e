import { SessionStatus } from "../../gen/handshake/v1/events_pb.js";

/** A participant's progress through a deal. */
export type SessionState = "discovering" | "active" | "negotiating" | "signing" | "completed";

/** What moves a session. */
export type SessionEvent = "paired" | "unpaired" | "triggered" | "agreed" | "negotiation_ended" | "executed" | "declined";

/** A session change, emitted once per real move. */
export interface SessionTransition {
  from: SessionState;
  to: SessionState;
  at: number;
}

/**
 * The session machine: `undefined` means the event is illegal in this state. A completed
 * session may trigger a further deal in the same conversation.
 */
export function nextSessionState(state: SessionState, event: SessionEvent): SessionState | undefined {
  if (event === "unpaired") return "discovering";
  switch (state) {
    case "discovering":
      return event === "paired" ? "active" : undefined;
    case "active":
      return event === "triggered" ? "negotiating" : event === "paired" ? "active" : undefined;
    case "negotiating":
      return event === "agreed" ? "signing" : event === "negotiation_ended" ? "active" : undefined;
    case "signing":
      // A contract that could not be drafted, or that a party declined, ends the deal like a failed negotiation.
      if (event === "negotiation_ended" || event === "declined") return "active";
      return event === "executed" ? "completed" : undefined;
    case "completed":
      return event === "triggered" ? "negotiating" : event === "paired" ? "completed" : undefined;
  }
}

/** Applies an event; refuses illegal moves with an Error, ignores no-ops (returns undefined). */
export function transitionSession(state: SessionState, event: SessionEvent, at: number): SessionTransition | undefined {
  const to = nextSessionState(state, event);
  if (to === undefined) throw new Error(`session cannot go from ${state} on ${event}`);
  return to === state ? undefined : { from: state, to, at };
}

/** The wire enum of a session state. */
export function toSessionStatus(state: SessionState): SessionStatus {
  switch (state) {
    case "discovering":
      return SessionStatus.DISCOVERING;
    case "active":
      return SessionStatus.ACTIVE;
    case "negotiating":
      return SessionStatus.NEGOTIATING;
    case "signing":
      return SessionStatus.SIGNING;
    case "completed":
      return SessionStatus.COMPLETED;
  }
}
