import type { Logger } from "pino";
import type { AgentProfile, PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import type { AgentMessage } from "../../gen/handshake/v1/events_pb.js";
import type { Negotiation } from "../../gen/handshake/v1/deal_pb.js";
import type { TranscriptEntry, TriggerEvent } from "../../gen/handshake/v1/transcript_pb.js";
import type { ApprovalAsk, ApprovalOutcome } from "../deal/approvals.js";
import type { NegotiationSession } from "../deal/negotiation.js";
import type { BankAccount } from "../payments/bank.js";

/** What an agent may know of the other party: never their limits, tokens or instructions. */
export interface PeerInfo {
  userId: string;
  displayName: string;
  role: PartyRole;
  trade: string;
  currency: string;
}

/** What the room gives one agent. */
export interface AgentDeps {
  roomId: string;
  userId: string;
  /** The person's current profile (SetProfile may change it between decisions). */
  profile: () => AgentProfile;
  peer: PeerInfo;
  /** The room's open negotiation, if any; the agent's propose/evaluate tools act on it. */
  negotiation: () => NegotiationSession | undefined;
  /** Sends an agent message to the agent's own user only. */
  notifyUser: (message: AgentMessage) => void;
  /**
   * Asks the person to approve terms above their max auto-approve (an ApprovalRequest on their
   * panel only); resolves with their answer, or "expired" when the negotiation ends first.
   * Absent (no one to ask): the tools refuse such terms instead.
   */
  requestApproval?: (ask: ApprovalAsk) => Promise<ApprovalOutcome>;
  /** The person's bank, when their profile has a connection. */
  bank?: BankAccount;
  log: Logger;
}

/**
 * A participant's agent. The room feeds it the conversation and the peer's moves; it acts only
 * through its tools. Both engines (Claude, offline negotiator) implement this.
 */
export interface Agent {
  /** A final transcript: the person's own words or the peer's. */
  pushTranscript(entry: TranscriptEntry, speaker: "self" | "peer"): void;
  /** This agent's person triggered the deal: open the negotiation with a proposal. */
  startNegotiation(trigger: TriggerEvent, conversation: readonly TranscriptEntry[]): void;
  /** The other agent moved (proposed or countered): evaluate and answer through the tools. */
  onPeerMove(negotiation: Negotiation): void;
  /** Stops all work; safe to call twice. */
  stop(): Promise<void>;
}

/** Makes the agent for one participant. */
export type AgentFactory = (deps: AgentDeps) => Agent;
