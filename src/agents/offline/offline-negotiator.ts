import { create } from "@bufbuild/protobuf";
import { LineItemKind, NegotiationStatus, type LineItem, type Negotiation, type Proposal } from "../../../gen/handshake/v1/deal_pb.js";
import { AgentMessageKind, AgentMessageSchema } from "../../../gen/handshake/v1/events_pb.js";
import { PartyRole, RateUnit, type AgentProfile } from "../../../gen/handshake/v1/profile_pb.js";
import type { TranscriptEntry, TriggerEvent } from "../../../gen/handshake/v1/transcript_pb.js";
import { formatMoney, minorDigits } from "../../core/money.js";
import type { Agent, AgentDeps, AgentFactory } from "../agent.js";
import { ceilTo, floorTo, negotiationTime, offerAt, STYLE_BETA, type Position } from "./concession.js";
import { sketchDeal, type DealSketch, type SketchItem } from "../../language/deal-extraction.js";
import { createAgentTools, escrowPreferenceProblem, type LineItemInput, type ProposalInput, type ToolResult } from "../tools.js";

/** Options of the offline (embedded, model-free) negotiator. */
export interface OfflineAgentOptions {
  /**
   * Most a provider gives up from its stated price, in basis points, where no profile rate
   * sets its floor; default 2000 (20 %).
   */
  defaultMaxDiscountBps?: number;
  /** κ of the concession function: share conceded at the opening offer; default 0. */
  kappa?: number;
  /** Runs a decision later, off the caller's stack; default setImmediate. */
  schedule?: (run: () => void) => void;
}

/**
 * The embedded agent engine: reads items and prices from the conversation, decides who provides
 * and who pays, and negotiates with Faratin time-dependent concession (see concession.ts)
 * between its user's target and reservation, through the same tools as Claude. Deterministic:
 * the same conversation and profiles give the same deal.
 */
export function createOfflineAgentFactory(options: OfflineAgentOptions = {}): AgentFactory {
  const discountBps = BigInt(options.defaultMaxDiscountBps ?? 2000);
  const kappa = options.kappa ?? 0;
  const schedule = options.schedule ?? ((run: () => void) => void setImmediate(run));
  return (deps) => createOfflineAgent(deps, { discountBps, kappa, schedule });
}

interface Settings {
  discountBps: bigint;
  kappa: number;
  schedule: (run: () => void) => void;
}

/** What this agent intends for the open negotiation. */
interface Plan {
  sketch: DealSketch;
  position: Position;
}

