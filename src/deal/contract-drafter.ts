import type { Party, Proposal } from "../../gen/handshake/v1/deal_pb.js";
import type { TranscriptEntry } from "../../gen/handshake/v1/transcript_pb.js";

/** What a drafter is given: the agreed terms, who the parties are, and what was said. */
export interface DraftInput {
  proposal: Proposal;
  parties: Party[];
  conversation: readonly TranscriptEntry[];
}

/** A drafted contract's title and full text (the text is fixed once drafted). */
export interface ContractDraft {
  title: string;
  text: string;
}

/**
 * Turns agreed terms into contract text. Two implementations: Claude (remote) and a
 * deterministic template (embedded). A drafter throws on failure; the caller falls back to the
 * template.
 */
export interface ContractDrafter {
  draft(input: DraftInput): Promise<ContractDraft>;
}
