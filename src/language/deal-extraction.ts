import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import type { TranscriptEntry } from "../../gen/handshake/v1/transcript_pb.js";
import { saysAgreement } from "./agreement.js";
import { parseNumberWords, scanAmounts, type CountMention, type MoneyMention } from "./amounts.js";

/**
 * Reads a deal out of a conversation, deterministically: who provides and who pays, the priced
 * items of the provider's quote, and where each side's stated numbers stand. The offline
 * negotiator turns this sketch into offers.
 */

/** A participant as the analysis needs them: id and the role their profile states. */
export interface ConversationParty {
  userId: string;
  role: PartyRole;
}

/** One priced item as stated in the conversation. */
export interface SketchItem {
  id: string;
  description: string;
  /** Stated price, minor units (range maximum for ranged items; quantity × unit price when counted). */
  amountMinor: bigint;
  quantity: number;
  unitPriceMinor: bigint;
  /** "hour", "day", … when counted or charged per unit; "" otherwise. */
  unit: string;
  range?: { minMinor: bigint; maxMinor: bigint };
}

/** What the conversation says about the deal. */
export interface DealSketch {
  providerUserId: string;
  clientUserId: string;
  currency: string;
  /** Items of the most itemised quote (the provider's, or the client's if only they named prices). */
  items: SketchItem[];
  /** Sum of `items`. */
  itemsTotalMinor: bigint;
  /** The provider's latest stated total. */
  providerAskMinor?: bigint;
  /** The client's latest stated offer (not a cap). */
  clientOfferMinor?: bigint;
  /** The client's latest stated cap ("my budget is", "up to", "at most"). */
  clientBudgetMinor?: bigint;
  /** The client said yes to the provider's latest ask without naming a new number. */
  clientAgreed: boolean;
  /** The provider said yes to the client's latest offer without naming a new number. */
  providerAgreed: boolean;
  /** What the job is, e.g. "Fix boiler". */
  jobDescription: string;
}