function createOfflineAgent(deps: AgentDeps, settings: Settings): Agent {
  const tools = createAgentTools(deps);
  const conversation: TranscriptEntry[] = [];
  let stopped = false;
  let chain: Promise<void> = Promise.resolve();
  /** Negotiation id and offer count last answered, so a repeated snapshot is not answered twice. */
  let answered = "";
  let balance: { id: string; minor: bigint; currency: string } | undefined;
  /** Negotiations whose over-the-limit ask the user was already told about. */
  const warned = new Set<string>();
  const log = deps.log.child({ roomId: deps.roomId, userId: deps.userId, engine: "offline" });

  /** Runs decisions one at a time, later than the caller (the room's event order stays intact). */
  function enqueue(work: () => Promise<void>): void {
    if (stopped) return;
    settings.schedule(() => {
      chain = chain
        .then(async () => {
          if (!stopped) await work();
        })
        .catch((err: unknown) => log.error({ err }, "offline agent decision failed"));
    });
  }

  function tell(text: string, isError = false): void {
    deps.notifyUser(create(AgentMessageSchema, { userId: deps.userId, kind: AgentMessageKind.TEXT, text, isError }));
  }

  function money(minor: bigint, currency: string): string {
    return formatMoney(minor, currency);
  }

  async function call(name: string, input: unknown): Promise<ToolResult> {
    return tools.call(name, input);
  }

  async function reject(reason: string): Promise<void> {
    await call("evaluate_proposal", { decision: "reject", reason });
  }

  /** The payer's balance in the deal currency, read once per negotiation; undefined when unknown. */
  async function payerBalance(negotiationId: string, currency: string): Promise<bigint | undefined> {
    if (!deps.bank) return undefined;
    if (balance?.id !== negotiationId) {
      try {
        const b = await deps.bank.getBalance();
        balance = { id: negotiationId, minor: b.balanceMinor, currency: b.currency };
      } catch (err) {
        log.warn({ err }, "balance check failed; the accept-time check will decide");
        balance = { id: negotiationId, minor: -1n, currency: "" };
      }
    }
    return balance.currency === currency && balance.minor >= 0n ? balance.minor : undefined;
  }

  /** Target and reservation of this agent's user for the sketched deal. */
  async function plan(sketch: DealSketch, negotiationId: string): Promise<Plan | { problem: string }> {
    const profile = deps.profile();
    const currency = sketch.currency;
    const ask = sketch.providerAskMinor ?? sketch.itemsTotalMinor;
    if (sketch.providerUserId === deps.userId) {
      const target = sketch.providerAgreed && sketch.clientOfferMinor !== undefined ? sketch.clientOfferMinor : ask;
      const floor = providerFloor(sketch, profile, target, settings.discountBps);
      return { sketch, position: { side: "provider", targetMinor: target, reservationMinor: floor < target ? floor : target, currency } };
    }
    const limitCurrency = profile.currency || currency;
    if (limitCurrency !== currency) {
      return { problem: `the price was discussed in ${currency} but your auto-approve limit is in ${limitCurrency}` };
    }
    if (profile.maxAutoApproveMinor <= 0n) return { problem: "your auto-approve limit is zero, so I may not agree to pay anything" };
    let cap = profile.maxAutoApproveMinor;
    const ceiling = sketch.clientBudgetMinor ?? ask;
    if (ceiling < cap) cap = ceiling;
    const funds = await payerBalance(negotiationId, currency);
    if (funds !== undefined && funds < cap) cap = funds;
    if (cap <= 0n) return { problem: "your bank balance cannot cover any payment" };
    if (ask > profile.maxAutoApproveMinor && !warned.has(negotiationId)) {
      warned.add(negotiationId);
      tell(
        `They asked for ${money(ask, currency)}, above your auto-approve limit of ${money(profile.maxAutoApproveMinor, currency)}. ` +
          `I will not agree to more than ${money(cap, currency)} without you.`,
      );
    }
    let target = sketch.clientAgreed ? ask : (sketch.clientOfferMinor ?? sketch.clientBudgetMinor ?? ask);
    if (target > cap) target = cap;
    return { sketch, position: { side: "client", targetMinor: target, reservationMinor: cap, currency } };
  }

  function beta(): number {
    return STYLE_BETA[deps.profile().style] ?? 1;
  }

  function sketchFor(source: readonly TranscriptEntry[], currency: string, roles?: { providerUserId: string; clientUserId: string }) {
    const profile = deps.profile();
    return sketchDeal(
      source,
      [
        { userId: deps.userId, role: profile.role },
        { userId: deps.peer.userId, role: deps.peer.role },
      ],
      currency,
      { roles, fallbackDescription: tradeDescription(profile, deps.peer.trade) },
    );
  }

  async function open(trigger: TriggerEvent, given: readonly TranscriptEntry[]): Promise<void> {
    const negotiation = deps.negotiation();
    if (!negotiation || negotiation.state() !== "open") return;
    const source = given.length > 0 ? given : conversation;
    const profile = deps.profile();
    const sketch = sketchFor(source, profile.currency || deps.peer.currency || "GBP");
    if (!sketch) {
      tell("I could not find a price in the conversation, so there is nothing to offer yet.");
      await reject("No price was named in the conversation, so there is nothing to agree yet.");
      return;
    }
    const planned = await plan(sketch, negotiation.id);
    if ("problem" in planned) {
      tell(`Approval needed: ${planned.problem}.`, true);
      await reject("My user needs to approve this deal themselves.");
      return;
    }
    const total = offerAt(planned.position, 0, beta(), settings.kappa);
    const items = fromSketch(sketch.items, sketch.itemsTotalMinor, total, planned.position);
    log.info({ trigger: trigger.kind, offerMinor: total.toString() }, "offline agent opening");
    const result = await call("propose", {
      ...proposalInput(sketch, planned.position, items),
      reason: "Opening offer, as discussed in the conversation.",
    });
    if (result.isError) await reject(`I could not make a valid offer: ${result.content}`);
  }

  async function answer(snapshot: Negotiation): Promise<void> {
    if (snapshot.status !== NegotiationStatus.OPEN) return;
    const current = snapshot.currentProposal;
    if (!current || current.proposedByUserId === deps.userId) return;
    const offersSoFar = snapshot.rounds.filter((r) => r.proposal !== undefined).length;
    const key = `${snapshot.id}:${offersSoFar}`;
    if (answered === key) return;
    answered = key;
    const live = deps.negotiation();
    if (!live || live.id !== snapshot.id || live.state() !== "open") return;

    const profile = deps.profile();
    const mine: "provider" | "client" = current.providerUserId === deps.userId ? "provider" : "client";
    if ((profile.role === PartyRole.PROVIDER && mine === "client") || (profile.role === PartyRole.CLIENT && mine === "provider")) {
      await reject(`The offer has the roles the wrong way round: my user is the ${profile.role === PartyRole.PROVIDER ? "provider" : "client"}.`);
      return;
    }
    const sketch = sketchFor(conversation, current.currency, {
      providerUserId: current.providerUserId,
      clientUserId: current.clientUserId,
    });
    // With nothing priced in the talk, the peer's own offer is the only anchor: accept it within limits.
    const planned: Plan | { problem: string } = sketch && sketch.currency === current.currency
      ? await plan(sketch, snapshot.id)
      : await plan(sketchFromProposal(current), snapshot.id);
    if ("problem" in planned) {
      tell(`Approval needed: ${planned.problem}.`, true);
      await reject("My user needs to approve this deal themselves.");
      return;
    }
    const { position } = planned;
    const offered = current.totalMinor;
    const canCounter = offersSoFar < snapshot.maxRounds;
    const next = offerAt(position, negotiationTime(offersSoFar, snapshot.maxRounds), beta(), settings.kappa);
    const withinReservation = position.side === "provider" ? offered >= position.reservationMinor : offered <= position.reservationMinor;
    // AC_next: accept when the offer is at least as good as the one we would make next.
    const acceptable = position.side === "provider" ? offered >= next : offered <= next;

    if (withinReservation && (acceptable || !canCounter)) {
      const escrow = mine === "client" ? escrowPreferenceProblem(current, profile) : undefined;
      if (escrow) {
        if (!canCounter) {
          await reject("The final offer pays immediately for work my user wants held in escrow.");
          return;
        }
        // Same money, held in escrow: the tool applies the preference to the counter.
        const result = await call("evaluate_proposal", {
          decision: "counter",
          reason: "The price is fine; my user wants this held in escrow until the work is confirmed.",
          counter: proposalInput(planned.sketch, position, fromProposal(current.lineItems), current.summary),
        });
        if (result.isError) await reject(`I could not counter: ${result.content}`);
        return;
      }
      const result = await call("evaluate_proposal", { decision: "accept", reason: "The offer is acceptable." });
      if (result.isError) await reject(`I cannot accept this offer: ${result.content}`);
      return;
    }
    if (!canCounter) {
      await reject(`The final offer of ${money(offered, current.currency)} is beyond what I can agree; the gap cannot close.`);
      return;
    }
    const previousMine = [...snapshot.rounds].reverse().find((r) => r.proposal && r.fromUserId === deps.userId)?.proposal;
    const previousTheirs = [...snapshot.rounds]
      .reverse()
      .filter((r) => r.proposal && r.fromUserId !== deps.userId)[1]?.proposal;
    if (
      previousMine?.totalMinor === position.reservationMinor &&
      previousTheirs?.totalMinor === offered &&
      next === position.reservationMinor
    ) {
      await reject("We are both holding our positions; the gap cannot close.");
      return;
    }
    const items = scaleLineItems(fromProposal(current.lineItems), offered, next, position);
    const result = await call("evaluate_proposal", {
      decision: "counter",
      reason: `Counter-offer: ${money(items.reduce((sum, i) => sum + i.amountMinor, 0n), current.currency)}.`,
      counter: proposalInput(planned.sketch, position, items, current.summary),
    });
    if (result.isError) await reject(`I could not counter: ${result.content}`);
  }

  return {
    pushTranscript(entry) {
      if (!entry.isFinal || stopped) return;
      conversation.push(entry);
      if (conversation.length > 500) conversation.splice(0, conversation.length - 500);
    },
    startNegotiation(trigger, given) {
      const copy = [...given];
      enqueue(() => open(trigger, copy));
    },
    onPeerMove(negotiation) {
      enqueue(() => answer(negotiation));
    },
    async stop() {
      stopped = true;
      await chain;
    },
  };
}

