import type { MoneyMention } from "./amounts.js";
import { parseNumberWords, scanAmounts } from "./amounts.js";

/**
 * Noun phrases in money talk: what a price is for ("forty for the paint" → "paint"), what a job
 * is ("can you fix the gutter" → "Gutter repair"), what is being sold ("I'll sell you my sofa"
 * → "Sofa"). Filler words ("it", "that", "the lot") are never a description.
 */

const STOP = new Set([
  "the", "a", "an", "your", "my", "our", "their", "his", "her", "this", "that", "these", "those", "it", "them", "some",
  "and", "plus", "but", "then", "so", "or", "for", "to", "of", "with", "on", "in", "at", "is", "are", "be", "will",
  "would", "i", "you", "we", "they", "if", "about", "around", "roughly", "probably", "maybe", "just", "only", "total",
  "all", "altogether", "which", "what", "ok", "okay", "yeah", "yes", "no", "hmm", "well", "lot", "thing", "things", "itself",
  "themselves", "there", "here", "up", "down", "out", "job", "work", "whole", "everything", "each", "one", "ones",
  "both", "cash", "please", "me", "us", "him", "myself", "yourself", "do", "does", "did", "can", "could", "should",
  "price", "cost", "fee", "deal", "amount", "money", "quid", "pounds", "euros", "dollars", "bucks", "now", "today",
  "tomorrow", "week", "then", "too", "very", "really", "right", "fine", "sure", "think", "reckon", "say", "said",
  "how", "much", "more", "less", "extra", "other", "another", "same", "first", "second", "last", "next", "it's", "that's",
  "i'll", "i'd", "i'm", "you're", "we'll", "not", "don't", "can't", "any", "anything", "something", "bit", "lots",
]);

const PREPOSITIONS = new Set([
  "under", "in", "on", "at", "for", "with", "by", "from", "to", "before", "after", "next", "tomorrow", "today", "this",
  "over", "inside", "outside", "upstairs", "downstairs", "round", "around", "out", "depending", "if", "when", "while", "because", "since", "as",
  "is", "are", "was", "will", "would", "could", "should", "can", "each", "per", "an", "a", "every",
]);

/** Words after a price that start a side remark, not a name for the item. */
const AFTER_STOPPERS = new Set([
  "depending", "including", "if", "when", "which", "since", "as", "because", "give", "or", "roughly", "approximately",
  "probably", "tops", "max", "each", "and", "then", "so", "but", "is", "it", "that", "would", "will", "for", "a", "an",
  "per", "all", "in", "total", "altogether", "cash", "please", "yeah", "ok", "okay", "right", "at", "to", "on", "you",
  "i", "we", "is", "was", "plus", "on", "sound", "sounds", "work", "works", "fine", "max", "maximum", "tops", "flat",
  "upfront", "now", "up", "front", "instead", "though", "the", "this", "that", "there", "here", "every", "from",
]);

/** Job verbs and the noun the contract uses for the work: "mow the lawn" → "Lawn mowing". */
const JOB_NOUNS: Record<string, string> = {
  fix: "repair", repair: "repair", mend: "repair", patch: "repair",
  install: "installation", fit: "fitting", replace: "replacement", service: "service", build: "building",
  paint: "painting", decorate: "decorating", clean: "cleaning", wash: "washing", mow: "mowing", cut: "cutting",
  trim: "trimming", prune: "pruning", clear: "clearance", deliver: "delivery", design: "design", develop: "development",
  move: "removal", rewire: "rewiring", plaster: "plastering", tile: "tiling", unblock: "unblocking", assemble: "assembly",
  walk: "walking", photograph: "photography", shoot: "photography", cater: "catering", translate: "translation",
  edit: "editing", tune: "tuning", check: "check", inspect: "inspection", sweep: "sweeping", lay: "laying",
  plumb: "plumbing", weed: "weeding", polish: "polishing", sand: "sanding", varnish: "varnishing", re: "work",
};
/** Nouns that already name a job: "gutter repair", "guitar lessons". */
const JOB_TAILS = new Set([
  "repair", "repairs", "lessons", "lesson", "tuition", "cleaning", "mowing", "painting", "installation", "service",
  "servicing", "clearance", "removal", "delivery", "design", "fitting", "replacement", "tutoring", "coaching",
  "decorating", "survey", "inspection", "work", "job", "check", "walking", "sitting", "care",
]);

