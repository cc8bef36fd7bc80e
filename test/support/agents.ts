import { create } from "@bufbuild/protobuf";
import type { AgentMessage } from "../../gen/handshake/v1/events_pb.js";
import { AgentProfileSchema, PartyRole, type AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import { TranscriptEntrySchema, TranscriptSource, type TranscriptEntry } from "../../gen/handshake/v1/transcript_pb.js";
import type { AgentDeps } from "../../src/agents/agent.js";
import type { NegotiationSession } from "../../src/deal/negotiation.js";
import { silentLogger } from "../../src/core/log.js";
import type { BankAccount } from "../../src/payments/bank.js";

/** A final transcript entry said by `speaker`, `index` seconds into the conversation. */
export function entry(speaker: string, text: string, index: number): TranscriptEntry {
  return create(TranscriptEntrySchema, {
    id: `t${index}`,
    speakerUserId: speaker,
    text,
    isFinal: true,
    source: TranscriptSource.DEVICE,
    receivedAtMs: BigInt(1_700_000_000_000 + index * 1000),
  });
}

/** Agent deps over plain values, recording every message the agent sends its user. */
export function makeDeps(options: {
  userId: string;
  peerId: string;
  profile: AgentProfile;
  peerProfile?: AgentProfile;
  session: () => NegotiationSession | undefined;
  bank?: BankAccount;
}): { deps: AgentDeps; messages: AgentMessage[] } {
  const messages: AgentMessage[] = [];
  const peer = options.peerProfile ?? create(AgentProfileSchema, {});
  const deps: AgentDeps = {
    roomId: "room-1",
    userId: options.userId,
    profile: () => options.profile,
    peer: {
      userId: options.peerId,
      displayName: peer.displayName || options.peerId,
      role: peer.role ?? PartyRole.UNSPECIFIED,
      trade: peer.trade,
      currency: peer.currency,
    },
    negotiation: options.session,
    notifyUser: (message) => messages.push(message),
    log: silentLogger,
  };
  if (options.bank) deps.bank = options.bank;
  return { deps, messages };
}