/** A draft item: the negotiable numbers plus what stays fixed across offers. */
interface DraftItem {
  id: string;
  description: string;
  kind: LineItemKind;
  amountMinor: bigint;
  quantity: number;
  unitPriceMinor: bigint;
  unit: string;
  range?: { minMinor: bigint; maxMinor: bigint };
  milestone?: LineItem["milestone"];
  condition: string;
}

function fromSketch(items: readonly SketchItem[], from: bigint, to: bigint, position: Position): DraftItem[] {
  const drafts = items.map<DraftItem>((item) => ({
    id: item.id,
    description: item.description,
    kind: item.range ? LineItemKind.ESCROW : LineItemKind.IMMEDIATE,
    amountMinor: item.amountMinor,
    quantity: item.quantity,
    unitPriceMinor: item.unitPriceMinor,
    unit: item.unit,
    range: item.range,
    condition: "",
  }));
  return scaleLineItems(drafts, from, to, position);
}

function fromProposal(items: readonly LineItem[]): DraftItem[] {
  return items.map((item) => ({
    id: item.id,
    description: item.description,
    kind: item.kind,
    amountMinor: item.amountMinor,
    quantity: item.quantity,
    unitPriceMinor: item.unitPriceMinor,
    unit: item.unit,
    range: item.range ? { minMinor: item.range.minMinor, maxMinor: item.range.maxMinor } : undefined,
    milestone: item.milestone,
    condition: item.condition,
  }));
}

