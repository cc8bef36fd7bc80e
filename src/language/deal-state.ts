import { formatMoney } from "../core/money.js";
import { plainWords, saysAgreement } from "./agreement.js";
import { scanAmounts, type CountMention, type MoneyMention } from "./amounts.js";
import { describeMention, jobPhrase, saleObject, capitalise, sameThing } from "./phrases.js";

/**
 * The conversation's deal state: a pure reducer that every final transcript updates
 * (`nextDealState(state, utterance)`). It holds the items, offers, acceptances, drops and
 * stated totals, each with the utterance it came from, so the negotiator and the contract read
 * one record of what was said and can cite the words behind each term.
 */

/** One final utterance: who said it, what, and its position in the conversation. */
export interface DealUtterance {
  speakerUserId: string;
  text: string;
  index: number;
}

/** Where a fact came from. */
export interface SourceRef {
  index: number;
  speakerUserId: string;
  text: string;
}

/** A participant, with the role their profile states (fallback when the talk does not say). */
export interface DealParty {
  userId: string;
  /** "provider" (is paid), "client" (pays) or "" when the profile says neither. */
  profileRole: "provider" | "client" | "";
}

/** A thing being bought: a job, goods or lessons. */
export interface DealItem {
  id: string;
  /** The noun phrase the people used: "Gutter repair", "Sofa". */
  description: string;
  quantity: number;
  /** "hour", "session", "item", … when counted or charged per unit; "" otherwise. */
  unit: string;
  /** Price per unit (or of the whole item when quantity is 1); undefined when nobody named one. */
  unitPriceMinor?: bigint;
  /** quantity × unit price, or the range's maximum; undefined when unpriced. */
  amountMinor?: bigint;
  range?: { minMinor: bigint; maxMinor: bigint };
  currency: string;
  /** The price depends on something not known yet ("depends what's behind the wall"). */
  uncertain: boolean;
  /** Who last named its price. */
  pricedBy?: string;
  /** Who agreed to its latest price (the other party). */
  acceptedBy?: string;
  /** Set when the parties left it out. */
  dropped?: SourceRef;
  source: SourceRef;
  priceSource?: SourceRef;
}

/** A price one side put forward, for one item or for the whole deal. */
export interface DealOffer {
  id: string;
  speakerUserId: string;
  /** "total" or an item id. */
  scope: string;
  amountMinor: bigint;
  currency: string;
  /** "price" as said, "split" when splitting the difference. */
  how: "price" | "split";
  source: SourceRef;
}

/** One side said yes to an offer or to a stated total. */
export interface DealAcceptance {
  speakerUserId: string;
  /** An offer id, or a total's id. */
  ofId: string;
  source: SourceRef;
}

/** A total someone stated ("that's four hundred all in?"), and whether the other side confirmed it. */
export interface StatedTotal {
  id: string;
  speakerUserId: string;
  amountMinor: bigint;
  currency: string;
  confirmedBy?: string;
  confirmSource?: SourceRef;
  source: SourceRef;
}

/** Everything the conversation has said about the deal so far. */
export interface DealState {
  defaultCurrency: string;
  parties: readonly DealParty[];
  /** The deal's currency: the first one named explicitly, else the default. */
  currency: string;
  currencyNamed: boolean;
  items: DealItem[];
  offers: DealOffer[];
  acceptances: DealAcceptance[];
  drops: { itemId: string; speakerUserId: string; source: SourceRef }[];
  totals: StatedTotal[];
  /** Per user: positive when their words say they are paid (sell, charge), negative when they pay. */
  payeeVotes: Record<string, number>;
  /** "sale", "lessons" or "service": what kind of deal the words describe. */
  kind: "sale" | "lessons" | "service";
  /** The job or goods the talk names, used for an item whose own words name nothing. */
  subject?: string;
  /** Counts said so far, newest last, for rates priced in another turn ("three hours"). */
  counts: { count: CountMention; source: SourceRef }[];
  /** The last thing said that waits for a yes: an offer or a total, by id. */
  pending?: { id: string; speakerUserId: string };
  utterances: number;
}

/** The empty state for a conversation between `parties`; bare numbers take `defaultCurrency`. */
export function initialDealState(parties: readonly DealParty[], defaultCurrency: string): DealState {
  return {
    defaultCurrency,
    parties: [...parties],
    currency: defaultCurrency,
    currencyNamed: false,
    items: [],
    offers: [],
    acceptances: [],
    drops: [],
    totals: [],
    payeeVotes: Object.fromEntries(parties.map((p) => [p.userId, 0])),
    kind: "service",
    counts: [],
    utterances: 0,
  };
}

/** Reads a whole conversation into a state (a fold of `nextDealState`). */
export function readConversation(
  parties: readonly DealParty[],
  defaultCurrency: string,
  utterances: readonly DealUtterance[],
): DealState {
  return utterances.reduce(nextDealState, initialDealState(parties, defaultCurrency));
}