/** Lower-case content words, "’" as "'". */
function tokens(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/[’‘`]/g, "'")
    .split(/[^a-z0-9'-]+/)
    .filter((w) => w.length > 0);
}

/** "lessons" and "lesson", "boxes" and "box" are the same word here. */
function stem(word: string): string {
  const w = word.toLowerCase().replace(/'s$/, "");
  if (w.length > 4 && w.endsWith("ies")) return w.slice(0, -3) + "y";
  if (w.length > 4 && /(?:ches|shes|xes|sses)$/.test(w)) return w.slice(0, -2);
  if (w.length > 3 && w.endsWith("s") && !w.endsWith("ss")) return w.slice(0, -1);
  return w;
}

/** True when `words` name the same thing as `description` (a shared content word). */
export function sameThing(description: string, words: readonly string[]): boolean {
  const mine = new Set(tokens(description).filter((w) => !STOP.has(w) && !JOB_TAILS.has(w)).map(stem));
  const theirs = words.map((w) => w.toLowerCase()).filter((w) => !STOP.has(w) && !JOB_TAILS.has(w)).map(stem);
  if (mine.size === 0) {
    // Only job words on one side ("repair" vs "the repair"): compare those.
    const tails = new Set(tokens(description).map(stem));
    return words.some((w) => tails.has(stem(w)) && !STOP.has(w.toLowerCase()));
  }
  return theirs.some((w) => mine.has(w));
}

/** Up to four content words, stopping at a conjunction or a preposition after the noun. */
export function contentWords(words: readonly string[]): string | undefined {
  const kept: string[] = [];
  for (const raw of words) {
    const w = raw.replace(/[^\p{L}\p{N}'-]/gu, "");
    const lower = w.toLowerCase();
    if (["and", "plus", "but", "then", "so", "or", "if", "which", "because", "depending", "including"].includes(lower)) break;
    if (kept.length > 0 && PREPOSITIONS.has(lower)) break;
    if (kept.length === 0 && (STOP.has(lower) || PREPOSITIONS.has(lower))) continue;
    if (/^\d/.test(lower)) break;
    if (w) kept.push(w);
    if (kept.length >= 4) break;
  }
  while (kept.length > 0 && STOP.has(kept[kept.length - 1]!.toLowerCase())) kept.pop();
  if (kept.length === 0 || kept.every((w) => STOP.has(w.toLowerCase()))) return undefined;
  return kept.join(" ");
}

/** "three hours", "2 days": a count, not a name for what is bought. */
function isQuantity(phrase: string): boolean {
  return /\d/.test(phrase) || scanAmounts(phrase, "GBP").counts.length > 0 || parseNumberWords(phrase.toLowerCase().split(/\s+/)) !== undefined;
}

/** Words up to the first punctuation, number or currency sign. */
function leadingWords(text: string): string[] {
  const stop = text.search(/[,.;:!?£€$¥\d]/);
  const chunk = stop === -1 ? text : text.slice(0, stop);
  return chunk.split(/\s+/).filter((w) => w.length > 0).slice(0, 8);
}

/**
 * Words naming what a price is for: "£80 for the call-out", "the parts are £60", "£80
 * call-out", "labour at £40 an hour". Undefined when the price names nothing.
 */
export function describeMention(text: string, m: MoneyMention): string | undefined {
  const normal = text.replace(/[’‘`]/g, "'");
  const afterWords = leadingWords(normal.slice(m.end).replace(/^[\s,]+/, ""));
  const first = afterWords[0]?.toLowerCase();
  if (first === "for" || first === "on") {
    const phrase = contentWords(afterWords.slice(1));
    if (phrase && !isQuantity(phrase)) return phrase;
  }
  const clause = normal.slice(0, m.start).split(/[,.;:!?]|\band\b|\bplus\b|\bthen\b|\bbut\b/i).pop() ?? "";
  const verb = clause.match(
    /^(.*?)\b(?:is|are|was|will be|would be|could be|might be|should be|'ll be|'s|comes to|costs?|runs?|at)(?:\s+(?:anything|anywhere|somewhere|roughly|about|around|approximately|probably|maybe|just|only))*(?:\s+(?:from|between))?\s*$/i,
  );
  if (verb?.[1]) {
    const phrase = contentWords(verb[1].trim().split(/\s+/).slice(-4));
    if (phrase && !isQuantity(phrase)) return phrase;
  }
  // "for the paint, forty": the item named just before a price, after "for".
  const forBefore = clause.match(/\bfor\s+((?:the|your|my|a|an)\s+)?([a-z][a-z' -]{1,30}?)\s*(?:i'?d say|i'?ll do|i can do|say|it'?s|is|would be|call it)?\s*$/i);
  if (forBefore?.[2]) {
    const phrase = contentWords(forBefore[2].trim().split(/\s+/));
    if (phrase && !isQuantity(phrase)) return phrase;
  }
  if (first !== undefined && !AFTER_STOPPERS.has(first) && !/^(?:an?|per)$/.test(first)) {
    const phrase = contentWords(afterWords);
    if (phrase && !isQuantity(phrase)) return phrase;
  }
  return undefined;
}

