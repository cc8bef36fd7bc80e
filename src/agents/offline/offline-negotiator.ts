import { create } from "@bufbuild/protobuf";
import { LineItemKind, NegotiationStatus, type LineItem, type Negotiation, type Proposal } from "../../../gen/handshake/v1/deal_pb.js";
import { AgentMessageKind, AgentMessageSchema } from "../../../gen/handshake/v1/events_pb.js";
import { PartyRole, RateUnit, type AgentProfile } from "../../../gen/handshake/v1/profile_pb.js";
import type { TranscriptEntry, TriggerEvent } from "../../../gen/handshake/v1/transcript_pb.js";
import { formatMoney, minorDigits } from "../../core/money.js";
import { dealRoles, dealTerms, initialDealState, nextDealState, type AgreedItem, type DealParty, type DealState, type DealTerms } from "../../language/deal-state.js";
import { looksLikeGoods } from "../../language/phrases.js";
import type { Agent, AgentDeps, AgentFactory } from "../agent.js";
import { createAgentTools, escrowPreferenceProblem, type AgentToolSet, type LineItemInput, type ProposalInput, type ToolResult } from "../tools.js";
import { ceilTo, floorTo, negotiationTime, offerAt, STYLE_BETA, type Position } from "./concession.js";

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
 * The embedded agent engine. It reads the conversation into a deal state (src/language) and
 * writes down what the two people agreed aloud: the items, prices and who pays whom that the
 * talk settled, escrow for work whose price is uncertain. It fills only what the talk left
 * open (a missing price from its person's rates) and never re-haggles a number both accepted.
 * Where the people did not agree, it negotiates with Faratin time-dependent concession (see
 * concession.ts) between its person's target and reservation. Every move goes through the
 * tools, which hold the limits: above max auto-approve they ask the person. Deterministic.
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
  /** The items it would write down at the talk's prices (before any concession). */
  items: DraftItem[];
  position: Position;
  /** The people agreed these terms aloud: offer and accept exactly them. */
  agreed: boolean;
  summary: string;
}