/** A proposal standing in for the conversation when the talk priced nothing. */
function sketchFromProposal(proposal: Proposal): DealSketch {
  return {
    providerUserId: proposal.providerUserId,
    clientUserId: proposal.clientUserId,
    currency: proposal.currency,
    items: [],
    itemsTotalMinor: proposal.totalMinor,
    providerAskMinor: proposal.totalMinor,
    clientAgreed: true,
    providerAgreed: true,
    clientOfferMinor: proposal.totalMinor,
    jobDescription: proposal.summary,
  };
}

/**
 * Scales items from total `from` to about `to`, keeping quantities and structure. Amounts are
 * rounded to whole major units in the side's favour (provider up, client down), and one
 * uncounted item absorbs the remainder so the total lands on `to` when possible.
 */
function scaleLineItems(items: readonly DraftItem[], from: bigint, to: bigint, position: Pick<Position, "side" | "currency">): DraftItem[] {
  if (items.length === 0 || from <= 0n || from === to) return items.map((i) => ({ ...i }));
  const step = 10n ** BigInt(minorDigits(position.currency));
  const round = (v: bigint) => {
    const r = position.side === "provider" ? ceilTo(v, step) : floorTo(v, step);
    return r > 0n ? r : v > 0n ? v : 1n;
  };
  const scale = (v: bigint) => round((v * to) / from);
  const anchorIndex = pickAnchor(items);
  const scaled = items.map<DraftItem>((item) => {
    if (item.quantity > 1) {
      const unit = scale(item.unitPriceMinor);
      const amount = unit * BigInt(item.quantity);
      const range = item.range ? { minMinor: minOf(scale(item.range.minMinor), amount), maxMinor: amount } : undefined;
      return { ...item, unitPriceMinor: unit, amountMinor: amount, range };
    }
    const amount = scale(item.amountMinor);
    const range = item.range ? { minMinor: minOf(scale(item.range.minMinor), amount), maxMinor: amount } : undefined;
    return { ...item, amountMinor: amount, unitPriceMinor: amount, range };
  });
  if (anchorIndex >= 0) {
    const others = scaled.reduce((s, item, i) => (i === anchorIndex ? s : s + item.amountMinor), 0n);
    const anchorAmount = to - others;
    const anchor = scaled[anchorIndex]!;
    if (anchorAmount > 0n) {
      const range = anchor.range ? { minMinor: minOf(anchor.range.minMinor, anchorAmount), maxMinor: anchorAmount } : undefined;
      scaled[anchorIndex] = { ...anchor, amountMinor: anchorAmount, unitPriceMinor: anchorAmount, range };
    }
  }
  return scaled;
}

