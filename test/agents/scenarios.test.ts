import { fromJson } from "@bufbuild/protobuf";
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { LineItemKind, NegotiationStatus, RoundAction, type Negotiation } from "../../gen/handshake/v1/deal_pb.js";
import { AgentMessageKind } from "../../gen/handshake/v1/events_pb.js";
import { AgentProfileSchema, type AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import type { TriggerEvent } from "../../gen/handshake/v1/transcript_pb.js";
import type { Agent } from "../../src/agents/agent.js";
import { createOfflineAgentFactory } from "../../src/agents/offline/offline-negotiator.js";
import { createNegotiationSession, validateProposal, type NegotiationSession } from "../../src/deal/negotiation.js";
import { createOfflineSmartTriggerDetector } from "../../src/trigger/offline-smart.js";
import { createTriggerDetector } from "../../src/trigger/trigger-detector.js";
import { entry, makeDeps } from "../support/agents.js";

interface Fixture {
  name: string;
  trigger: { keyword?: string; requireBoth?: boolean; dualWindowMs?: number; smart?: boolean };
  /** `approval`: how the person answers their agent's approval prompt (none: nobody can be asked). */
  participants: Record<string, { profile: unknown; approval?: "approve" | "decline" }>;
  conversation: { speaker: string; text: string }[];
  expect: {
    status: "agreed" | "rejected";
    initiator: string;
    provider: string;
    currency?: string;
    totalMinor?: { min: string; max: string };
    items?: { quantity?: number; unit?: string; unitPriceMinor?: string; amountMinor?: string; kind?: string; range?: { minMinor: string; maxMinor: string } }[];
    allEscrow?: boolean;
    minOffers?: number;
    /** At most this many offers: terms agreed aloud are written down, not haggled over. */
    maxOffers?: number;
    clientToldAboutLimit?: boolean;
    /** The paying side's agent asked its person before committing them above their limit. */
    clientAskedApproval?: boolean;
  };
}

const dir = new URL("../fixtures/conversations/", import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();

const KINDS: Record<string, LineItemKind> = {
  immediate: LineItemKind.IMMEDIATE,
  escrow: LineItemKind.ESCROW,
  conditional: LineItemKind.CONDITIONAL,
};

/** Runs one fixture through the trigger detector, two offline agents and a real negotiation. */
async function run(fixture: Fixture) {
  const ids = Object.keys(fixture.participants);
  expect(ids).toHaveLength(2);
  const [a, b] = ids as [string, string];
  const profiles = new Map<string, AgentProfile>(
    ids.map((id) => [id, fromJson(AgentProfileSchema, fixture.participants[id]!.profile as never)]),
  );
  let session: NegotiationSession | undefined;
  const asked = new Set<string>();
  const factory = createOfflineAgentFactory();
  const made = new Map(
    ids.map((id) => {
      const peerId = id === a ? b : a;
      const made = makeDeps({
        userId: id,
        peerId,
        profile: profiles.get(id)!,
        peerProfile: profiles.get(peerId)!,
        session: () => session,
      });
      const answer = fixture.participants[id]!.approval;
      if (answer) {
        made.deps.requestApproval = async () => {
          asked.add(id);
          return answer === "approve" ? "approved" : "declined";
        };
      }
      return [id, { agent: factory(made.deps), messages: made.messages }] as const;
    }),
  );
  const agent = (id: string): Agent => made.get(id)!.agent;

  let fired!: (event: TriggerEvent) => void;
  const triggered = new Promise<TriggerEvent>((resolve) => (fired = resolve));
  const detector = createTriggerDetector({
    keyword: fixture.trigger.keyword ?? "",
    requireBoth: fixture.trigger.requireBoth ?? false,
    dualWindowMs: fixture.trigger.dualWindowMs ?? 10_000,
    smart: fixture.trigger.smart ? createOfflineSmartTriggerDetector() : undefined,
    onTrigger: (event) => fired(event),
  });
  const conversation = fixture.conversation.map((line, i) => entry(line.speaker, line.text, i));
  for (const e of conversation) {
    for (const id of ids) agent(id).pushTranscript(e, e.speakerUserId === id ? "self" : "peer");
    detector.feed(e);
  }
  const trigger = await triggered;
  detector.close();

  const changes: Negotiation[] = [];
  let finished!: (n: Negotiation) => void;
  const done = new Promise<Negotiation>((resolve) => (finished = resolve));
  session = createNegotiationSession({
    id: "neg-1",
    roomId: "room-1",
    initiatorUserId: trigger.speakerUserId,
    participants: [a, b],
    roundTimeoutMs: 60_000,
    totalTimeoutMs: 120_000,
    onChange: (negotiation) => {
      changes.push(negotiation);
      const last = negotiation.rounds[negotiation.rounds.length - 1];
      if (negotiation.status !== NegotiationStatus.OPEN) {
        finished(negotiation);
        return;
      }
      if (last && (last.action === RoundAction.PROPOSE || last.action === RoundAction.COUNTER)) {
        agent(last.fromUserId === a ? b : a).onPeerMove(negotiation);
      }
    },
  });
  agent(trigger.speakerUserId).startNegotiation(trigger, conversation);
  const final = await done;
  session.close();
  await Promise.all(ids.map((id) => agent(id).stop()));
  return { trigger, final, changes, profiles, asked, messages: (id: string) => made.get(id)!.messages };
}

describe("offline negotiation scenarios", () => {
  it("has at least six fixtures", () => {
    expect(files.length).toBeGreaterThanOrEqual(6);
  });

  it.each(files)("%s", async (file) => {
    const fixture = JSON.parse(readFileSync(new URL(file, dir), "utf8")) as Fixture;
    const { trigger, final, profiles, messages, asked } = await run(fixture);
    const want = fixture.expect;
    expect(trigger.speakerUserId).toBe(want.initiator);
    expect(final.status).toBe(want.status === "agreed" ? NegotiationStatus.AGREED : NegotiationStatus.REJECTED);

    const participants = Object.keys(fixture.participants) as [string, string];
    // No offer breaks the rules, and the paying side never offers or accepts above its limit.
    for (const round of final.rounds) {
      if (!round.proposal) continue;
      expect(validateProposal(round.proposal, participants)).toBeUndefined();
      const client = round.proposal.clientUserId;
      if (round.fromUserId === client && !asked.has(client)) {
        expect(round.proposal.totalMinor).toBeLessThanOrEqual(profiles.get(client)!.maxAutoApproveMinor);
      }
    }
    if (want.status === "rejected") {
      expect(final.endReason).not.toBe("");
      return;
    }
    const terms = final.currentProposal!;
    expect(terms.providerUserId).toBe(want.provider);
    // Above the payer's limit only with their approval.
    if (!asked.has(terms.clientUserId)) expect(terms.totalMinor).toBeLessThanOrEqual(profiles.get(terms.clientUserId)!.maxAutoApproveMinor);
    expect(asked.has(terms.clientUserId)).toBe(want.clientAskedApproval ?? false);
    if (want.currency) expect(terms.currency).toBe(want.currency);
    if (want.totalMinor) {
      expect(terms.totalMinor).toBeGreaterThanOrEqual(BigInt(want.totalMinor.min));
      expect(terms.totalMinor).toBeLessThanOrEqual(BigInt(want.totalMinor.max));
    }
    if (want.items) {
      expect(terms.lineItems).toHaveLength(want.items.length);
      want.items.forEach((w, i) => {
        const item = terms.lineItems[i]!;
        if (w.quantity !== undefined) expect(item.quantity).toBe(w.quantity);
        if (w.unit !== undefined) expect(item.unit).toBe(w.unit);
        if (w.unitPriceMinor !== undefined) expect(item.unitPriceMinor).toBe(BigInt(w.unitPriceMinor));
        if (w.amountMinor !== undefined) expect(item.amountMinor).toBe(BigInt(w.amountMinor));
        if (w.kind !== undefined) expect(item.kind).toBe(KINDS[w.kind]);
        if (w.range) {
          expect(item.range?.minMinor).toBe(BigInt(w.range.minMinor));
          expect(item.range?.maxMinor).toBe(BigInt(w.range.maxMinor));
        }
      });
    }
    if (want.allEscrow) expect(terms.lineItems.every((i) => i.kind === LineItemKind.ESCROW)).toBe(true);
    if (want.minOffers) expect(final.rounds.filter((r) => r.proposal).length).toBeGreaterThanOrEqual(want.minOffers);
    if (want.maxOffers) expect(final.rounds.filter((r) => r.proposal).length).toBeLessThanOrEqual(want.maxOffers);
    if (want.clientToldAboutLimit) {
      expect(
        messages(terms.clientUserId).some((m) => m.kind === AgentMessageKind.TEXT && m.text.includes("auto-approve limit")),
      ).toBe(true);
    }
  });

  it("is deterministic: the same conversation gives the same deal", async () => {
    const fixture = JSON.parse(readFileSync(new URL("haggle-painter-gbp.json", dir), "utf8")) as Fixture;
    const first = await run(fixture);
    const second = await run(fixture);
    const strip = (n: Negotiation) => n.rounds.map((r) => [r.fromUserId, r.action, r.proposal?.totalMinor, r.reason]);
    expect(strip(second.final)).toEqual(strip(first.final));
  });
});