const TOTAL_BEFORE = /\b(?:total|totals|altogether|all in|all-in|in all|overall|comes? to|coming to|so that'?s|that'?s|that makes|makes it|which is|is|so|it'?s|call it)\s*(?:a|an|about|roughly)?\s*$/;
const TOTAL_AFTER = /^\s*(?:in total|total|altogether|all in|all-in|in all|overall|for (?:the lot|everything|all of it|all three|both)|the lot)\b/;
const SPLIT = /\b(?:split (?:the|that) difference|split it|meet (?:you )?(?:in the middle|halfway|half way)|halfway|half way|middle ground)\b/;
const UNCERTAIN = /\b(?:depend(?:s|ing)?|depends on|not sure|can'?t (?:say|tell|know)|won'?t know|until i (?:see|open|get|look)|once i (?:see|open|get|look)|might be more|could be more|behind the|what i find|whatever it (?:takes|costs)|roughly|estimate|ballpark)\b/;
const REFUSAL = /\b(?:too (?:much|expensive|high|steep|low|little)|can'?t (?:do|go|afford|accept|manage)|cannot (?:do|go|afford|accept)|no way|not (?:enough|happy|for that|that much)|won'?t (?:do|go|accept)|bit steep|rather not)\b|^\s*(?:no|nah|nope)\b/;
const YES = /^\s*(?:yes|yeah|yep|yup|aye|sure|ok|okay|right|fine|alright|all right|correct|exactly|perfect|great|lovely|brilliant|cheers|go on|go on then|that'?s (?:right|correct|it|fine|fair|great|perfect|grand)|you'?ve got (?:a|yourself a) deal|it'?s a deal|done|i'?ll take (?:it|them|that)|sold|fair enough|that works|works for me|sounds (?:good|great|fair|right))\b/;

/**
 * Folds one final utterance into the state. Pure: the input state is not changed. Money
 * mentions become items, offers or stated totals; a yes accepts the other side's pending offer
 * or confirms their stated total; "leave out the paint" drops an item.
 */
export function nextDealState(state: DealState, utterance: DealUtterance): DealState {
  const text = utterance.text.replace(/[’‘`]/g, "'");
  const lower = text.toLowerCase();
  if (lower.trim() === "") return state;
  const s: DealState = {
    ...state,
    items: state.items.map((i) => ({ ...i })),
    offers: [...state.offers],
    acceptances: [...state.acceptances],
    drops: [...state.drops],
    totals: state.totals.map((t) => ({ ...t })),
    payeeVotes: { ...state.payeeVotes },
    counts: [...state.counts],
    utterances: state.utterances + 1,
  };
  const source: SourceRef = { index: utterance.index, speakerUserId: utterance.speakerUserId, text: utterance.text };
  const speaker = utterance.speakerUserId;
  const scan = scanAmounts(text, s.currency, { bareNumbers: "loose" });
  const money = scan.money.filter((m) => !notAPrice(lower, m));
  if (!s.currencyNamed) {
    const named = money.find((m) => m.explicitCurrency);
    if (named) {
      s.currency = named.currency;
      s.currencyNamed = true;
      // Bare numbers said before the currency was named were read in the default: re-read them.
      for (const item of s.items) item.currency = named.currency;
    }
  }
  voteRoles(s, speaker, lower, money.length > 0);
  noteSubject(s, text);
  for (const c of scan.counts) s.counts.push({ count: c, source });
  if (s.counts.length > 40) s.counts.splice(0, s.counts.length - 40);

  const dropped = applyDrops(s, speaker, lower, source);
  const inCurrency = money.filter((m) => m.currency === s.currency);
  const refusal = REFUSAL.test(lower);

  if (SPLIT.test(lower) && inCurrency.length === 0) {
    const split = splitDifference(s, speaker, source);
    if (split) return s;
  }

  if (inCurrency.length === 0) {
    if (!refusal && !dropped && saysYes(lower)) accept(s, speaker, source);
    return s;
  }

  // A yes that repeats the other side's number ("OK, four hundred it is") accepts it.
  const pending = s.pending ? findOffer(s, s.pending.id) : undefined;
  if (
    pending &&
    pending.speakerUserId !== speaker &&
    !refusal &&
    inCurrency.length === 1 &&
    inCurrency[0]!.amountMinor === pending.amountMinor &&
    !inCurrency[0]!.range
  ) {
    accept(s, speaker, source);
    return s;
  }

  readPrices(s, speaker, text, lower, inCurrency, scan.counts, source);
  return s;
}

/** Years, times, ages, house numbers and dates said as bare numbers are not prices. */
function notAPrice(lower: string, m: MoneyMention): boolean {
  if (m.explicitCurrency) return false;
  const before = lower.slice(Math.max(0, m.start - 20), m.start);
  const after = lower.slice(m.end, m.end + 16);
  if (/\b(?:at|by|around|about|after|before|till|until|from)\s*$/.test(before) && /^\s*(?:o'?clock|am|pm|a\.m|p\.m|tomorrow|tonight|in the|on|then)\b/.test(after)) return true;
  if (/^\s*(?:o'?clock|am|pm|a\.m\.|p\.m\.|years?|yrs?|months? old|year old|st|nd|rd|th|percent|%|minutes?|mins?|seconds?|miles?|km|metres?|meters?|feet|foot|inches|square)\b/.test(after)) return true;
  if (/\b(?:number|no\.?|flat|house|unit|room|aged?|i'?m|he'?s|she'?s|in|since|back in|year|born in)\s*$/.test(before) && !/\b(?:for|pay|charge|cost|do)\s*$/.test(before)) {
    // "in 2019", "number 42": only when no price cue sits right before.
    return !/\b(?:for|pay|charge|costs?|do|offer|say)\b/.test(before);
  }
  return false;
}

/** What counts as a plain yes: an agreement phrase or a confirmation word, not negated. */
function saysYes(lower: string): boolean {
  return saysAgreement(lower) || YES.test(lower);
}

function findOffer(s: DealState, id: string): DealOffer | StatedTotal | undefined {
  return s.offers.find((o) => o.id === id) ?? s.totals.find((t) => t.id === id);
}

/** The speaker says yes to what the other side last put forward. */
function accept(s: DealState, speaker: string, source: SourceRef): void {
  const pending = s.pending;
  if (!pending || pending.speakerUserId === speaker) {
    // A yes with nothing pending from the other side still agrees to their latest prices.
    const theirs = [...s.offers].reverse().find((o) => o.speakerUserId !== speaker);
    if (!theirs) return;
    if (s.acceptances.some((a) => a.ofId === theirs.id)) return;
    const mineAfter = s.offers.some((o) => o.speakerUserId === speaker && o.source.index > theirs.source.index);
    if (mineAfter) return;
    record(s, speaker, theirs.id, source);
    return;
  }
  record(s, speaker, pending.id, source);
  s.pending = undefined;
}

function record(s: DealState, speaker: string, id: string, source: SourceRef): void {
  s.acceptances.push({ speakerUserId: speaker, ofId: id, source });
  const total = s.totals.find((t) => t.id === id);
  if (total) {
    total.confirmedBy = speaker;
    total.confirmSource = source;
    return;
  }
  const offer = s.offers.find((o) => o.id === id);
  if (!offer) return;
  // A yes to one offer agrees to the other prices that side said in the same breath.
  for (const o of s.offers) {
    if (o.source.index !== offer.source.index || o.speakerUserId !== offer.speakerUserId) continue;
    if (o.id !== id && !s.acceptances.some((a) => a.ofId === o.id)) s.acceptances.push({ speakerUserId: speaker, ofId: o.id, source });
    const item = s.items.find((i) => i.id === o.scope);
    if (item && item.amountMinor === o.amountMinor) item.acceptedBy = speaker;
  }
  // Accepting a total after itemised prices agrees to everything that side priced.
  if (offer.scope === "total") {
    for (const item of s.items) if (!item.dropped && item.pricedBy === offer.speakerUserId) item.acceptedBy = speaker;
  }
}

/** "Leave out the paint, I'll buy it myself": marks the named item dropped. Returns whether one was. */
function applyDrops(s: DealState, speaker: string, lower: string, source: SourceRef): boolean {
  const patterns = [
    /\b(?:leave out|leave off|skip|drop|forget(?: about)?|scrap|take off|knock off|cut out|without|no need for|don'?t need|don'?t bother with|never mind)\s+(?:the\s+|a\s+|an\s+|your\s+|that\s+)?([a-z][a-z -]{1,40})/g,
    /\bleave\s+(?:the\s+)?([a-z][a-z -]{1,30}?)\s+out\b/g,
    /\bi'?ll\s+(?:buy|get|source|supply|do|provide|bring|handle)\s+(?:the\s+)?([a-z][a-z -]{1,30}?)\s+(?:myself|ourselves)\b/g,
  ];
  let any = false;
  for (const re of patterns) {
    for (const m of lower.matchAll(re)) {
      const words = (m[1] ?? "").split(/\s+/).filter((w) => w.length > 0);
      const item = s.items.find((i) => !i.dropped && sameThing(i.description, words));
      if (!item) continue;
      item.dropped = source;
      s.drops.push({ itemId: item.id, speakerUserId: speaker, source });
      any = true;
    }
  }
  return any;
}

/** "Split the difference": the midpoint of both sides' latest totals, offered by the speaker. */
function splitDifference(s: DealState, speaker: string, source: SourceRef): boolean {
  const mine = latestTotalOffer(s, speaker);
  const other = s.parties.find((p) => p.userId !== speaker)?.userId;
  const theirs = other ? latestTotalOffer(s, other) : undefined;
  if (mine === undefined || theirs === undefined || mine === theirs) return false;
  const sum = mine + theirs;
  // Halves of odd minor sums round up in minor units: a penny never blocks a deal.
  const amount = sum / 2n + (sum % 2n);
  pushOffer(s, speaker, "total", amount, "split", source);
  return true;
}

/** The latest total a side put forward: their last total offer, else the sum of what they priced. */
function latestTotalOffer(s: DealState, userId: string): bigint | undefined {
  const offer = [...s.offers].reverse().find((o) => o.speakerUserId === userId);
  if (!offer) return undefined;
  if (offer.scope === "total") return offer.amountMinor;
  return liveTotal(s.items);
}

function liveTotal(items: readonly DealItem[]): bigint {
  return items.filter((i) => !i.dropped).reduce((sum, i) => sum + (i.amountMinor ?? 0n), 0n);
}

function pushOffer(s: DealState, speaker: string, scope: string, amount: bigint, how: DealOffer["how"], source: SourceRef): DealOffer {
  const offer: DealOffer = { id: `offer-${s.offers.length + 1}`, speakerUserId: speaker, scope, amountMinor: amount, currency: s.currency, how, source };
  s.offers.push(offer);
  s.pending = { id: offer.id, speakerUserId: speaker };
  return offer;
}

/**
 * Turns the prices of one utterance into items, offers and stated totals: a price with its own
 * words names an item; a rate takes its count; a total is stated; a lone number after items
 * exist is a counter-offer on the whole deal.
 */
function readPrices(
  s: DealState,
  speaker: string,
  text: string,
  lower: string,
  money: readonly MoneyMention[],
  counts: readonly CountMention[],
  source: SourceRef,
): void {
  const uncertain = UNCERTAIN.test(lower);
  const priced: { amount: bigint; at: MoneyMention }[] = [];
  let stated: MoneyMention | undefined;
  for (const m of money) {
    if (isTotalMention(lower, m, money, priced)) {
      stated = m;
      continue;
    }
    const quantity = quantityFor(s, m, counts, lower, source);
    const unitPrice = m.amountMinor;
    const range = m.range;
    const amount = range ? range.maxMinor * BigInt(quantity.count) : unitPrice * BigInt(quantity.count);
    const described = describeMention(text, m);
    const existing = pickItem(s, described, m, money.length);
    if (existing === "total") {
      pushOffer(s, speaker, "total", amount, "price", source);
      priced.push({ amount, at: m });
      continue;
    }
    let item = existing;
    if (!item) {
      item = {
        id: `item-${s.items.length + 1}`,
        description: described ? capitalise(described) : (s.subject ?? ""),
        quantity: quantity.count,
        unit: quantity.unit,
        currency: s.currency,
        uncertain: false,
        source,
      };
      s.items.push(item);
    } else if (described && (!item.description || item.description === s.subject) && !sameThing(item.description, described.split(/\s+/))) {
      item.description = capitalise(described);
    }
    item.quantity = quantity.count;
    item.unit = quantity.unit || item.unit;
    item.unitPriceMinor = range ? range.maxMinor : unitPrice;
    item.amountMinor = amount;
    item.range = range ? { minMinor: range.minMinor * BigInt(quantity.count), maxMinor: amount } : undefined;
    item.uncertain = item.uncertain || uncertain || range !== undefined;
    item.pricedBy = speaker;
    item.acceptedBy = undefined;
    item.priceSource = source;
    pushOffer(s, speaker, item.id, amount, "price", source);
    priced.push({ amount, at: m });
  }
  if (stated) {
    const total: StatedTotal = {
      id: `total-${s.totals.length + 1}`,
      speakerUserId: speaker,
      amountMinor: stated.amountMinor,
      currency: s.currency,
      source,
    };
    s.totals.push(total);
    // A total stated alone waits for the other side's yes; one that sums this turn's own prices
    // is that side's ask, and a yes to it confirms it too.
    s.pending = { id: total.id, speakerUserId: speaker };
    if (priced.length === 0 && s.items.filter((i) => !i.dropped).length === 0) {
      // "It's four hundred all in" with nothing itemised: the whole job at that price.
      const item: DealItem = {
        id: `item-${s.items.length + 1}`,
        description: s.subject ?? "",
        quantity: 1,
        unit: "",
        unitPriceMinor: stated.amountMinor,
        amountMinor: stated.amountMinor,
        currency: s.currency,
        uncertain,
        pricedBy: speaker,
        source,
        priceSource: source,
      };
      s.items.push(item);
    }
  }
}

/** Whether a mention is a total: total words around it, or the sum (or product) of the turn's other prices. */
function isTotalMention(lower: string, m: MoneyMention, all: readonly MoneyMention[], pricedSoFar: readonly { amount: bigint }[]): boolean {
  if (m.per || m.range) return false;
  const before = lower.slice(Math.max(0, m.start - 28), m.start);
  const after = lower.slice(m.end, m.end + 20);
  const index = all.indexOf(m);
  if (/\b(?:total|totals|altogether|all in|all-in|in all|overall|comes? to|coming to|that makes|makes it|grand total|call it|so that'?s|so it'?s)\b[^,.;]*$/.test(before)) return true;
  if (TOTAL_AFTER.test(after)) return true;
  if (index > 0 && pricedSoFar.length > 0) {
    const sum = pricedSoFar.reduce((acc, p) => acc + p.amount, 0n);
    if (sum === m.amountMinor && /\b(?:so|is|that'?s|makes|comes|be|which)\b[^,.;]*$/.test(before)) return true;
    if (sum === m.amountMinor && pricedSoFar.length >= 2) return true;
  }
  // "That's four hundred?" said alone, with items already on the table, is a total to confirm.
  if (all.length === 1 && TOTAL_BEFORE.test(before) && /^\s*(?:then|yeah|yes|right|ok|okay)?\s*\?/.test(after)) return true;
  return false;
}

/** The quantity a price covers: "thirty five each, so three of them"; "fifty an hour, three sessions a week for two weeks". */
function quantityFor(
  s: DealState,
  m: MoneyMention,
  counts: readonly CountMention[],
  lower: string,
  source: SourceRef,
): { count: number; unit: string } {
  if (!m.per) return { count: 1, unit: "" };
  if (m.per === "item") {
    const of = lower.slice(m.end).match(/\b(\w+)\s+of (?:them|those|these|em)\b/);
    if (of) {
      const n = wordCount(of[1] ?? "");
      if (n) return { count: n, unit: "item" };
    }
    const before = lower.slice(0, m.start).match(/\b(\w+)\s+(?:of (?:them|those|these)|[a-z]+s)\s+(?:at|for|is|are)?\s*$/);
    if (before) {
      const n = wordCount(before[1] ?? "");
      if (n) return { count: n, unit: "item" };
    }
  }
  const sameUnit = counts.filter((c) => c.unit === m.per || (SESSIONISH.has(c.unit) && SESSIONISH.has(m.per!)));
  let count: CountMention | undefined = sameUnit[0];
  if (!count) {
    for (let i = s.counts.length - 1; i >= 0; i--) {
      const seen = s.counts[i]!;
      if (seen.source.index === source.index) continue;
      if (seen.count.unit === m.per || (SESSIONISH.has(seen.count.unit) && SESSIONISH.has(m.per))) {
        count = seen.count;
        break;
      }
    }
  }
  if (!count) return { count: 1, unit: m.per };
  let n = count.countMax ?? count.count;
  // "three sessions a week for two weeks": the weekly count times the weeks.
  const tail = lower.slice(count.end, count.end + 12);
  const period = /^\s*(?:a|per|each|every)\s+(week|day|month)\b/.exec(tail)?.[1];
  if (period) {
    const span = [...counts, ...s.counts.map((c) => c.count)].find((c) => c.unit === period && c !== count);
    if (span) n *= span.count;
  }
  return { count: n, unit: count.unit === m.per ? m.per : count.unit };
}

const SESSIONISH = new Set(["hour", "session", "lesson", "visit"]);

function wordCount(word: string): number | undefined {
  const n = scanAmounts(`${word} items`, "GBP").counts[0];
  return n?.count;
}

/**
 * Which item a mention prices: the item with the same words, the only item when a bare number
 * is said (a counter-offer on the whole deal: "total"), or none (a new item).
 */
function pickItem(s: DealState, described: string | undefined, m: MoneyMention, mentions: number): DealItem | "total" | undefined {
  const live = s.items.filter((i) => !i.dropped);
  if (described) {
    const words = described.split(/\s+/);
    const same = live.find((i) => sameThing(i.description, words));
    if (same) return same;
    return undefined;
  }
  const unpriced = live.find((i) => i.amountMinor === undefined);
  if (unpriced) return unpriced;
  if (m.per) {
    const rate = live.find((i) => i.unit === m.per || (SESSIONISH.has(i.unit) && SESSIONISH.has(m.per!)));
    if (rate) return rate;
  }
  if (live.length === 1 && mentions === 1) {
    const only = live[0]!;
    // A new ranged price for a single item restates that item.
    if (m.range || only.range || m.per) return only;
    return "total";
  }
  if (live.length > 1 && mentions === 1) return "total";
  return undefined;
}

/** Role words: sellers and tradespeople are paid; buyers pay. */
function voteRoles(s: DealState, speaker: string, lower: string, priced: boolean): void {
  const other = s.parties.find((p) => p.userId !== speaker)?.userId;
  const vote = (payee: string | undefined, weight: number) => {
    if (payee === undefined) return;
    s.payeeVotes[payee] = (s.payeeVotes[payee] ?? 0) + weight;
    const rest = s.parties.find((p) => p.userId !== payee)?.userId;
    if (rest !== undefined) s.payeeVotes[rest] = (s.payeeVotes[rest] ?? 0) - weight;
  };
  if (/\bi(?:'?ll| will| can| could|'?d| would| am|'?m)?\s+(?:happy to |willing to |looking to |trying to )?(?:sell|selling|flog|let you have|part with)\b/.test(lower)) vote(speaker, 3);
  if (/\b(?:are you|you'?re|you are)\s+(?:selling|flogging)\b|\bwould you sell\b|\bhow much (?:do you want|are you asking|would you want)\b|\bwhat are you asking\b/.test(lower)) vote(other, 3);
  if (/\bi(?:'?ll| will| can| could|'?d| would)?\s+(?:like to |want to |happy to )?(?:buy|purchase)\b|\bi(?:'?ll| will)? take (?:it|them|the)\b/.test(lower)) vote(other, 3);
  if (/\b(?:do you|would you|you)\s+(?:want to |wanna )?(?:buy|purchase)\b/.test(lower)) vote(speaker, 3);
  if (/\bi(?:'?ll| will| can| could)?\s+(?:only )?pay\b|\bi(?:'?ll| will| can| could)? give you\b|\bmy budget\b|\bcan you\b|\bcould you\b|\bi need (?:a|an|some|my|the|someone|somebody)\b/.test(lower)) vote(other, 1);
  if (/\bi(?:'?ll| will| can| could|'?d| would)? charge\b|\bmy (?:rate|price|fee|quote|day rate|hourly rate)\b|\bi(?:'?d| would) (?:want|ask|need|charge)\b|\bi can (?:do|fix|repair|come|teach|paint|clean|mow|tutor)\b|\byou(?:'?ll| will| can)? pay me\b/.test(lower)) vote(speaker, 1);
  if (/\bi(?:'?ll| will| can) (?:teach|tutor|coach)\b/.test(lower)) vote(speaker, 1);
  if (priced && /\bfor (?:it|them|the lot)\b/.test(lower) && /\bi(?:'?ll| will| can| could)? (?:give|offer|do you)\b/.test(lower)) vote(other, 1);
}

/** Notes what the talk is about (the job or the goods) and what kind of deal it is. */
function noteSubject(s: DealState, text: string): void {
  const lower = text.toLowerCase();
  if (/\b(?:lessons?|tuition|tutoring|coaching|classes|class)\b/.test(lower) || /\bteach(?:ing)?\b/.test(lower)) s.kind = "lessons";
  // Buying something yourself ("I'll buy the paint myself") is no sale between the two.
  else if (s.kind !== "lessons" && (saleObject(text) !== undefined || /\b(?:selling|for sale|second[- ]hand)\b/.test(lower)) && !/\bmyself\b/.test(lower)) s.kind = "sale";
  if (s.subject) return;
  const sold = saleObject(text);
  if (sold) {
    s.subject = sold;
    return;
  }
  const job = jobPhrase(text);
  if (job) s.subject = job;
}

/** Who is paid and who pays, from the talk first and the profiles when the talk does not say. */
export function dealRoles(state: DealState): { payeeUserId: string; payerUserId: string; fromTalk: boolean } | undefined {
  const [a, b] = state.parties;
  if (!a || !b) return undefined;
  const margin = (state.payeeVotes[a.userId] ?? 0) - (state.payeeVotes[b.userId] ?? 0);
  // A strong word (sell, buy) outweighs the profile; a weak lean only breaks a tie.
  if (margin >= 3) return { payeeUserId: a.userId, payerUserId: b.userId, fromTalk: true };
  if (margin <= -3) return { payeeUserId: b.userId, payerUserId: a.userId, fromTalk: true };
  if (a.profileRole === "provider" && b.profileRole !== "provider") return { payeeUserId: a.userId, payerUserId: b.userId, fromTalk: false };
  if (b.profileRole === "provider" && a.profileRole !== "provider") return { payeeUserId: b.userId, payerUserId: a.userId, fromTalk: false };
  if (a.profileRole === "client" && b.profileRole !== "client") return { payeeUserId: b.userId, payerUserId: a.userId, fromTalk: false };
  if (b.profileRole === "client" && a.profileRole !== "client") return { payeeUserId: a.userId, payerUserId: b.userId, fromTalk: false };
  if (margin > 0) return { payeeUserId: a.userId, payerUserId: b.userId, fromTalk: true };
  if (margin < 0) return { payeeUserId: b.userId, payerUserId: a.userId, fromTalk: true };
  // Still level: whoever priced first is quoting, which the paid side usually does.
  const first = state.offers[0]?.speakerUserId;
  if (first === b.userId) return { payeeUserId: b.userId, payerUserId: a.userId, fromTalk: false };
  return { payeeUserId: a.userId, payerUserId: b.userId, fromTalk: false };
}

/** One item of the agreed deal, as the contract should say it. */
export interface AgreedItem {
  id: string;
  description: string;
  quantity: number;
  unit: string;
  unitPriceMinor?: bigint;
  amountMinor?: bigint;
  range?: { minMinor: bigint; maxMinor: bigint };
  /** Price uncertain (a range or "it depends"): to be held in escrow. */
  uncertain: boolean;
  source: SourceRef;
}

/** What the conversation settled, and what it left open. */
export interface DealTerms {
  currency: string;
  payeeUserId: string;
  payerUserId: string;
  rolesFromTalk: boolean;
  kind: DealState["kind"];
  subject?: string;
  items: AgreedItem[];
  /** The total both sides agreed aloud (a confirmed total or an accepted offer); else undefined. */
  agreedTotalMinor?: bigint;
  /** Every price is settled and the other side said yes to it. */
  agreed: boolean;
  /** The paid side's latest ask for everything, and the paying side's latest offer. */
  payeeAskMinor?: bigint;
  payerOfferMinor?: bigint;
  /** Where the agreed total came from. */
  totalSource?: SourceRef;
}

/**
 * What the conversation settled: the live items with their latest prices, the total both
 * sides agreed (a confirmed stated total wins over the sum of items; an accepted counter-offer
 * wins over earlier prices), and each side's latest position where they did not agree.
 * Undefined when the talk priced nothing.
 */
export function dealTerms(state: DealState): DealTerms | undefined {
  const roles = dealRoles(state);
  if (!roles) return undefined;
  const live = state.items.filter((i) => !i.dropped);
  if (live.length === 0 && state.offers.length === 0 && state.totals.length === 0) return undefined;
  const items: AgreedItem[] = live.map((i, n) => ({
    id: `item-${n + 1}`,
    description: i.description || state.subject || "",
    quantity: i.quantity,
    unit: i.unit,
    unitPriceMinor: i.unitPriceMinor,
    amountMinor: i.amountMinor,
    range: i.range,
    uncertain: i.uncertain,
    source: i.priceSource ?? i.source,
  }));
  const lastDropIndex = state.drops.reduce((max, d) => Math.max(max, d.source.index), -1);
  // The latest agreement on a whole-deal number: a confirmed total, or an accepted total offer.
  let agreedTotal: { amount: bigint; at: number; source: SourceRef } | undefined;
  for (const t of state.totals) {
    if (t.confirmedBy && t.confirmSource && (!agreedTotal || t.confirmSource.index >= agreedTotal.at)) {
      agreedTotal = { amount: t.amountMinor, at: t.confirmSource.index, source: t.source };
    }
  }
  for (const a of state.acceptances) {
    const offer = state.offers.find((o) => o.id === a.ofId);
    if (!offer || offer.scope !== "total" || offer.speakerUserId === a.speakerUserId) continue;
    if (!agreedTotal || a.source.index >= agreedTotal.at) agreedTotal = { amount: offer.amountMinor, at: a.source.index, source: offer.source };
  }
  // A later item price, or a drop, makes an earlier agreed total stale.
  const lastItemPrice = live.reduce((max, i) => Math.max(max, i.priceSource?.index ?? -1), -1);
  if (agreedTotal && (lastItemPrice > agreedTotal.at || lastDropIndex > agreedTotal.at)) agreedTotal = undefined;

  const lastPrice = (userId: string) => {
    const offer = [...state.offers].reverse().find((o) => o.speakerUserId === userId);
    if (!offer) return undefined;
    return offer.scope === "total" ? offer.amountMinor : liveTotal(live);
  };
  const payeeAsk = lastPrice(roles.payeeUserId);
  const payerOffer = lastPrice(roles.payerUserId);
  const everyPriced = live.length > 0 && live.every((i) => i.amountMinor !== undefined);
  const everyAccepted = everyPriced && live.every((i) => i.acceptedBy !== undefined && i.acceptedBy !== i.pricedBy);
  const agreed = agreedTotal !== undefined || everyAccepted;
  if (agreedTotal && items.length > 0) fitTotal(items, agreedTotal.amount, state.currency);
  return {
    currency: state.currency,
    payeeUserId: roles.payeeUserId,
    payerUserId: roles.payerUserId,
    rolesFromTalk: roles.fromTalk,
    kind: state.kind,
    subject: state.subject,
    items,
    agreedTotalMinor: agreedTotal?.amount ?? (everyAccepted ? liveTotal(live) : undefined),
    agreed,
    payeeAskMinor: payeeAsk,
    payerOfferMinor: payerOffer,
    totalSource: agreedTotal?.source,
  };
}

/**
 * Makes the items add up to an agreed total: a single item takes it; otherwise the difference
 * goes on the largest uncounted, unranged item (what people agree as "all in" is the price).
 */
function fitTotal(items: AgreedItem[], total: bigint, _currency: string): void {
  const sum = items.reduce((s, i) => s + (i.amountMinor ?? 0n), 0n);
  if (sum === total) return;
  if (items.length === 1) {
    const only = items[0]!;
    if (only.range && total >= only.range.minMinor && total <= only.range.maxMinor) {
      // Agreeing a number inside the range settles it.
      only.range = undefined;
      only.uncertain = false;
    } else if (only.range) {
      only.range = undefined;
    }
    if (only.quantity > 1 && total % BigInt(only.quantity) === 0n) {
      only.unitPriceMinor = total / BigInt(only.quantity);
    } else {
      only.quantity = 1;
      only.unitPriceMinor = total;
    }
    only.amountMinor = total;
    return;
  }
  const unpriced = items.filter((i) => i.amountMinor === undefined);
  if (unpriced.length === 1 && total > sum) {
    const item = unpriced[0]!;
    item.amountMinor = total - sum;
    item.unitPriceMinor = item.amountMinor;
    item.quantity = 1;
    return;
  }
  let anchor: AgreedItem | undefined;
  for (const i of items) if (i.quantity === 1 && !i.range && (!anchor || (i.amountMinor ?? 0n) > (anchor.amountMinor ?? 0n))) anchor = i;
  if (!anchor) anchor = items.find((i) => !i.range) ?? items[0]!;
  const others = sum - (anchor.amountMinor ?? 0n);
  const rest = total - others;
  if (rest <= 0n) return;
  anchor.amountMinor = rest;
  anchor.range = undefined;
  if (anchor.quantity > 1 && rest % BigInt(anchor.quantity) === 0n) anchor.unitPriceMinor = rest / BigInt(anchor.quantity);
  else {
    anchor.quantity = 1;
    anchor.unitPriceMinor = rest;
  }
}

/**
 * A short plain-text summary of the state: items with prices, who offered and who accepted,
 * drops, stated totals and who pays whom. For people and for a model's context.
 */
export function summariseDealState(state: DealState, names: Readonly<Record<string, string>> = {}): string {
  const who = (id: string) => names[id] ?? id;
  const m = (minor: bigint) => formatMoney(minor, state.currency);
  const lines: string[] = [];
  const roles = dealRoles(state);
  if (roles) {
    lines.push(`${who(roles.payerUserId)} pays ${who(roles.payeeUserId)} (${roles.fromTalk ? "from what they said" : "from their profiles"}).`);
  }
  lines.push(`Currency: ${state.currency}${state.currencyNamed ? "" : " (not said; profile default)"}.`);
  if (state.subject) lines.push(`About: ${state.subject} (${state.kind}).`);
  if (state.items.length === 0) lines.push("No items priced yet.");
  for (const item of state.items) {
    const price = item.range
      ? `${m(item.range.minMinor)}–${m(item.range.maxMinor)}`
      : item.amountMinor === undefined
        ? "no price yet"
        : item.quantity > 1 && item.unitPriceMinor !== undefined
          ? `${item.quantity} ${item.unit || "units"} × ${m(item.unitPriceMinor)} = ${m(item.amountMinor)}`
          : m(item.amountMinor);
    const parts = [`- ${item.description || "(unnamed)"}: ${price}`];
    if (item.unit && item.quantity === 1 && item.unitPriceMinor !== undefined && !item.range) parts.push(`per ${item.unit}`);
    if (item.uncertain) parts.push("uncertain");
    if (item.pricedBy) parts.push(`priced by ${who(item.pricedBy)}`);
    if (item.acceptedBy) parts.push(`accepted by ${who(item.acceptedBy)}`);
    if (item.dropped) parts.push(`DROPPED by ${who(item.dropped.speakerUserId)} ("${item.dropped.text.trim()}")`);
    lines.push(parts.join(", "));
  }
  const totalOffers = state.offers.filter((o) => o.scope === "total");
  for (const o of totalOffers) {
    const yes = state.acceptances.find((a) => a.ofId === o.id && a.speakerUserId !== o.speakerUserId);
    lines.push(
      `Offer for everything: ${m(o.amountMinor)} by ${who(o.speakerUserId)}${o.how === "split" ? " (splitting the difference)" : ""}` +
        (yes ? `, accepted by ${who(yes.speakerUserId)}` : ""),
    );
  }
  for (const t of state.totals) {
    lines.push(`Total stated: ${m(t.amountMinor)} by ${who(t.speakerUserId)}${t.confirmedBy ? `, confirmed by ${who(t.confirmedBy)}` : ", not confirmed"}.`);
  }
  const terms = dealTerms(state);
  if (terms) {
    if (terms.agreed && terms.agreedTotalMinor !== undefined) lines.push(`Agreed aloud: ${m(terms.agreedTotalMinor)} in total.`);
    else lines.push(`Not agreed yet${terms.payeeAskMinor !== undefined ? `; ask ${m(terms.payeeAskMinor)}` : ""}${terms.payerOfferMinor !== undefined ? `; offer ${m(terms.payerOfferMinor)}` : ""}.`);
  }
  return lines.join("\n");
}

/** Words of a text without punctuation (re-exported for callers that read phrases). */
export { plainWords };