/** The largest uncounted item: it can take any amount. */
function pickAnchor(items: readonly DraftItem[]): number {
  let best = -1;
  items.forEach((item, i) => {
    if (item.quantity > 1) return;
    if (best === -1 || item.amountMinor > items[best]!.amountMinor) best = i;
  });
  return best;
}

function minOf(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

function kindName(kind: LineItemKind): LineItemInput["kind"] {
  return kind === LineItemKind.ESCROW ? "escrow" : kind === LineItemKind.CONDITIONAL ? "conditional" : "immediate";
}

function proposalInput(sketch: DealSketch, position: Position, items: readonly DraftItem[], summary?: string): ProposalInput {
  const total = items.reduce((s, i) => s + i.amountMinor, 0n);
  return {
    summary: summary ?? `${sketch.jobDescription}. ${items.length} item${items.length === 1 ? "" : "s"}, ${formatMoney(total, position.currency)} in total.`,
    currency: position.currency,
    my_role: position.side,
    line_items: items.map((item) => {
      const input: LineItemInput = {
        id: item.id,
        description: item.description,
        kind: kindName(item.kind),
        amount_minor: Number(item.amountMinor),
        quantity: item.quantity,
        unit_price_minor: Number(item.unitPriceMinor),
      };
      if (item.unit) input.unit = item.unit;
      if (item.range) input.range = { min_minor: Number(item.range.minMinor), max_minor: Number(item.range.maxMinor) };
      if (item.milestone) {
        input.milestone = {
          title: item.milestone.title,
          deliverables: item.milestone.deliverables,
          verification_method: item.milestone.verificationMethod,
          completion_criteria: item.milestone.completionCriteria,
        };
      }
      if (item.condition) input.condition = item.condition;
      return input;
    }),
  };
}

/**
 * The provider's floor for the sketched items: its profile rates where one fits an item (per
 * hour/day/item × quantity, or a per-job rate whose words match), else the stated price less
 * the default discount. Never above the target.
 */
function providerFloor(sketch: DealSketch, profile: AgentProfile, target: bigint, discountBps: bigint): bigint {
  const discounted = (amount: bigint) => (amount * (10_000n - discountBps) + 9_999n) / 10_000n;
  if (sketch.items.length === 0 || sketch.itemsTotalMinor <= 0n || (profile.currency && profile.currency !== sketch.currency)) {
    return discounted(target);
  }
  let floor = 0n;
  for (const item of sketch.items) {
    const rate = matchRate(item, profile);
    // Without a rate, the item's share of the latest ask (a haggled-down price stands) less the discount.
    floor += rate !== undefined ? rate : discounted((item.amountMinor * target) / sketch.itemsTotalMinor);
  }
  return floor < target ? floor : target;
}

function matchRate(item: SketchItem, profile: AgentProfile): bigint | undefined {
  const unitOf: Partial<Record<RateUnit, string>> = {
    [RateUnit.HOUR]: "hour",
    [RateUnit.DAY]: "day",
    [RateUnit.ITEM]: "item",
  };
  const words = new Set(item.description.toLowerCase().split(/[^a-z]+/).filter((w) => w.length > 2));
  const overlaps = (description: string) => description.toLowerCase().split(/[^a-z]+/).some((w) => w.length > 2 && words.has(w));
  const candidates = profile.rates.filter((rate) => {
    const unit = unitOf[rate.unit];
    if (unit !== undefined) return unit === item.unit;
    return item.unit === "" && overlaps(rate.description);
  });
  const chosen = candidates.find((r) => overlaps(r.description)) ?? candidates[0];
  if (!chosen || chosen.amountMinor <= 0n) return undefined;
  if (item.range) return undefined; // A range is uncertain by nature: the default discount applies.
  return unitOf[chosen.unit] !== undefined ? chosen.amountMinor * BigInt(item.quantity) : chosen.amountMinor;
}

function tradeDescription(profile: AgentProfile, peerTrade: string): string {
  const trade = profile.role === PartyRole.PROVIDER && profile.trade ? profile.trade : peerTrade || profile.trade;
  return trade ? `${trade[0]!.toUpperCase()}${trade.slice(1)} services` : "Services as discussed";
}