const PROVIDER_CUES: readonly RegExp[] = [
  /\bi(?: can|'ll| will| could| would|'d)? (?:fix|repair|install|paint|build|clean|make|deliver|sort|design|replace|service|cut|mow|teach|tutor|move|fit|decorate|rewire|plaster|tile|do the job|do it for|do that for)\b/,
  /\bi(?:'ll| will)? charge\b/,
  /\bmy (?:rate|price|fee|quote|day rate|hourly rate)\b/,
  /\bi(?:'d| would) (?:want|ask|need|charge)\b/,
  /\bit(?:'ll| will| would|'d) (?:cost|be|come to)\b/,
  /\bi can come (?:round|over|out)\b/,
  /\bcall[- ]?out\b/,
];

const CLIENT_CUES: readonly RegExp[] = [
  /\bi need\b/,
  /\bi(?:'ll| will| can| could)? (?:only )?pay\b/,
  /\bcan you\b/,
  /\bcould you\b/,
  /\bwould you\b/,
  /\bhow much\b/,
  /\bmy budget\b/,
  /\bi(?:'m| am) looking for\b/,
  /\bi want\b/,
  /\bi(?:'d| would) like\b/,
  /\bi was thinking\b/,
  /\bi can afford\b/,
];

const BUDGET_CUES = /\b(?:budget|up to|max|maximum|at most|no more than|tops|afford|can't go (?:above|over|higher)|cannot go (?:above|over|higher)|can only|only have|limit)\b/;

const TOTAL_CUES = /\b(?:total|altogether|all in|all-in|in all|overall|comes to|so that's|that's)\b/;

const JOB_VERBS =
  "fix|repair|install|replace|paint|clean|service|build|deliver|design|mow|tutor|teach|move|fit|decorate|rewire|plaster|tile|unblock|assemble|cut|walk|photograph|cater|translate|edit|develop|make";

const STOP = new Set([
  "the", "a", "an", "your", "my", "our", "their", "his", "her", "this", "that", "these", "those", "it", "them", "some",
  "and", "plus", "but", "then", "so", "or", "for", "to", "of", "with", "on", "in", "at", "is", "are", "be", "will",
  "would", "i", "you", "we", "they", "if", "about", "around", "roughly", "probably", "maybe", "just", "only", "total",
  "all", "altogether", "which", "what", "ok", "okay", "yeah", "yes", "no", "hmm", "well", "lot", "thing", "itself",
  "themselves", "there", "here", "up", "down", "out",
]);

const PREPOSITIONS = new Set(["under", "in", "on", "at", "for", "with", "by", "from", "to", "before", "after", "next", "tomorrow", "today", "this", "by", "over", "inside", "outside", "upstairs", "downstairs"]);

/** Decides who provides and who pays: profiles first, then what each person said. Symmetric in the parties. */
export function decideRoles(
  conversation: readonly TranscriptEntry[],
  parties: readonly [ConversationParty, ConversationParty],
): { providerUserId: string; clientUserId: string } {
  const [a, b] = [...parties].sort((x, y) => (x.userId < y.userId ? -1 : x.userId > y.userId ? 1 : 0)) as [
    ConversationParty,
    ConversationParty,
  ];
  const stated = (p: ConversationParty) => p.role === PartyRole.PROVIDER || p.role === PartyRole.CLIENT;
  if (stated(a) && (!stated(b) || b.role !== a.role)) return a.role === PartyRole.PROVIDER ? as(a, b) : as(b, a);
  if (stated(b) && !stated(a)) return b.role === PartyRole.PROVIDER ? as(b, a) : as(a, b);
  // Both unknown (or both claim the same side): the talk decides.
  const lean = (userId: string) => {
    let score = 0;
    for (const entry of conversation) {
      if (entry.speakerUserId !== userId || !entry.isFinal) continue;
      const text = entry.text.toLowerCase().replace(/’/g, "'");
      for (const cue of PROVIDER_CUES) if (cue.test(text)) score += 1;
      for (const cue of CLIENT_CUES) if (cue.test(text)) score -= 1;
    }
    return score;
  };
  const margin = lean(a.userId) - lean(b.userId);
  if (margin > 0) return as(a, b);
  if (margin < 0) return as(b, a);
  // Still level: whoever named a price first is quoting, which providers usually do.
  for (const entry of conversation) {
    if (!entry.isFinal || scanAmounts(entry.text, "GBP").money.length === 0) continue;
    if (entry.speakerUserId === a.userId) return as(a, b);
    if (entry.speakerUserId === b.userId) return as(b, a);
  }
  return as(a, b);
}

function as(provider: ConversationParty, client: ConversationParty) {
  return { providerUserId: provider.userId, clientUserId: client.userId };
}

interface Utterance {
  index: number;
  entry: TranscriptEntry;
  money: MoneyMention[];
  counts: CountMention[];
}

/**
 * Sketches the deal in a conversation. `defaultCurrency` prices bare numbers ("I can do 260");
 * returns undefined when nobody named a price.
 */
export function sketchDeal(
  conversation: readonly TranscriptEntry[],
  parties: readonly [ConversationParty, ConversationParty],
  defaultCurrency: string,
  options: {
    /** Roles already settled (by the offer on the table) instead of decided here. */
    roles?: { providerUserId: string; clientUserId: string };
    /** Item description when the talk names no job; default "Services as discussed". */
    fallbackDescription?: string;
  } = {},
): DealSketch | undefined {
  const finals = conversation.filter((e) => e.isFinal && e.text.trim() !== "");
  const { providerUserId, clientUserId } = options.roles ?? decideRoles(finals, parties);
  const fallbackDescription = options.fallbackDescription ?? "Services as discussed";
  const utterances: Utterance[] = finals.map((entry, index) => ({ index, entry, ...scanAmounts(entry.text, defaultCurrency) }));
  const priced = utterances.filter((u) => u.money.length > 0);
  if (priced.length === 0) return undefined;

  const fromProvider = priced.filter((u) => u.entry.speakerUserId === providerUserId);
  const fromClient = priced.filter((u) => u.entry.speakerUserId === clientUserId);
  // The provider's words define the items; only if they named no price do the client's.
  const quoting = fromProvider.length > 0 ? fromProvider : fromClient;
  const first = quoting.flatMap((u) => u.money).find((m) => m.explicitCurrency) ?? quoting[0]!.money[0]!;
  const currency = first.currency;
  const inCurrency = (u: Utterance) => u.money.every((m) => m.currency === currency);
  const jobDescription = findJobDescription(finals) ?? fallbackDescription;
  const quote = collectItems(quoting.filter(inCurrency), utterances, jobDescription);
  if (quote.items.length === 0) return undefined;
  const items = quote.items;
  const itemsTotalMinor = items.reduce((s, i) => s + i.amountMinor, 0n);
  const lastProvider = [...fromProvider].reverse().find(inCurrency);

  let clientOfferMinor: bigint | undefined;
  let clientBudgetMinor: bigint | undefined;
  let lastClientOffer: Utterance | undefined;
  for (const u of fromClient) {
    if (!inCurrency(u)) continue;
    const total = utteranceTotal(u, utterances);
    if (BUDGET_CUES.test(u.entry.text.toLowerCase())) clientBudgetMinor = total;
    else {
      clientOfferMinor = total;
      lastClientOffer = u;
    }
  }
  const providerAskMinor = fromProvider.length > 0 ? quote.askMinor : clientOfferMinor;

  // A "deal" / "sounds good" after the other side's latest number, with no new number since, is a yes to it.
  const agreedAfter = (speaker: string, after: number) =>
    utterances.some((u) => u.index > after && u.entry.speakerUserId === speaker && saysAgreement(u.entry.text)) &&
    !priced.some((u) => u.index > after && u.entry.speakerUserId === speaker);
  const clientAgreed = lastProvider !== undefined && agreedAfter(clientUserId, lastProvider.index);
  const providerAgreed =
    lastClientOffer !== undefined &&
    (lastProvider === undefined || lastProvider.index < lastClientOffer.index) &&
    agreedAfter(providerUserId, lastClientOffer.index);

  return {
    providerUserId,
    clientUserId,
    currency,
    items,
    itemsTotalMinor,
    providerAskMinor,
    clientOfferMinor,
    clientBudgetMinor,
    clientAgreed,
    providerAgreed,
    jobDescription,
  };
}

/** Money mentions that price items (not a restated total). */
function itemMentions(u: Utterance): MoneyMention[] {
  const text = u.entry.text.toLowerCase();
  const plain = u.money.filter((m) => !isTotal(text, m, u.money));
  return plain.length > 0 ? plain : u.money.slice(0, 1);
}

function isTotal(text: string, m: MoneyMention, all: readonly MoneyMention[]): boolean {
  if (all.length < 2 || m.per || m.range) return false;
  const before = text.slice(Math.max(0, m.start - 24), m.start);
  const after = text.slice(m.end, m.end + 16);
  if (TOTAL_CUES.test(before) || /^\s*(?:in total|total|altogether|all in|overall)\b/.test(after)) return true;
  const others = all.filter((o) => o !== m && !o.per);
  return others.length >= 2 && others.reduce((s, o) => s + o.amountMinor, 0n) === m.amountMinor;
}

/** The total an utterance names: its total mention, else the sum of its items. */
function utteranceTotal(u: Utterance, all: readonly Utterance[]): bigint {
  const text = u.entry.text.toLowerCase();
  const total = u.money.find((m) => isTotal(text, m, u.money));
  if (total) return total.amountMinor;
  return itemMentions(u).reduce((sum, m) => sum + priceOf(m, u, all).amountMinor, 0n);
}

/** Price of one mention, multiplying a rate by its count ("£40 an hour … three hours"). */
function priceOf(
  m: MoneyMention,
  u: Utterance,
  all: readonly Utterance[],
): { amountMinor: bigint; quantity: number; unitPrice: bigint; unit: string; range?: { minMinor: bigint; maxMinor: bigint } } {
  if (m.per) {
    const count = countFor(m.per, m, u, all);
    if (count) {
      if (count.countMax !== undefined && count.countMax > count.count) {
        const max = m.amountMinor * BigInt(count.countMax);
        return {
          amountMinor: max,
          quantity: count.countMax,
          unitPrice: m.amountMinor,
          unit: m.per,
          range: { minMinor: m.amountMinor * BigInt(count.count), maxMinor: max },
        };
      }
      return { amountMinor: m.amountMinor * BigInt(count.count), quantity: count.count, unitPrice: m.amountMinor, unit: m.per };
    }
    return { amountMinor: m.amountMinor, quantity: 1, unitPrice: m.amountMinor, unit: m.per };
  }
  if (m.range) return { amountMinor: m.range.maxMinor, quantity: 1, unitPrice: m.range.maxMinor, unit: "", range: m.range };
  return { amountMinor: m.amountMinor, quantity: 1, unitPrice: m.amountMinor, unit: "" };
}

/** The count of `unit`s for a rate: nearest in the same utterance, else the latest said by anyone before. */
function countFor(unit: string, m: MoneyMention, u: Utterance, all: readonly Utterance[]): CountMention | undefined {
  const same = u.counts.filter((c) => c.unit === unit);
  if (same.length > 0) {
    return [...same].sort((x, y) => Math.abs(x.start - m.start) - Math.abs(y.start - m.start))[0];
  }
  for (let i = all.length - 1; i >= 0; i--) {
    const other = all[i]!;
    if (other.index >= u.index + 2) continue; // A count said long after the quote belongs to later haggling.
    const found = [...other.counts].reverse().find((c) => c.unit === unit);
    if (found) return found;
  }
  return undefined;
}

/**
 * Builds the item list from one side's priced turns, in order. A turn's price with its own
 * words ("$25 for the valve") is an item, replacing an earlier one with the same words; a rate
 * replaces the earlier rate of the same unit; a lone price without words after items exist
 * ("I could come down to £550") restates the total. Returns the items and the latest total asked.
 */
function collectItems(turns: readonly Utterance[], all: readonly Utterance[], jobDescription: string): { items: SketchItem[]; askMinor: bigint } {
  interface Draft { key: string; described?: string; per?: string; price: ReturnType<typeof priceOf> }
  const drafts: Draft[] = [];
  let ask = 0n;
  for (const u of turns) {
    const text = u.entry.text;
    const lower = text.toLowerCase();
    const total = u.money.find((m) => isTotal(lower, m, u.money));
    const mentions = itemMentions(u);
    for (const m of mentions) {
      if (m === total) continue;
      const price = priceOf(m, u, all);
      const described = describeMention(text, m);
      const key = m.per ? `per:${m.per}` : described ? `d:${normaliseKey(described)}` : "";
      if (key === "" && drafts.length > 0 && mentions.length === 1) {
        // A lone number after the items were named is a new total for the same work.
        ask = price.amountMinor;
        continue;
      }
      const existing = key === "" ? undefined : drafts.find((d) => d.key === key);
      if (existing) {
        ask += price.amountMinor - existing.price.amountMinor;
        existing.price = price;
        if (described) existing.described = described;
      } else {
        drafts.push({ key: key || `n:${drafts.length}`, described, per: m.per, price });
        ask += price.amountMinor;
      }
    }
    if (total && mentions.some((m) => m !== total)) ask = total.amountMinor;
  }
  const items = drafts.map<SketchItem>((d, i) => {
    let description = d.described;
    if (drafts.length === 1 && !d.per) description = jobDescription;
    if (!description) description = d.per ? `Labour (per ${d.per})` : i === 0 ? jobDescription : `${jobDescription} (part ${i + 1})`;
    return {
      id: `item-${i + 1}`,
      description: capitalise(description),
      amountMinor: d.price.amountMinor,
      quantity: d.price.quantity,
      unitPriceMinor: d.price.unitPrice,
      unit: d.price.unit,
      range: d.price.range,
    };
  });
  return { items, askMinor: ask > 0n ? ask : items.reduce((s, i) => s + i.amountMinor, 0n) };
}

function normaliseKey(text: string): string {
  return text
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length > 0 && !STOP.has(w))
    .join(" ");
}

/** Words naming what a price is for: "£80 for the call-out", "the parts are £60", "£80 call-out". */
function describeMention(text: string, m: MoneyMention): string | undefined {
  const afterWords = leadingWords(text.slice(m.end).replace(/^[\s,]+/, ""));
  if (afterWords[0]?.toLowerCase() === "for") {
    const phrase = contentWords(afterWords.slice(1));
    if (phrase && !isQuantity(phrase)) return phrase;
  }
  const clause = text.slice(0, m.start).split(/[,.;:!?]|\band\b|\bplus\b|\bthen\b/i).pop() ?? "";
  const verb = clause.match(
    /^(.*?)\b(?:is|are|will be|would be|could be|might be|should be|'ll be|comes to|costs?|runs?)(?:\s+(?:anything|anywhere|somewhere|roughly|about|around|approximately))?(?:\s+(?:from|between))?\s*$/i,
  );
  // "labour at £40 an hour": "at" names what a rate is for, but "meet me at £500" is no item.
  const named = verb?.[1] ?? (m.per ? clause.match(/^(.*?)\bat\s*$/i)?.[1] : undefined);
  if (named) {
    const phrase = contentWords(named.trim().split(/\s+/).slice(-4));
    if (phrase) return phrase;
  }
  if (afterWords.length > 0 && !AFTER_STOPPERS.has(afterWords[0]!.toLowerCase())) {
    const phrase = contentWords(afterWords);
    if (phrase && !isQuantity(phrase)) return phrase;
  }
  return undefined;
}

/** "three hours", "2 days": a count, not a name for what is bought. */
function isQuantity(phrase: string): boolean {
  return /\d/.test(phrase) || scanAmounts(phrase, "GBP").counts.length > 0 || parseNumberWords(phrase.toLowerCase().split(/\s+/)) !== undefined;
}

/** Words after a price that start a side remark, not a name for the item. */
const AFTER_STOPPERS = new Set([
  "depending", "including", "if", "when", "which", "since", "as", "because", "give", "or", "roughly", "approximately",
  "probably", "tops", "max", "each", "and", "then", "so", "but", "is", "it", "that", "would", "will", "for",
]);

/** Words up to the first punctuation, number or currency sign. */
function leadingWords(text: string): string[] {
  const stop = text.search(/[,.;:!?£€$¥\d]/);
  const chunk = stop === -1 ? text : text.slice(0, stop);
  return chunk.split(/\s+/).filter((w) => w.length > 0).slice(0, 8);
}

/** Up to four content words, stopping at a conjunction; undefined when only filler is left. */
function contentWords(words: readonly string[]): string | undefined {
  const kept: string[] = [];
  for (const raw of words) {
    const w = raw.replace(/[^\p{L}\p{N}'’-]/gu, "");
    const lower = w.toLowerCase();
    if (["and", "plus", "but", "then", "so", "or", "if", "which", "because"].includes(lower)) break;
    // "the leak under the sink" is about the leak: a preposition after the noun ends the phrase.
    if (kept.length > 0 && PREPOSITIONS.has(lower)) break;
    if (kept.length === 0 && STOP.has(lower)) continue;
    if (w) kept.push(w);
    if (kept.length >= 4) break;
  }
  while (kept.length > 0 && STOP.has(kept[kept.length - 1]!.toLowerCase())) kept.pop();
  if (kept.length === 0 || kept.every((w) => STOP.has(w.toLowerCase()))) return undefined;
  return kept.join(" ");
}

/** "I can fix your boiler" → "Fix boiler"; the first such phrase in the conversation. */
export function findJobDescription(conversation: readonly TranscriptEntry[]): string | undefined {
  const re = new RegExp(`\\b(${JOB_VERBS})\\s+(?:up\\s+)?((?:[a-z][a-z'-]*\\s*){1,4})`, "i");
  for (const entry of conversation) {
    const m = entry.text.match(re);
    if (!m) continue;
    const object = contentWords((m[2] ?? "").trim().split(/\s+/));
    if (object) return capitalise(`${m[1]!.toLowerCase()} ${object}`);
  }
  return undefined;
}

function capitalise(text: string): string {
  return text.length === 0 ? text : text[0]!.toUpperCase() + text.slice(1);
}