/** "Can you fix the gutter?" → "Gutter repair"; "guitar lessons" → "Guitar lessons". Undefined when no job is named. */
export function jobPhrase(text: string): string | undefined {
  const lower = text.toLowerCase().replace(/[’‘`]/g, "'");
  const verbs = Object.keys(JOB_NOUNS).join("|");
  const verbRe = new RegExp(`\\b(${verbs})(?:ing|ed|s)?\\s+(?:up\\s+|out\\s+|over\\s+)?((?:the|my|your|our|a|an|some|this|that|those|these|his|her)\\s+)?([a-z][a-z'-]*(?:\\s+[a-z][a-z'-]*){0,2})`, "i");
  const m = lower.match(verbRe);
  if (m) {
    const object = contentWords((m[3] ?? "").split(/\s+/));
    if (object && !isQuantity(object) && !/^(?:you|it|them|me|for|job|that|this)$/.test(object)) {
      return capitalise(`${object} ${JOB_NOUNS[m[1]!] ?? m[1]}`);
    }
  }
  const tail = lower.match(/\b([a-z][a-z'-]+(?:\s+[a-z][a-z'-]+)?)\s+(repair|repairs|lessons|tuition|cleaning|mowing|painting|installation|servicing|service|clearance|removal|tutoring|coaching|decorating|walking|sitting)\b/);
  if (tail) {
    const object = contentWords((tail[1] ?? "").split(/\s+/));
    if (object && !isQuantity(object)) return capitalise(`${object} ${tail[2]}`);
  }
  return undefined;
}

/** "I'll sell you my sofa", "how much for the bike?", "I'd buy your old guitar" → the goods. */
export function saleObject(text: string): string | undefined {
  const lower = text.toLowerCase().replace(/[’‘`]/g, "'");
  const m =
    lower.match(/\b(?:sell(?:ing)?|flog(?:ging)?|buy(?:ing)?|purchase|part with|let you have)\s+(?:you\s+|me\s+)?(?:the|my|your|this|that|these|those|his|her|a|an|our)\s+([a-z][a-z'-]*(?:\s+[a-z][a-z'-]*){0,3})/) ??
    lower.match(/\bhow much (?:for|do you want for|are you asking for|would you want for|is|are)\s+(?:the|my|your|this|that|these|those|a|an)\s+([a-z][a-z'-]*(?:\s+[a-z][a-z'-]*){0,3})/);
  if (!m) return undefined;
  const object = contentWords((m[1] ?? "").split(/\s+/));
  if (!object || isQuantity(object)) return undefined;
  return capitalise(object);
}

/** First letter upper-case. */
export function capitalise(text: string): string {
  return text.length === 0 ? text : text[0]!.toUpperCase() + text.slice(1);
}