function createOfflineAgent(deps: AgentDeps, settings: Settings): Agent {
  /** Made at the first decision: a room whose pair never strikes a deal does not hold them. */
  let tools: AgentToolSet | undefined;
  const conversation: TranscriptEntry[] = [];
  /** The deal state of every final transcript pushed so far (folded as they arrive). */
  let talk: DealState | undefined;
  let stopped = false;
  let chain: Promise<void> = Promise.resolve();
  /** Negotiation id and offer count last answered, so a repeated snapshot is not answered twice. */
  let answered = "";
  let balance: { id: string; minor: bigint; currency: string } | undefined;
  /** Negotiations whose over-the-limit ask the user was already told about. */
  const warned = new Set<string>();
  // The room binds roomId and userId already; binding them again would repeat the keys in each line.
  const log = deps.log.child({ engine: "offline" });

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
    tools ??= createAgentTools(deps);
    return tools.call(name, input);
  }

  async function reject(reason: string): Promise<void> {
    await call("evaluate_proposal", { decision: "reject", reason });
  }

  function parties(): DealParty[] {
    return [
      { userId: deps.userId, profileRole: roleName(deps.profile().role) },
      { userId: deps.peer.userId, profileRole: roleName(deps.peer.role) },
    ];
  }

  function defaultCurrency(): string {
    return deps.profile().currency || deps.peer.currency || "GBP";
  }

  /** The deal state of `source` (folded now), or of everything pushed so far. */
  function stateOf(source: readonly TranscriptEntry[] | undefined): DealState {
    if (source === undefined || source.length === 0) {
      const state = talk ?? initialDealState(parties(), defaultCurrency());
      // Profiles may have changed since the talk was read: roles fall back on the current ones.
      return { ...state, parties: parties() };
    }
    return fold(source.filter((e) => e.isFinal), parties(), defaultCurrency());
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

  /**
   * This agent's plan for the talk's terms: agreed aloud → exactly those terms; otherwise a
   * target and a reservation for its side. A problem when it may not act for its person.
   */
  async function plan(terms: DealTerms, negotiationId: string): Promise<Plan | { problem: string }> {
    const profile = deps.profile();
    const currency = terms.currency;
    const payee = terms.payeeUserId === deps.userId;
    const items = draftItems(terms, payee ? profile : undefined, tradeDescription(profile, deps.peer.trade));
    if (items.length === 0) return { problem: "no price was named for anything in the conversation" };
    const total = items.reduce((sum, i) => sum + i.amountMinor, 0n);
    const payeeTrade = payee ? profile.trade : deps.peer.trade;
    const summary = summaryOf(terms, items, currency, payeeTrade);
    if (terms.agreed) {
      // What both said yes to is the deal: no concession either way. The tools ask the payer's
      // person when it is above their limit.
      return { items, agreed: true, summary, position: { side: payee ? "provider" : "client", targetMinor: total, reservationMinor: total, currency } };
    }
    const ask = terms.payeeAskMinor ?? total;
    if (payee) {
      const target = ask;
      let floor = providerFloor(items, profile, target, currency, settings.discountBps);
      // Never concede below what the payer already offered.
      if (terms.payerOfferMinor !== undefined && terms.payerOfferMinor <= target && floor < terms.payerOfferMinor) floor = terms.payerOfferMinor;
      return { items, agreed: false, summary, position: { side: "provider", targetMinor: target, reservationMinor: floor < target ? floor : target, currency } };
    }
    const limitCurrency = profile.currency || currency;
    if (limitCurrency !== currency) {
      return { problem: `the price was discussed in ${currency} but your auto-approve limit is in ${limitCurrency}` };
    }
    if (profile.maxAutoApproveMinor <= 0n) return { problem: "your auto-approve limit is zero, so I may not agree to pay anything" };
    // Haggling for its person, the agent stays within their mandate, budget and balance.
    let cap = profile.maxAutoApproveMinor;
    const ceiling = terms.payerCapMinor ?? ask;
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
    let target = terms.payerOfferMinor ?? terms.payerCapMinor ?? ask;
    if (target > cap) target = cap;
    return { items, agreed: false, summary, position: { side: "client", targetMinor: target, reservationMinor: cap, currency } };
  }

  function beta(): number {
    return STYLE_BETA[deps.profile().style] ?? 1;
  }

  async function open(trigger: TriggerEvent, given: readonly TranscriptEntry[]): Promise<void> {
    const negotiation = deps.negotiation();
    if (!negotiation || negotiation.state() !== "open") return;
    const state = stateOf(given);
    let terms = dealTerms(state);
    if (!terms || !terms.items.some((i) => i.amountMinor !== undefined)) terms = priceFromRates(state, deps.userId, deps.profile());
    if (!terms) {
      tell("I could not find a price in the conversation, so there is nothing to offer yet.");
      await reject("No price was named in the conversation, so there is nothing to agree yet.");
      return;
    }
    const planned = await plan(terms, negotiation.id);
    if ("problem" in planned) {
      tell(`Approval needed: ${planned.problem}.`, true);
      await reject("My user needs to approve this deal themselves.");
      return;
    }
    const from = planned.items.reduce((sum, i) => sum + i.amountMinor, 0n);
    const total = planned.agreed ? from : offerAt(planned.position, 0, beta(), settings.kappa);
    const items = scaleLineItems(planned.items, from, total, planned.position);
    log.info({ trigger: trigger.kind, offerMinor: total.toString(), agreedAloud: planned.agreed }, "offline agent opening");
    const result = await call("propose", {
      ...proposalInput(planned.summary, planned.position, items),
      reason: planned.agreed ? "As we agreed in the conversation." : "Opening offer, from what was said in the conversation.",
    });
    if (result.isError && deps.negotiation()?.state() === "open") await reject(`I could not make a valid offer: ${result.content}`);
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
    const canCounter = offersSoFar < snapshot.maxRounds;
    const terms = dealTerms(stateOf(undefined));
    const talkFits = terms !== undefined && terms.currency === current.currency && terms.items.some((i) => i.amountMinor !== undefined);
    // With nothing priced in the talk, the peer's own offer is the only anchor: accept it within limits.
    const planned: Plan | { problem: string } = talkFits ? await plan(terms, snapshot.id) : await plan(termsFromProposal(current), snapshot.id);
    if ("problem" in planned) {
      tell(`Approval needed: ${planned.problem}.`, true);
      await reject("My user needs to approve this deal themselves.");
      return;
    }
    const { position } = planned;
    const mine: "provider" | "client" = current.providerUserId === deps.userId ? "provider" : "client";
    const agreedItems = planned.items;
    const agreedTotal = agreedItems.reduce((sum, i) => sum + i.amountMinor, 0n);
    if (mine !== position.side) {
      // The talk says who pays whom; an offer the other way round is corrected, not accepted.
      if (!canCounter) {
        await reject(`The offer has the roles the wrong way round: in our conversation my user ${position.side === "provider" ? "is paid" : "pays"}.`);
        return;
      }
      const result = await call("evaluate_proposal", {
        decision: "counter",
        reason: `In our conversation my user ${position.side === "provider" ? "is the one paid" : "is the one paying"}; here are the terms as said.`,
        counter: proposalInput(planned.summary, position, planned.agreed ? agreedItems : scaleLineItems(agreedItems, agreedTotal, position.targetMinor, position)),
      });
      if (result.isError && deps.negotiation()?.state() === "open") await reject(`I could not counter: ${result.content}`);
      return;
    }

    if (planned.agreed) {
      // Agreed aloud: accept exactly those terms, or put them back on the table.
      if (matchesTerms(current, agreedItems)) {
        await acceptOffer(current, profile, planned, canCounter, position);
        return;
      }
      if (!canCounter) {
        await reject("The final offer is not what we agreed in the conversation.");
        return;
      }
      const result = await call("evaluate_proposal", {
        decision: "counter",
        reason: "These are the terms we agreed in the conversation.",
        counter: proposalInput(planned.summary, position, agreedItems),
      });
      if (result.isError && deps.negotiation()?.state() === "open") await reject(`I could not counter: ${result.content}`);
      return;
    }

    const offered = current.totalMinor;
    const next = offerAt(position, negotiationTime(offersSoFar, snapshot.maxRounds), beta(), settings.kappa);
    const withinReservation = position.side === "provider" ? offered >= position.reservationMinor : offered <= position.reservationMinor;
    // AC_next: accept when the offer is at least as good as the one we would make next.
    const acceptable = position.side === "provider" ? offered >= next : offered <= next;

    if (withinReservation && (acceptable || !canCounter)) {
      await acceptOffer(current, profile, planned, canCounter, position);
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
      counter: proposalInput(current.summary || planned.summary, position, items),
    });
    if (result.isError && deps.negotiation()?.state() === "open") await reject(`I could not counter: ${result.content}`);
  }

  /** Accepts the peer's offer, or, when the payer's escrow preference is not met, counters the same money held in escrow. */
  async function acceptOffer(current: Proposal, profile: AgentProfile, planned: Plan, canCounter: boolean, position: Position): Promise<void> {
    const escrow = position.side === "client" ? escrowPreferenceProblem(current, profile) : undefined;
    if (escrow) {
      if (!canCounter) {
        await reject("The final offer pays immediately for work my user wants held in escrow.");
        return;
      }
      // Same money, held in escrow: the tool applies the preference to the counter.
      const result = await call("evaluate_proposal", {
        decision: "counter",
        reason: "The price is fine; my user wants this held in escrow until the work is confirmed.",
        counter: proposalInput(current.summary || planned.summary, position, fromProposal(current.lineItems)),
      });
      if (result.isError && deps.negotiation()?.state() === "open") await reject(`I could not counter: ${result.content}`);
      return;
    }
    const result = await call("evaluate_proposal", { decision: "accept", reason: planned.agreed ? "These are the terms we agreed." : "The offer is acceptable." });
    if (result.isError && deps.negotiation()?.state() === "open") await reject(`I cannot accept this offer: ${result.content}`);
  }

  return {
    pushTranscript(entry) {
      if (!entry.isFinal || stopped) return;
      conversation.push(entry);
      // Bounded memory: past CONVERSATION_KEEP lines the oldest half goes and the state is read
      // again from what is kept, once per half window, so a line costs one reduction on average.
      if (conversation.length > CONVERSATION_KEEP) {
        conversation.splice(0, conversation.length - CONVERSATION_KEEP / 2);
        talk = fold(conversation, parties(), defaultCurrency());
        return;
      }
      talk = nextDealState(talk ?? initialDealState(parties(), defaultCurrency()), toUtterance(entry, conversation.length - 1));
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

/**
 * The one thing the talk left open that the paid side may fill: the price of the job they
 * agreed on, from its person's own rate (a matching per-job rate, or its only one). Undefined
 * when this agent is not the paid side or no rate fits; nothing is invented.
 */
function priceFromRates(state: DealState, userId: string, profile: AgentProfile): DealTerms | undefined {
  const roles = dealRoles(state);
  if (!roles || roles.payeeUserId !== userId || (profile.currency && profile.currency !== state.currency)) return undefined;
  const subject = state.subject ?? "";
  const jobRates = profile.rates.filter((r) => r.unit === RateUnit.JOB || r.unit === RateUnit.UNSPECIFIED);
  const words = subject.toLowerCase().split(/[^a-z]+/).filter((w) => w.length > 2);
  const rate = jobRates.find((r) => words.some((w) => r.description.toLowerCase().includes(w))) ?? (jobRates.length === 1 ? jobRates[0] : undefined);
  if (!rate || rate.amountMinor <= 0n) return undefined;
  const description = subject || rate.description.charAt(0).toUpperCase() + rate.description.slice(1);
  return {
    currency: state.currency,
    payeeUserId: roles.payeeUserId,
    payerUserId: roles.payerUserId,
    rolesFromTalk: roles.fromTalk,
    kind: state.kind,
    ...(state.subject ? { subject: state.subject } : {}),
    items: [{ id: "item-1", description, quantity: 1, unit: "", unitPriceMinor: rate.amountMinor, amountMinor: rate.amountMinor, uncertain: false, source: { index: -1, speakerUserId: userId, text: "" } }],
    agreed: false,
    payeeAskMinor: rate.amountMinor,
  };
}

function toUtterance(entry: TranscriptEntry, index: number) {
  return { speakerUserId: entry.speakerUserId, text: entry.text, index };
}

/** Final lines an offline agent keeps and reads its deal state from. */
const CONVERSATION_KEEP = 500;

function fold(entries: readonly TranscriptEntry[], parties: DealParty[], currency: string): DealState {
  return entries.reduce((state, entry, i) => nextDealState(state, toUtterance(entry, i)), initialDealState(parties, currency));
}

function roleName(role: PartyRole): DealParty["profileRole"] {
  return role === PartyRole.PROVIDER ? "provider" : role === PartyRole.CLIENT ? "client" : "";
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

/**
 * The talk's items as draft line items: uncertain prices (a range, "it depends") go to escrow
 * with their range; an item nobody priced takes the payee's profile rate when one fits, else
 * it is left out (nothing is invented).
 */
function draftItems(terms: DealTerms, payeeProfile: AgentProfile | undefined, fallback: string): DraftItem[] {
  const out: DraftItem[] = [];
  for (const item of terms.items) {
    let amount = item.amountMinor;
    if (amount === undefined && payeeProfile) amount = matchRate(item, payeeProfile);
    if (amount === undefined || amount <= 0n) continue;
    const counted = item.quantity > 1 && item.unitPriceMinor !== undefined && item.unitPriceMinor * BigInt(item.quantity) === amount;
    out.push({
      id: `item-${out.length + 1}`,
      description: item.description || fallback,
      kind: item.range || item.uncertain ? LineItemKind.ESCROW : LineItemKind.IMMEDIATE,
      amountMinor: amount,
      quantity: counted ? item.quantity : 1,
      unitPriceMinor: counted ? item.unitPriceMinor! : amount,
      unit: counted ? item.unit : "",
      range: item.range ? { ...item.range } : undefined,
      condition: "",
    });
  }
  return out;
}

/** Whether a proposal says what the talk agreed: same total, same items' amounts, ranges and escrow. */
function matchesTerms(proposal: Proposal, items: readonly DraftItem[]): boolean {
  const total = items.reduce((sum, i) => sum + i.amountMinor, 0n);
  if (proposal.totalMinor !== total || proposal.lineItems.length !== items.length) return false;
  return items.every((want, i) => {
    const got = proposal.lineItems[i]!;
    if (got.amountMinor !== want.amountMinor) return false;
    if (want.range && (!got.range || got.range.minMinor !== want.range.minMinor || got.range.maxMinor !== want.range.maxMinor)) return false;
    // Uncertain work must be held; the payer's preference may hold more, never less.
    return want.kind !== LineItemKind.ESCROW || got.kind !== LineItemKind.IMMEDIATE;
  });
}

/** A proposal standing in for the conversation when the talk priced nothing. */
function termsFromProposal(proposal: Proposal): DealTerms {
  const items: AgreedItem[] = proposal.lineItems.map((item) => ({
    id: item.id,
    description: item.description,
    quantity: item.quantity,
    unit: item.unit,
    unitPriceMinor: item.unitPriceMinor,
    amountMinor: item.amountMinor,
    range: item.range ? { minMinor: item.range.minMinor, maxMinor: item.range.maxMinor } : undefined,
    uncertain: item.kind !== LineItemKind.IMMEDIATE,
    source: { index: -1, speakerUserId: proposal.proposedByUserId, text: "" },
  }));
  return {
    currency: proposal.currency,
    payeeUserId: proposal.providerUserId,
    payerUserId: proposal.clientUserId,
    rolesFromTalk: false,
    kind: "service",
    items,
    agreedTotalMinor: proposal.totalMinor,
    agreed: true,
    payeeAskMinor: proposal.totalMinor,
    payerOfferMinor: proposal.totalMinor,
  };
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

/** Trades that sell what they make or grow. */
const GOODS_TRADES = /\b(?:baker|beekeeper|farmer|florist|butcher|potter|grocer|brewer|winemaker|cheesemaker|maker|seller|dealer|shop|shopkeeper|vendor|artist|jeweller|jeweler|craftsman|carpenter's shop)\b/i;

/**
 * The proposal's summary, in the deal's own words: "Sale of Sofa", "Lessons: Piano lessons",
 * or the job; the contract's title is drawn from it.
 */
function summaryOf(terms: DealTerms, items: readonly DraftItem[], currency: string, payeeTrade: string): string {
  const total = items.reduce((sum, i) => sum + i.amountMinor, 0n);
  const what = terms.subject && items.length > 1 ? terms.subject : items.map((i) => i.description).join(", ");
  // Goods bought from someone with no trade, or from a trade that makes goods (a baker's bread),
  // or counted in things (twenty baguettes): a sale, though nobody said "sell".
  const goods =
    terms.kind === "service" &&
    items.every((i) => looksLikeGoods(i.description, i.unit)) &&
    (payeeTrade.trim() === "" || GOODS_TRADES.test(payeeTrade) || items.some((i) => i.unit !== "" && i.unit !== "item" && i.quantity > 1));
  // "We'll take it" about a holiday flat is a rental, not a sale: sold things read as goods.
  const sold = terms.kind === "sale" && items.every((i) => looksLikeGoods(i.description, i.unit));
  const head = sold || goods ? `Sale of ${what}` : terms.kind === "lessons" && !/lesson|tuition|tutor/i.test(what) ? `Lessons: ${what}` : what;
  return `${head}. ${items.length} item${items.length === 1 ? "" : "s"}, ${formatMoney(total, currency)} in total.`;
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

function proposalInput(summary: string, position: Position, items: readonly DraftItem[]): ProposalInput {
  return {
    summary,
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
 * The provider's floor for the items: its profile rates where one fits an item (per
 * hour/day/item × quantity, or a per-job rate whose words match), else the stated price less
 * the default discount. Never above the target.
 */
function providerFloor(items: readonly DraftItem[], profile: AgentProfile, target: bigint, currency: string, discountBps: bigint): bigint {
  const discounted = (amount: bigint) => (amount * (10_000n - discountBps) + 9_999n) / 10_000n;
  const sum = items.reduce((s, i) => s + i.amountMinor, 0n);
  if (items.length === 0 || sum <= 0n || (profile.currency && profile.currency !== currency)) return discounted(target);
  let floor = 0n;
  for (const item of items) {
    const rate = item.range ? undefined : matchRate(item, profile);
    // Without a rate, the item's share of the latest ask (a haggled-down price stands) less the discount.
    floor += rate !== undefined ? rate : discounted((item.amountMinor * target) / sum);
  }
  return floor < target ? floor : target;
}

/** The profile rate that prices an item: same unit, or a per-job rate with words in common. */
function matchRate(item: { description: string; unit: string; quantity: number }, profile: AgentProfile): bigint | undefined {
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
  return unitOf[chosen.unit] !== undefined ? chosen.amountMinor * BigInt(item.quantity) : chosen.amountMinor;
}

function tradeDescription(profile: AgentProfile, peerTrade: string): string {
  const trade = profile.role === PartyRole.PROVIDER && profile.trade ? profile.trade : peerTrade || profile.trade;
  return trade ? `${trade[0]!.toUpperCase()}${trade.slice(1)} services` : "Services as discussed";
}

