import { formatMoney } from "../core/money.js";
import { saysAgreement } from "./agreement.js";
import { scanAmounts, type CountMention, type MoneyMention } from "./amounts.js";
import { capitalise, describeMention, jobPhrase, namesAThing, nearbyNoun, saleObject, sameThing, topicPhrase } from "./phrases.js";

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
  /** Said as a ceiling ("I can pay 400 at most", "my budget is"), not an offer to pay it. */
  cap?: boolean;
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
  /** The subject came from a passing mention ("it's the gutter…") and gives way to a named job. */
  subjectWeak?: boolean;
  /** Counts said so far, newest last, for rates priced in another turn ("three hours"). */
  counts: { count: CountMention; source: SourceRef }[];
  /** Index of the last utterance that asked for a price ("how much is the cake?"). */
  priceAskedAt?: number;
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

const TOTAL_WORDS_BEFORE = /\b(?:total|totals|altogether|all in|all-in|in all|overall|comes? to|coming to|that makes|makes it|grand total|call it|so that'?s|so it'?s|so)\b[^,.;!?]*$/;
const TOTAL_AFTER = /^\s*(?:in total|total|altogether|all in|all-in|in all|overall|for (?:the lot|everything|all of it|all three|both|all)|the lot|including|included)\b/;
const SPLIT = /\b(?:split (?:the|that) difference|split it|meet (?:you |me )?(?:in the middle|halfway|half way)|middle ground|go halves)\b/;
const UNCERTAIN = /\b(?:depend(?:s|ing)?|not sure|can'?t (?:say|tell|know)|won'?t know|until i (?:see|open|get|look)|once i (?:see|open|get|look)|might be more|could be more|what'?s behind|what i find|whatever it (?:takes|costs)|ballpark)\b/;
const REFUSAL = /\b(?:too (?:much|expensive|high|steep|low|little|cheap)|a bit (?:low|high|much|steep|cheeky)|bit (?:low|steep|much|cheeky)|can'?t (?:do|go|afford|accept|manage)|cannot (?:do|go|afford|accept)|no way|not (?:enough|happy|for that|that much)|won'?t (?:do|go|accept)|rather not|i was thinking|more like|not there yet|not yet|let'?s see|the agents|agents (?:can|will|sort|work)|work it out|sort it out|settle it)\b|^\s*(?:no|nah|nope)\b(?!\s+(?:problem|worries|bother))/;
const YES = /(?:^|[.!?,]\s*)(?:yes|yeah|yep|yup|aye|sure|ok|okay|right then|fine|alright|all right|correct|exactly|perfect|great|good|lovely|brilliant|cheers|go on|go for it|that'?s (?:right|correct|it|fine|fair|great|perfect|grand|good|ok|okay)|you'?ve got (?:a|yourself a) deal|it'?s a deal|done|(?:i|we)'?ll take (?:it|them|that|the)|sold|fair enough|that works|works for me|sounds (?:good|great|fair|right)|handshake|let'?s (?:do|get) it|agreed|deal)\b/;
/** A ceiling, not an offer: "I can pay 400 at most", "my budget is". */
const BUDGET = /\b(?:budget|at most|no more than|tops|max(?:imum)?|can only (?:pay|afford|do|spend)|only have|can'?t go (?:above|over|higher)|cannot go (?:above|over|higher)|up to)\b/;

/** Asking for a price: the answer's bare numbers are prices. */
const PRICE_QUESTION = /\b(?:how much|what do you charge|what would (?:that|it|the \w+) cost|what does (?:that|it) cost|what'?s the (?:damage|price|cost)|what are we looking at|what are you asking|ballpark|the price\?|the cost\?|price-wise|make me an offer)\b/;

/** Said between two prices, the later one replaces the earlier: "USD 400, no wait, USD 450". */
const CORRECTION = /\b(?:no wait|wait|actually|sorry|i mean|make (?:that|it)|or rather|scratch that|no,)\b/;

/** A price as read from one utterance, adjusted to the conversation ("forty" for ¥40,000). */
interface Reading {
  m: MoneyMention;
  amountMinor: bigint;
  range?: { minMinor: bigint; maxMinor: bigint };
  described?: string;
  /** A weaker name from the words near the price (see nearbyNoun). */
  nearby?: string;
}

/**
 * Folds one final utterance into the state. Pure: the input state is not changed. Prices
 * become items, offers or stated totals; a yes (or repeating the other side's number) accepts
 * their latest offer or confirms their stated total; "leave out the paint" drops an item.
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
  const asked = s.priceAskedAt !== undefined && utterance.index - s.priceAskedAt <= 2;
  const readings = readMoney(s, text, lower, asked);
  if (PRICE_QUESTION.test(lower)) s.priceAskedAt = utterance.index;
  voteRoles(s, speaker, lower, readings.length > 0);
  noteSubject(s, text);
  const scan = scanAmounts(text, s.currency);
  for (const c of scan.counts) s.counts.push({ count: c, source });
  if (s.counts.length > 40) s.counts.splice(0, s.counts.length - 40);

  const dropped = applyDrops(s, speaker, lower, source);
  const refusal = REFUSAL.test(lower);

  if (readings.length === 0) {
    if (SPLIT.test(lower)) {
      // "Fine, split the difference" after the other side proposed it: a yes to their split.
      const pendingOffer = s.pending ? s.offers.find((o) => o.id === s.pending!.id) : undefined;
      if (pendingOffer?.how === "split" && pendingOffer.speakerUserId !== speaker) {
        if (!refusal) acceptId(s, speaker, pendingOffer.id, source);
        return s;
      }
      if (splitDifference(s, speaker, source)) return s;
    }
    if (!refusal && !dropped && saysYes(lower)) accept(s, speaker, source);
    return s;
  }

  // Numbers the other side put forward, said back: a yes to them, or (with "too much") a quote.
  const echoes = readings.map((r) => echoOf(s, speaker, r));
  // "Four hundred?" asks; it agrees to nothing until the other side says yes to it.
  const asking = /\?\s*$/.test(lower) && !saysYes(lower);
  if (echoes.every((e) => e !== undefined) && (!asking || refusal)) {
    if (!refusal) {
      acceptId(s, speaker, echoes[echoes.length - 1]!, source);
      nameFromAcceptance(s, echoes[echoes.length - 1]!, readings);
    }
    return s;
  }
  const onlyEchoes = echoes.every((e) => e !== undefined);
  const fresh = asking && onlyEchoes && !refusal ? readings : readings.filter((_, i) => echoes[i] === undefined);
  readPrices(s, speaker, lower, fresh, scan.counts, source);
  if (!dropped) applyOnly(s, speaker, lower, source);
  return s;
}

/**
 * The prices in an utterance: named currencies always; bare numbers after a price word, or
 * when they fit the prices already in play ("would you take three fifty?" after £450), or
 * as thousands when that fits ("forty" after ¥50,000). Years, times, ages, counts and house
 * numbers are left out; a price corrected in the same breath gives way to its correction.
 */
function readMoney(s: DealState, text: string, lower: string, answersPriceQuestion: boolean): Reading[] {
  let loose = scanAmounts(text, s.currency, { bareNumbers: "loose" }).money;
  if (!s.currencyNamed) {
    const named = loose.find((m) => m.explicitCurrency);
    if (named) {
      s.currency = named.currency;
      s.currencyNamed = true;
      for (const item of s.items) item.currency = named.currency;
      // Bare numbers in the same breath are in the currency just named.
      loose = scanAmounts(text, s.currency, { bareNumbers: "loose" }).money;
    }
  }
  const cued = new Set(scanAmounts(text, s.currency).money.map((m) => m.start));
  const inPlay = pricesInPlay(s);
  const out: Reading[] = [];
  const pending: MoneyMention[] = [];
  for (const m of loose) {
    if (m.currency !== s.currency) continue;
    if (notAPrice(lower, m)) continue;
    // "2.5k" is money talk by itself, as is a rate ("fifty an hour").
    if (m.explicitCurrency || m.per || /\d[kK]\b/.test(text.slice(m.start, m.end))) {
      out.push(reading(text, m, m.amountMinor, m.range));
      continue;
    }
    pending.push(m);
  }
  // Prices named in this same breath vouch for a wider spread ("class ¥25,000, ingredients five thousand").
  const here: bigint[] = out.map((r) => r.amountMinor);
  // Price words first ("would you take three fifty?"), so "four fifty" before it can fit them.
  pending.sort((a, b) => Number(cued.has(b.start)) - Number(cued.has(a.start)));
  for (const m of pending) {
    // With nothing priced yet, a bare number needs a price word, a range, or to answer "how much?".
    // A number said on its own ("Three hundred.") is a quote.
    const alone = lower.replace(/[^a-z0-9]+/g, " ").trim() === lower.slice(m.start, m.end).replace(/[^a-z0-9]+/g, " ").trim() && m.amountMinor >= 1_000n;
    const fitsNow =
      inPlay.length > 0
        ? fits(m.amountMinor, inPlay)
        : cued.has(m.start) || m.range !== undefined || answersPriceQuestion || alone || copulaPrice(text, lower, m);
    if (fitsNow || fits(m.amountMinor, here, 20n)) {
      out.push(reading(text, m, m.amountMinor, m.range));
      inPlay.push(m.amountMinor);
      here.push(m.amountMinor);
      continue;
    }
    // "Would you take forty?" after ¥50,000: people drop the thousands once the scale is clear.
    const thousand = m.amountMinor * 1000n;
    if (inPlay.length > 0 && m.amountMinor * 100n < minOf(inPlay) && fits(thousand, inPlay)) {
      const range = m.range ? { minMinor: m.range.minMinor * 1000n, maxMinor: m.range.maxMinor * 1000n } : undefined;
      out.push(reading(text, m, thousand, range));
    }
  }
  out.sort((a, b) => a.m.start - b.m.start);
  // "450 instead of 500", "down from 500": the later number is the one replaced.
  for (let i = out.length - 2; i >= 0; i--) {
    const between = lower.slice(out[i]!.m.end, out[i + 1]!.m.start);
    if (/^\s*(?:instead of|rather than|not|down from|knocked down from|reduced from)\s*$/.test(between)) out.splice(i + 1, 1);
  }
  // "Usually sixty, but I'll do it for ninety": a usual price is no offer when another follows.
  for (let i = out.length - 2; i >= 0; i--) {
    const before = lower.slice(Math.max(0, out[i]!.m.start - 24), out[i]!.m.start);
    if (/\b(?:usually|normally|typically|would normally|list price|rrp|it was|it'?s usually)\b[^,.;]*$/.test(before)) {
      const [gone] = out.splice(i, 1);
      if (gone?.described && !out[i]!.described) out[i]!.described = gone.described;
    }
  }
  // "USD 400, no wait, USD 450": the earlier price is withdrawn, its words carry over.
  for (let i = out.length - 2; i >= 0; i--) {
    const between = lower.slice(out[i]!.m.end, out[i + 1]!.m.start);
    if (CORRECTION.test(between) || /^\s*[,.]?\s*(?:actually|sorry)\b/.test(between)) {
      const [gone] = out.splice(i, 1);
      if (gone?.described && !out[i]!.described) out[i]!.described = gone.described;
    }
  }
  return out;
}

/**
 * "Lawn is thirty", "the tiles are two hundred": a thing said to be a number of ten or more is
 * a price, while a person or an animal said to be a number is an age ("my son is fourteen").
 */
function copulaPrice(text: string, lower: string, m: MoneyMention): boolean {
  if (m.amountMinor < 1_000n) return false;
  if (!/\b(?:is|are|would be|will be|costs?|comes to)\s+(?:about|around|roughly|just|only)?\s*$/.test(lower.slice(Math.max(0, m.start - 30), m.start))) return false;
  const named = describeMention(text, m);
  return named !== undefined && namesAThing(named);
}

function reading(text: string, m: MoneyMention, amountMinor: bigint, range?: { minMinor: bigint; maxMinor: bigint }): Reading {
  const described = describeMention(text, m);
  const nearby = described ? undefined : nearbyNoun(text, m);
  return { m, amountMinor, range, ...(described ? { described } : {}), ...(nearby ? { nearby } : {}) };
}

/** Within a factor (default four) of some price already said: a counter-offer, a restatement or a sibling item. */
function fits(amount: bigint, inPlay: readonly bigint[], factor = 4n): boolean {
  return inPlay.some((p) => amount * factor >= p && amount <= p * factor);
}

function minOf(values: readonly bigint[]): bigint {
  return values.reduce((a, b) => (b < a ? b : a));
}

/** Every amount said so far: items (unit and total), offers and stated totals. */
function pricesInPlay(s: DealState): bigint[] {
  const out: bigint[] = [];
  for (const i of s.items) {
    if (i.amountMinor !== undefined) out.push(i.amountMinor);
    if (i.unitPriceMinor !== undefined) out.push(i.unitPriceMinor);
    if (i.range) out.push(i.range.minMinor);
  }
  for (const o of s.offers) out.push(o.amountMinor);
  for (const t of s.totals) out.push(t.amountMinor);
  return out;
}

/** Years, times, ages, house numbers and dates said as bare numbers are not prices. */
function notAPrice(lower: string, m: MoneyMention): boolean {
  if (m.explicitCurrency || m.range) return false;
  const before = lower.slice(Math.max(0, m.start - 20), m.start);
  const after = lower.slice(m.end, m.end + 16);
  const said = lower.slice(m.start, m.end);
  if (/\d[:.]\s*$/.test(before) || /^\s*[:.]\d/.test(after)) return true;
  // "The white one", "that one": a bare "one" is a pronoun, never a price.
  if (/^(?:one|a|an)$/.test(said)) return true;
  // "BS3 4QT", "reg ends 64B": numbers joined to letters are codes, not prices.
  if (/[a-z]$/.test(before) || /^[a-z]/.test(after)) return true;
  if (/\bby\s*$/.test(before) || /^\s*by\s+\w/.test(after)) return true;
  if (/\b(?:serves|feeds|sleeps|seats|fits|holds|takes)\s+(?:about|around|up to|roughly)?\s*$/.test(before)) return true;
  if (/^(?:19|20)\d\d$/.test(said) && !/\b(?:for|pay|charge|costs?|quote|take|offer)\s*$/.test(before)) return true;
  if (/\b(?:at|by|around|about|after|before|till|until|from)\s*$/.test(before) && /^\s*(?:o'?clock|am|pm|a\.m|p\.m|tomorrow|tonight|in the (?:morning|afternoon|evening)|at night|on (?:mon|tues|wednes|thurs|fri|satur|sun)day|sharp|ish)\b/.test(after)) return true;
  if (/^\s*(?:o'?clock|am|pm|a\.m\.|p\.m\.|years?|yrs?|months?|weeks?|days?|year old|st|nd|rd|th|percent|%|minutes?|mins?|seconds?|miles?|km|kilometres?|metres?|meters?|feet|foot|inches|square|people|of (?:us|them|those|these|you))\b/.test(after)) return true;
  if (/\b(?:number|no\.?|flat|house|unit|room|floor|aged?|i'?m|he'?s|she'?s|since|back in|born in|on the|the)\s*$/.test(before)) return true;
  if (/\b(?:at)\s*$/.test(before) && /^\s*(?:[,.?!]|$|and|or|is|on|then)/.test(after) && !/\b(?:had it|have it|it'?s|selling|priced|listed)\s+(?:up\s+)?at\s*$/.test(before)) return true;
  return false;
}

/** What counts as a plain yes: an agreement phrase or a confirmation word, not negated. */
function saysYes(lower: string): boolean {
  return saysAgreement(lower) || YES.test(lower);
}

/** The id of the other side's offer or total that this reading repeats, if any. */
function echoOf(s: DealState, speaker: string, r: Reading): string | undefined {
  const same = (amount: bigint, range?: { minMinor: bigint; maxMinor: bigint }) =>
    r.range ? range !== undefined && range.minMinor === r.range.minMinor && range.maxMinor === r.range.maxMinor : amount === r.amountMinor && range === undefined;
  const candidates: { id: string; at: number }[] = [];
  for (const o of s.offers) {
    if (o.speakerUserId === speaker) continue;
    const item = s.items.find((i) => i.id === o.scope);
    if (item?.dropped) continue;
    const range = item && item.amountMinor === o.amountMinor ? item.range : undefined;
    if (same(o.amountMinor, range)) candidates.push({ id: o.id, at: o.source.index });
  }
  for (const t of s.totals) if (t.speakerUserId !== speaker && same(t.amountMinor)) candidates.push({ id: t.id, at: t.source.index });
  if (candidates.length === 0) return undefined;
  // Only a number still on the table: a later price from either side on the same thing replaces it.
  candidates.sort((a, b) => b.at - a.at);
  return candidates[0]!.id;
}

/** An item named only when accepted ("a hundred and five for the three chairs") takes that name. */
function nameFromAcceptance(s: DealState, id: string, readings: readonly Reading[]): void {
  const described = readings.find((r) => r.described)?.described;
  if (!described) return;
  const offer = s.offers.find((o) => o.id === id);
  const live = s.items.filter((i) => !i.dropped);
  const item = offer ? s.items.find((i) => i.id === offer.scope) : live.length === 1 ? live[0] : undefined;
  const target = item ?? (live.length === 1 ? live[0] : undefined);
  if (target && !target.description) target.description = capitalise(described);
}

/** The speaker says yes to what the other side last put forward. */
function accept(s: DealState, speaker: string, source: SourceRef): void {
  const pending = s.pending;
  if (pending && pending.speakerUserId !== speaker) {
    acceptId(s, speaker, pending.id, source);
    return;
  }
  // A yes with nothing pending from the other side still agrees to their latest prices,
  // unless the speaker named a price of their own since.
  const theirs = [...s.offers].reverse().find((o) => o.speakerUserId !== speaker);
  if (!theirs || s.acceptances.some((a) => a.ofId === theirs.id)) return;
  const mineAfter = s.offers.some((o) => o.speakerUserId === speaker && o.source.index > theirs.source.index);
  if (mineAfter) return;
  acceptId(s, speaker, theirs.id, source);
}

function acceptId(s: DealState, speaker: string, id: string, source: SourceRef): void {
  s.acceptances.push({ speakerUserId: speaker, ofId: id, source });
  if (s.pending?.id === id) s.pending = undefined;
  const total = s.totals.find((t) => t.id === id);
  if (total) {
    total.confirmedBy = speaker;
    total.confirmSource = source;
    // Confirming a total that sums the items agrees to the items too.
    const live = s.items.filter((i) => !i.dropped);
    if (liveTotal(live) === total.amountMinor) for (const item of live) if (item.pricedBy !== speaker) item.acceptedBy = speaker;
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
  // A yes agrees to everything that side has priced and the speaker has not re-priced since.
  for (const item of s.items) if (!item.dropped && item.pricedBy === offer.speakerUserId) item.acceptedBy = speaker;
  // Items the speaker accepted earlier stay accepted unless repriced since.
}

/** "Leave out the paint, I'll buy it myself": marks the named item dropped. Returns whether one was. */
function applyDrops(s: DealState, speaker: string, lower: string, source: SourceRef): boolean {
  const patterns = [
    /\b(?:leave out|leave off|skip|drop|forget(?: about)?|scrap|take off|knock off|cut out|without|no need for|don'?t need|don'?t bother with|don'?t worry about|never mind|not the|no)\s+(?:the\s+|a\s+|an\s+|your\s+|that\s+|doing the\s+)?([a-z][a-z -]{1,40})/g,
    /\bleave\s+(?:the\s+)?([a-z][a-z -]{1,30}?)\s+out\b/g,
    /\b(?:i|we)'?ll\s+(?:buy|get|source|supply|do|provide|bring|handle|sort)\s+(?:the\s+)?([a-z][a-z -]{1,30}?)\s+(?:myself|ourselves)\b/g,
    /\b(?:i|we)'?ll\s+(?:buy|get|source|supply|provide|bring)\s+(?:the\s+)?([a-z][a-z -]{1,30}?)(?:\s+(?:myself|ourselves|instead|separately))\b/g,
  ];
  let any = false;
  const live = s.items.filter((i) => !i.dropped);
  for (const re of patterns) {
    for (const m of lower.matchAll(re)) {
      const words = (m[1] ?? "").split(/\s+/).filter((w) => w.length > 0).slice(0, 4);
      const item = live.find((i) => !i.dropped && sameThing(i.description, words));
      // Dropping the only item is calling the deal off, not a drop: that is for the trigger to judge.
      if (!item || live.filter((i) => !i.dropped).length < 2) continue;
      item.dropped = source;
      s.drops.push({ itemId: item.id, speakerUserId: speaker, source });
      any = true;
    }
  }
  return applyOnly(s, speaker, lower, source) || any;
}

/**
 * "Only the windows", "just the kitchen then, for £250": every other item is left out. Run
 * again after the utterance's prices, so a new item named this way replaces the old scope.
 */
function applyOnly(s: DealState, speaker: string, lower: string, source: SourceRef): boolean {
  const only = lower.match(/\b(?:only|just)\s+(?:the\s+|do the\s+)?([a-z][a-z -]{1,30})/);
  if (!only) return false;
  const live = s.items.filter((i) => !i.dropped);
  const words = (only[1] ?? "").split(/\s+/).slice(0, 3);
  const keep = live.filter((i) => sameThing(i.description, words));
  if (keep.length === 0 || keep.length === live.length) return false;
  for (const item of live) {
    if (keep.includes(item)) continue;
    item.dropped = source;
    s.drops.push({ itemId: item.id, speakerUserId: speaker, source });
  }
  return true;
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
  const live = s.items.filter((i) => !i.dropped);
  return live.length === 1 ? offer.amountMinor : liveTotal(live);
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
 * Turns the new prices of one utterance into items, offers and stated totals: a price with
 * its own words names an item; a rate takes its count; a total is stated; a bare number with
 * items on the table is a counter-offer (on the only item, or on the whole deal).
 */
function readPrices(
  s: DealState,
  speaker: string,
  lower: string,
  readings: readonly Reading[],
  counts: readonly CountMention[],
  source: SourceRef,
): void {
  const uncertain = UNCERTAIN.test(lower);
  const capped = BUDGET.test(lower);
  const firstOffer = s.offers.length;
  const priced: bigint[] = [];
  let stated: Reading | undefined;
  for (const r of readings) {
    const m = r.m;
    if (isTotalMention(s, lower, r, priced)) {
      stated = r;
      continue;
    }
    const live = s.items.filter((i) => !i.dropped);
    // "Four hours, so that's a hundred and forty" after "$35/hr": the rate's total.
    const rateItem = !m.per && !r.range ? rateTotalFor(s, live, r.amountMinor, speaker, lower.slice(0, m.start), counts) : undefined;
    if (rateItem) {
      const quantity = Number(r.amountMinor / rateItem.unitPriceMinor!);
      rateItem.quantity = quantity;
      rateItem.amountMinor = r.amountMinor;
      if (r.described && (!rateItem.description || rateItem.description === s.subject)) rateItem.description = capitalise(r.described);
      reprice(s, rateItem, speaker, source, uncertain);
      priced.push(r.amountMinor);
      continue;
    }
    const quantity = quantityFor(s, m, counts, lower, source);
    const unitPrice = r.range ? r.range.maxMinor : r.amountMinor;
    const amount = unitPrice * BigInt(quantity.count);
    const target = pickItem(s, speaker, r, readings.length);
    if (target === "total") {
      pushOffer(s, speaker, "total", amount, "price", source);
      priced.push(amount);
      continue;
    }
    let item = target;
    if (!item) {
      // The price's own words, else the talk's subject for the first item, else the words nearby.
      const name = r.described ?? (live.length === 0 && s.subject ? s.subject : (r.nearby ?? s.subject ?? ""));
      item = {
        id: `item-${s.items.length + 1}`,
        description: capitalise(name),
        quantity: quantity.count,
        unit: quantity.unit,
        currency: s.currency,
        uncertain: false,
        source,
      };
      s.items.push(item);
    } else if (r.described && (!item.description || item.description === s.subject) && live.length > 1) {
      item.description = capitalise(r.described);
    } else if (r.described && !item.description) {
      item.description = capitalise(r.described);
    }
    item.quantity = quantity.count;
    item.unit = quantity.unit || (m.per ? m.per : item.unit);
    item.unitPriceMinor = unitPrice;
    item.amountMinor = amount;
    item.range = r.range
      ? { minMinor: r.range.minMinor * BigInt(quantity.count), maxMinor: amount }
      : quantity.fewest !== undefined
        ? { minMinor: unitPrice * BigInt(quantity.fewest), maxMinor: amount }
        : undefined;
    item.uncertain = uncertain || item.range !== undefined;
    reprice(s, item, speaker, source, item.uncertain);
    priced.push(amount);
  }
  if (capped) for (const o of s.offers.slice(firstOffer)) o.cap = true;
  if (stated) {
    const live = s.items.filter((i) => !i.dropped);
    const total: StatedTotal = { id: `total-${s.totals.length + 1}`, speakerUserId: speaker, amountMinor: stated.amountMinor, currency: s.currency, source };
    s.totals.push(total);
    s.pending = { id: total.id, speakerUserId: speaker };
    if (live.length === 0) {
      // "It's four hundred all in" with nothing itemised: the whole job at that price.
      const item: DealItem = {
        id: `item-${s.items.length + 1}`,
        description: stated.described ? capitalise(stated.described) : (s.subject ?? ""),
        quantity: 1,
        unit: "",
        unitPriceMinor: stated.amountMinor,
        amountMinor: stated.amountMinor,
        currency: s.currency,
        uncertain,
        source,
      };
      s.items.push(item);
      reprice(s, item, speaker, source, uncertain);
      s.pending = { id: total.id, speakerUserId: speaker };
    } else if (live.length === 1 && stated.described && (!live[0]!.description || live[0]!.description === s.subject)) {
      live[0]!.description = capitalise(stated.described);
    }
  }
}

/** Records a new price on an item: the speaker's offer, waiting for the other side's yes. */
function reprice(s: DealState, item: DealItem, speaker: string, source: SourceRef, uncertain: boolean): void {
  item.pricedBy = speaker;
  item.acceptedBy = undefined;
  item.priceSource = source;
  item.uncertain = uncertain || item.range !== undefined;
  pushOffer(s, speaker, item.id, item.amountMinor ?? 0n, "price", source);
}

/**
 * The live per-unit item whose total `amount` is, when the same person works it out aloud:
 * an exact multiple (2 to 1000 units) with that count said now or just before, or after "so".
 */
function rateTotalFor(
  s: DealState,
  live: readonly DealItem[],
  amount: bigint,
  speaker: string,
  before: string,
  counts: readonly CountMention[],
): DealItem | undefined {
  const rates = live.filter((i) => i.unit !== "" && i.unitPriceMinor !== undefined && i.unitPriceMinor > 0n && !i.range && i.pricedBy === speaker);
  if (rates.length !== 1) return undefined;
  const rate = rates[0]!;
  if (amount === rate.amountMinor || amount % rate.unitPriceMinor! !== 0n) return undefined;
  const k = Number(amount / rate.unitPriceMinor!);
  if (k < 2 || k > 1000) return undefined;
  const recent = s.counts.slice(-6).map((c) => c.count);
  const said = [...counts, ...recent].some((c) => c.count === k || c.countMax === k);
  return said || /\b(?:so|that'?s|that makes|makes it|comes to)\b/.test(before) ? rate : undefined;
}

/** Whether a reading is a total: total words around it, or the sum of the items or of this turn's prices. */
function isTotalMention(s: DealState, lower: string, r: Reading, pricedSoFar: readonly bigint[]): boolean {
  const m = r.m;
  if (m.per || r.range) return false;
  const clauseStart = Math.max(lower.lastIndexOf(",", m.start - 1), lower.lastIndexOf(".", m.start - 1), lower.lastIndexOf("?", m.start - 1), -1);
  const before = lower.slice(Math.max(0, clauseStart + 1, m.start - 40), m.start);
  const after = lower.slice(m.end, m.end + 24);
  const live = s.items.filter((i) => !i.dropped);
  const sumLive = liveTotal(live);
  const sumHere = pricedSoFar.reduce((a, b) => a + b, 0n);
  if (TOTAL_AFTER.test(after) && (live.length > 0 || pricedSoFar.length > 0)) return true;
  if (pricedSoFar.length > 0 && sumHere === r.amountMinor) return true;
  if (live.length >= 2 && sumLive === r.amountMinor) return true;
  if (live.length >= 1 && /\b(?:total|altogether|all in|all-in|in all|overall|comes? to|that makes|grand total)\b[^,.;!?]*$/.test(before)) return true;
  if (live.length === 1 && live[0]!.amountMinor === r.amountMinor && live[0]!.quantity > 1 && TOTAL_WORDS_BEFORE.test(before)) return true;
  return false;
}

/** The quantity a price covers: "thirty five each, so three of them"; "fifty an hour, three sessions a week for two weeks". */
function quantityFor(
  s: DealState,
  m: MoneyMention,
  counts: readonly CountMention[],
  lower: string,
  source: SourceRef,
): { count: number; unit: string; fewest?: number } {
  if (!m.per) return { count: 1, unit: "" };
  if (m.per === "item") {
    const of = lower.slice(m.end).match(/\b(\w+)\s+of (?:them|those|these|em)\b/);
    const n = of ? wordCount(of[1] ?? "") : undefined;
    if (n) return { count: n, unit: "item" };
    // "£20 each for the three chairs": a count of things in the same breath.
    const things = counts.find((c) => c.count > 1 && !SESSIONISH.has(c.unit) && !["week", "day", "month", "night"].includes(c.unit));
    if (things) return { count: things.count, unit: "item" };
  }
  const matches = (unit: string) => unit === m.per || (SESSIONISH.has(unit) && SESSIONISH.has(m.per!));
  let count: CountMention | undefined = counts.find((c) => matches(c.unit) && c.start > m.end) ?? counts.find((c) => matches(c.unit));
  let from: "here" | "before" = "here";
  if (!count) {
    for (let i = s.counts.length - 1; i >= 0; i--) {
      const seen = s.counts[i]!;
      if (seen.source.index === source.index) continue;
      if (matches(seen.count.unit)) {
        count = seen.count;
        from = "before";
        break;
      }
    }
  }
  if (!count) return { count: 1, unit: m.per };
  let n = count.countMax ?? count.count;
  // "two to three hours": the price is a range, from the fewest units to the most.
  let fewest = count.countMax !== undefined && count.countMax > count.count ? count.count : undefined;
  // "three sessions a week for two weeks": the weekly count times the weeks.
  const text = from === "here" ? lower : (s.counts.find((c) => c.count === count)?.source.text.toLowerCase() ?? "");
  const tail = text.slice(count.end, count.end + 12);
  const period = /^\s*(?:a|per|each|every)\s+(week|day|month)\b/.exec(tail)?.[1];
  if (period) {
    const pool = from === "here" ? counts : s.counts.filter((c) => c.source.text.toLowerCase() === text).map((c) => c.count);
    const span = pool.find((c) => c.unit === period && c.start > count!.end);
    if (span) {
      n *= span.count;
      if (fewest !== undefined) fewest *= span.count;
    }
  }
  return { count: n, unit: matches(count.unit) && count.unit !== m.per && m.per === "hour" ? count.unit : m.per, ...(fewest !== undefined ? { fewest } : {}) };
}

const SESSIONISH = new Set(["hour", "session", "lesson", "visit"]);

function wordCount(word: string): number | undefined {
  return scanAmounts(`${word} items`, "GBP").counts[0]?.count;
}

/**
 * Which item a price is for: the item with the same words; for a bare number, the only item
 * (or "total", an offer on the whole deal, when several are on the table); none for a new item.
 */
function pickItem(s: DealState, speaker: string, r: Reading, mentions: number): DealItem | "total" | undefined {
  const live = s.items.filter((i) => !i.dropped);
  if (r.described) {
    const words = r.described.split(/\s+/);
    const same = live.find((i) => sameThing(i.description, words));
    if (same) return same;
    // One thing on the table, priced by the other side: a counter-offer names the same thing.
    if (live.length === 1 && mentions === 1 && !live[0]!.uncertain && !r.range) {
      const only = live[0]!;
      if (!only.description || (only.pricedBy !== speaker && only.acceptedBy === undefined)) return only;
    }
    return undefined;
  }
  const unpriced = live.find((i) => i.amountMinor === undefined);
  if (unpriced) return unpriced;
  // "First a survey, £200. Then the insulation itself, £800": the same person listing items.
  if (r.nearby && live.length > 0 && live.every((i) => i.pricedBy === speaker) && !r.m.per) {
    const words = r.nearby.split(/\s+/);
    const same = live.find((i) => sameThing(i.description, words));
    if (same) return same;
    if (!(s.subject && sameThing(s.subject, words) && live.length === 1 && live[0]!.description === s.subject)) return undefined;
  }
  if (r.m.per) {
    const rate = live.find((i) => i.unit === r.m.per || (SESSIONISH.has(i.unit) && SESSIONISH.has(r.m.per!)));
    if (rate) return rate;
    return undefined;
  }
  if (live.length === 0) return undefined;
  if (live.length === 1) return live[0]!;
  return "total";
}

/**
 * Role words: sellers and tradespeople are paid; buyers pay. Strong words (sell, buy, "I'll
 * give you £120 for them", "make me an offer") weigh 3 and outweigh a profile; weak ones
 * ("can you…", "my rate") weigh 1 and only break a tie.
 */
function voteRoles(s: DealState, speaker: string, lower: string, priced: boolean): void {
  const other = s.parties.find((p) => p.userId !== speaker)?.userId;
  const vote = (payee: string | undefined, weight: number) => {
    if (payee === undefined) return;
    s.payeeVotes[payee] = (s.payeeVotes[payee] ?? 0) + weight;
    const rest = s.parties.find((p) => p.userId !== payee)?.userId;
    if (rest !== undefined) s.payeeVotes[rest] = (s.payeeVotes[rest] ?? 0) - weight;
  };
  const I = "(?:i|we)(?:'?ll|'?d| will| can| could| would| am|'?m|'?re| are)?";
  // Taking a thing physically ("I'll take it down") is no purchase.
  const takeIt = new RegExp(`\\b${I}\\s+take (?:it|them|the \\w+|those|these)(?!\\s+(?:down|up|off|out|away|back|apart|home|round|over|in))\\b`);
  if (new RegExp(`\\b${I}\\s+(?:happy to |willing to |looking to |trying to |like to )?(?:sell|selling|flog|flogging|let you have|part with)\\b`).test(lower)) vote(speaker, 3);
  if (/\bmake me an offer\b|\byou(?:'re| are) paying me\b|\b(?:you )?pay me\b/.test(lower)) vote(speaker, 3);
  if (/\b(?:are you|you'?re|you are)\s+(?:selling|flogging)\b|\bwould you sell\b|\bhow much (?:do you want|are you asking|would you want)\b|\bwhat are you asking\b/.test(lower)) vote(other, 3);
  // Buying something yourself ("I'll buy the paint myself") is no purchase from the other person.
  const buysFromOther = new RegExp(`\\b${I}\\s+(?:like to |want to |happy to )?(?:buy|purchase)\\b(?![^,.;!?]*\\b(?:myself|ourselves|elsewhere|separately)\\b)`).test(lower);
  if (buysFromOther || takeIt.test(lower)) vote(other, 3);
  if (priced && new RegExp(`\\b${I}\\s+(?:give|pay|offer) you\\b`).test(lower)) vote(other, 3);
  if (/\b(?:do you|would you|you)\s+(?:want to |wanna )?(?:buy|purchase)\b|\bdo you want (?:those|these|the|my|it|them)\b/.test(lower)) vote(speaker, 2);
  if (/\bi(?:'?ll| will| can| could)?\s+(?:only )?pay\b|\bmy budget\b|\bcan you\b|\bcould you\b|\bi need (?:a|an|some|my|the|someone|somebody)\b/.test(lower)) vote(other, 1);
  if (/\bi(?:'?ll| will| can| could|'?d| would)? charge\b|\bmy (?:rate|price|fee|quote|day rate|hourly rate)\b|\bi(?:'?d| would) (?:want|ask|need|charge|quote)\b|\bi can (?:do|fix|repair|come|teach|paint|clean|mow|tutor|help)\b/.test(lower)) vote(speaker, 1);
  if (/\bi(?:'?ll| will| can) (?:teach|tutor|coach)\b/.test(lower)) vote(speaker, 1);
  if (/^\W*sold\b|,\s*sold\b/.test(lower)) vote(speaker, 2);
}

/** Notes what the talk is about (the job or the goods) and what kind of deal it is. */
function noteSubject(s: DealState, text: string): void {
  const lower = text.toLowerCase();
  if (/\b(?:lessons?|tuition|tutoring|coaching|classes|class)\b/.test(lower) || /\bteach(?:ing)?\b/.test(lower)) s.kind = "lessons";
  // Buying something yourself ("I'll buy the paint myself") is no sale between the two.
  else if (s.kind !== "lessons" && (saleObject(text) !== undefined || /\b(?:sell|sells|selling|sold|buy (?:it|them|this|that|those|these|yours?)|buy them|would you buy|off you|from you|for sale|second[- ]hand|the listing|(?:i|we)'?ll take (?:it|the|them|a|an|one|two|three|four|five|six|\d+)(?!\s+(?:down|up|off|out|away|back|apart|home)))\b/.test(lower)) && !/\bmyself\b/.test(lower)) s.kind = "sale";
  // Until a price is said, the latest job named is the subject ("could be a fitting" … "the leak repair?").
  if (s.subject && !s.subjectWeak && s.offers.length > 0) return;
  const strong = saleObject(text) ?? jobPhrase(text);
  if (strong) {
    s.subject = strong;
    s.subjectWeak = false;
    return;
  }
  if (s.subject) return;
  const weak = topicPhrase(text);
  if (weak) {
    s.subject = weak;
    s.subjectWeak = true;
  }
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

/** One item of the agreed deal, as the contract should say it (uncertain: held in escrow). */
export type AgreedItem = Pick<DealItem, "id" | "description" | "quantity" | "unit" | "unitPriceMinor" | "amountMinor" | "range" | "uncertain" | "source">;

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
  /** The paying side's stated ceiling ("400 at most"), when they gave one. */
  payerCapMinor?: bigint;
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
    description: i.description || state.subject || unitName(i.unit),
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

  // A side's position: their last offer for everything, else every live item at the price they
  // last named for it (or its current price where they named none).
  const lastPrice = (userId: string) => {
    const theirs = state.offers.filter((o) => o.speakerUserId === userId);
    const offer = theirs[theirs.length - 1];
    if (!offer) return undefined;
    if (offer.scope === "total") return offer.amountMinor;
    return live.reduce((sum, item) => {
      const mine = [...theirs].reverse().find((o) => o.scope === item.id);
      return sum + (mine?.amountMinor ?? item.amountMinor ?? 0n);
    }, 0n);
  };
  const payeeAsk = lastPrice(roles.payeeUserId);
  const payerOffers = state.offers.filter((o) => o.speakerUserId === roles.payerUserId);
  const lastPayer = payerOffers[payerOffers.length - 1];
  const payerOffer = lastPayer && !lastPayer.cap ? lastPrice(roles.payerUserId) : undefined;
  const capOffer = [...payerOffers].reverse().find((o) => o.cap);
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
    payerCapMinor: capOffer?.amountMinor,
    totalSource: agreedTotal?.source,
  };
}

/** "lesson" → "Lessons": a name for counted work when nothing better was said. */
function unitName(unit: string): string {
  return unit === "" || unit === "item" || unit === "hour" || unit === "day" ? "" : capitalise(`${unit}s`);
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
