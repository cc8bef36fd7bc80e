import nlp from "compromise";
import type { MoneyMention } from "./amounts.js";
import { parseNumberWords, scanAmounts } from "./amounts.js";

/*
 * Why compromise (14.x) here and not for numbers: its part-of-speech tagger tells a noun from a
 * verb or an adverb ("labour seven hundred" vs "you had it at four fifty", "again at five"),
 * which a word list cannot. For number words it was checked and is worse than amounts.ts: it
 * reads "a couple of hundred" as 100, "one and a half grand" as 1.5, misses "a fiver" and
 * "$35/hr", and returns floats; words-to-numbers turns "eighty and one twenty" into "81 20".
 */

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
  "listing", "advert", "ad", "one's", "ones", "itself", "people", "persons", "guests", "another",
  "budget", "limit", "maximum", "max", "pair", "set", "bunch", "batch", "load", "couple", "few", "rest", "difference", "middle", "asking", "offer", "quote", "estimate", "ballpark",
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
  "with", "including", "incl", "included", "inc", "plus", "minus", "without", "except", "excluding",
]);

/** Job verbs and the noun the contract uses for the work: "mow the lawn" → "Lawn mowing". */
const JOB_NOUNS: Record<string, string> = {
  fix: "repair", repair: "repair", mend: "repair", patch: "repair",
  install: "installation", fit: "fitting", replace: "replacement", service: "service", build: "building",
  paint: "painting", decorate: "decorating", clean: "cleaning", wash: "washing", mow: "mowing", cut: "cutting",
  trim: "trimming", prune: "pruning", clear: "clearance", deliver: "delivery", design: "design", develop: "development",
  move: "removal", rewire: "rewiring", plaster: "plastering", tile: "tiling", unblock: "unblocking", assemble: "assembly",
  walk: "walking", photograph: "photography", cater: "catering", translate: "translation",
  edit: "editing", tune: "tuning", inspect: "inspection", sweep: "sweeping",
  plumb: "plumbing", weed: "weeding", polish: "polishing", varnish: "varnishing",
  mount: "mounting", iron: "ironing", film: "filming", restore: "restoration", reupholster: "reupholstering", upholster: "upholstery",
  redesign: "redesign", groom: "grooming", tutor: "tutoring", teach: "lessons", coach: "coaching",
};
/** Nouns that already name a job: "gutter repair", "guitar lessons". */
const JOB_TAILS = new Set([
  "repair", "repairs", "lessons", "lesson", "tuition", "cleaning", "mowing", "painting", "installation", "service",
  "servicing", "clearance", "removal", "delivery", "design", "fitting", "replacement", "tutoring", "coaching",
  "decorating", "survey", "inspection", "work", "job", "check", "walking", "sitting", "care", "clean", "training",
  "mounting", "tuning", "restoration", "rental", "hire", "fitting", "redesign", "wash", "washing", "grooming",
]);

/** Words after which a noun phrase has ended: pronouns and verbs of the price sentence. */
const BREAKERS = new Set([
  "i", "i'd", "i'll", "i'm", "i've", "you", "you'd", "you'll", "we", "we'd", "we'll", "it's", "that's", "it", "that",
  "would", "will", "should", "could", "is", "are", "was", "be", "say", "said", "normally", "usually", "probably",
  "comes", "costs", "cost", "came", "makes", "make", "do", "does", "call", "quote", "charge", "want", "need",
]);

/** Verbs that end in "s" like plural nouns: "serves about twenty" names nothing. */
const VERBS_IN_S = new Set(["serves", "takes", "gives", "costs", "comes", "goes", "looks", "seems", "works", "sounds", "needs", "wants", "makes", "does", "says", "gets", "runs", "includes", "means", "helps", "lasts", "depends", "fits", "holds", "keeps", "leaves", "lets", "puts", "sells", "buys", "pays", "charges", "thinks", "knows"]);

/** Verbs of everyday talk that the tagger would also take for nouns after "the". */
const COMMON_VERBS = new Set(("had have take took give gave wait come came go went get got said say make made do did see saw know think want need let put keep try look pay " +
  "charge sell buy leave call ask tell mean seem feel help start stop show hear play live believe bring happen write sit stand lose meet include continue " +
  "set learn change lead understand watch follow create speak read allow add spend grow open win offer remember love consider appear serve send expect " +
  "stay fall reach remain suggest raise pass require report decide pull sorry reckon guess hope suppose agree manage deal sound shake").split(" "));

/** Nouns of trade talk that the tagger may read as verbs. */
const KNOWN_NOUNS = new Set(["move", "plans", "drawings", "video", "film", "ironing", "labour", "labor", "call-out", "callout", "parts", "materials", "delivery", "fitting", "service", "repair", "cleaning", "survey", "skip", "paint", "tiling", "mowing", "design", "plumbing", "wiring", "rewiring", "trimming", "clearance"]);

/** True when the phrase holds a noun (by the tagger or a known trade noun), not only verbs and fillers. */
export function hasNoun(phrase: string): boolean {
  const words = tokens(phrase);
  if (words.some((w) => KNOWN_NOUNS.has(w) || JOB_TAILS.has(w))) return true;
  const noun = (tags: readonly string[]) => (tags.includes("Noun") && !tags.includes("Pronoun") && !tags.includes("Value")) || tags.includes("Gerund");
  const terms = nlp(phrase).terms().json() as { terms: { tags: string[] }[] }[];
  if (terms.some((t) => noun(t.terms[0]?.tags ?? []))) return true;
  // Alone, "tiles", "fence" or "shed" reads as a verb; after an article the tagger sees the noun.
  // Words that are almost always verbs in talk ("had", "take", "wait") never name an item.
  const last = words[words.length - 1] ?? "";
  if (VERBS_IN_S.has(last) || COMMON_VERBS.has(last)) return false;
  const lastTags = terms[terms.length - 1]?.terms[0]?.tags ?? [];
  if (!lastTags.includes("Verb") || lastTags.includes("Adverb") || lastTags.includes("PastTense") || lastTags.includes("Modal")) return false;
  const framed = nlp(`the ${last}`).terms().json() as { terms: { tags: string[] }[] }[];
  return noun(framed[1]?.terms[0]?.tags ?? []);
}

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
    if (["and", "plus", "but", "then", "so", "or", "if", "which", "because", "depending", "including"].includes(lower)) {
      if (kept.length > 0) break;
      continue;
    }
    if (kept.length > 0 && (PREPOSITIONS.has(lower) || BREAKERS.has(lower) || parseNumberWords([lower]) !== undefined)) break;
    if (kept.length === 0 && (STOP.has(lower) || PREPOSITIONS.has(lower) || BREAKERS.has(lower) || parseNumberWords([lower]) !== undefined || FILLERS.has(lower))) continue;
    if (/^\d/.test(lower)) break;
    if (w) kept.push(w);
    if (kept.length >= 4) break;
  }
  while (kept.length > 0 && STOP.has(kept[kept.length - 1]!.toLowerCase())) kept.pop();
  // "Tap's a quick one": the last word's "'s" is "is", not part of the name.
  if (kept.length > 0) kept[kept.length - 1] = kept[kept.length - 1]!.replace(/'s$/i, "");
  if (kept.length === 0 || kept.every((w) => STOP.has(w.toLowerCase()))) return undefined;
  return kept.join(" ");
}

/** Sounds and hedges people make while thinking. */
const FILLERS = new Set(["um", "er", "erm", "uh", "hmm", "mm", "ah", "oh", "like", "honestly", "basically", "actually", "so", "well", "right", "okay", "ok", "yeah", "sure", "somewhere", "anywhere", "between", "from", "about", "around", "roughly", "maybe", "probably", "just", "only", "without", "except", "excluding", "minus", "all", "whole", "full"]);

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
 * call-out", "labour at £40 an hour", "For the gutter repair, …, I'd say £185". Undefined
 * when the price names nothing (then the talk's subject stands in).
 */
export function describeMention(text: string, m: MoneyMention): string | undefined {
  const normal = text.replace(/[’‘`]/g, "'");
  const ok = (phrase: string | undefined) => (phrase && !isQuantity(phrase) && hasNoun(phrase) ? phrase : undefined);
  const afterWords = leadingWords(normal.slice(m.end).replace(/^[\s,]+/, ""));
  const first = afterWords[0]?.toLowerCase();
  const sentence = normal.slice(0, m.start).split(/[.!?;:](?=\s|$)/).pop() ?? "";
  const clause = sentence.split(/,|\band\b|\bplus\b|\bthen\b|\bbut\b/i).pop() ?? "";
  // "without the plumbing it's …" qualifies a price; it names no item.
  const qualified = /\b(?:without|except|excluding|minus|not counting|but not)\b/i.test(clause);
  const verb = clause.match(
    /^(.*?)\b(?:is|are|was|will be|would be|could be|might be|should be|'ll be|'s|comes to|costs?|runs?|at)(?:\s+(?:anything|anywhere|somewhere|roughly|about|around|approximately|probably|maybe|just|only|like))*(?:\s+(?:from|between))?\s*$/i,
  );
  // "From Oerlikon to the airport is 37.50": a journey names itself.
  const journey = verb?.[1]?.match(/\bfrom\s+([a-z][\w' -]{0,30}?)\s+to\s+(?:the\s+)?([a-z][\w' -]{0,30}?)\s*$/i);
  if (journey?.[1] && journey[2]) return `Trip from ${journey[1].trim()} to ${journey[2].trim()}`;
  if (verb?.[1] && !qualified) {
    // The head of the phrase names the item: "Labour for painting the living room is …" → "Labour".
    const phrase = ok(contentWords(verb[1].trim().split(/\s+/).slice(-6))) ?? ok(contentWords(verb[1].trim().split(/\s+/).slice(-3)));
    if (phrase) return phrase;
  }
  if (first === "for" || first === "on") {
    const phrase = ok(contentWords(afterWords.slice(1)));
    if (phrase) return phrase;
    const job = afterWords.slice(1).join(" ").match(/^(?:the\s+)?(whole job|job|work|whole thing)\b/i);
    if (job?.[1] && /job|work/.test(job[1])) return job[1].toLowerCase();
  }
  // "For the gutter repair, new brackets…, I'd say £185": the "for" phrase of the sentence.
  const forPhrase = sentence.match(/(?:^|[,]\s*|\b(?:so|and|but|then)\s+)for\s+(?:(?:the|a|an|your|my|this|that|all|those|these)\s+)?([a-z][a-z' -]{1,40})/i);
  // Only when no other price sits between: "For four people, the class is ¥25,000, and the ingredients ¥5,000".
  const between = forPhrase ? sentence.slice((forPhrase.index ?? 0) + forPhrase[0].length) : "";
  if (forPhrase?.[1] && scanAmounts(between, "GBP", { bareNumbers: "loose" }).money.length === 0) {
    const phrase = ok(contentWords(forPhrase[1].trim().split(/\s+/)));
    if (phrase) return phrase;
    // "for the whole job": the job itself, when that is all the words say.
    const job = forPhrase[1].match(/^(?:the\s+)?(whole job|job|work|whole thing|lot of it)\b/i);
    if (job?.[1] && /job|work/.test(job[1])) return job[1].toLowerCase();
  }
  // "Hedge trimming, the whole length, …: seventy five pounds": a price after a colon is for the sentence's head.
  if (/:\s*$/.test(normal.slice(0, m.start))) {
    const head = sentence.split(/:/)[0]!.split(/,/)[0]!;
    const phrase = ok(contentWords(head.trim().split(/\s+/)));
    if (phrase) return phrase;
  }
  if (first !== undefined && !AFTER_STOPPERS.has(first)) {
    const phrase = ok(contentWords(afterWords));
    if (phrase) return phrase;
  }
  // "labour seven hundred": a noun right before the price, in its own clause.
  const own = clause.trim().split(/\s+/).filter((w) => w.length > 0);
  if (!qualified && own.length > 0 && own.length <= 3) {
    const phrase = ok(contentWords(own));
    if (phrase) return phrase;
  }
  return undefined;
}

/**
 * A weaker name for a price: the nearest short noun phrase before it in the same sentence,
 * past fillers ("I'll need a skip, that's £150"; "The repair, um, somewhere between…").
 * Used to tell one item from the next when the same person lists them.
 */
export function nearbyNoun(text: string, m: MoneyMention): string | undefined {
  const normal = text.replace(/[’‘`]/g, "'");
  const ok = (phrase: string | undefined) => (phrase && !isQuantity(phrase) && hasNoun(phrase) ? phrase : undefined);
  const sentence = normal.slice(0, m.start).split(/[.!?;:](?=\s|$)/).pop() ?? "";
  // "labour seven hundred", "I'll need a skip, that's £150", "The repair, um, somewhere between…":
  // the nearest short noun phrase before the price in the same sentence, past fillers.
  const segments = sentence.split(/,|\band\b|\bplus\b|\bbut\b/i);
  for (let i = segments.length - 1, looked = 0; i >= 0 && looked < 3; i--) {
    const words = segments[i]!.trim().split(/\s+/).filter((w) => w.length > 0);
    if (words.length === 0 || words.every((w) => FILLERS.has(w.toLowerCase()) || STOP.has(w.toLowerCase()) || BREAKERS.has(w.toLowerCase()))) continue;
    looked += 1;
    if (/\b(?:without|except|excluding|minus)\b/i.test(segments[i]!)) continue;
    if (words.length > 6) break;
    const phrase = ok(contentWords(words));
    if (phrase) return phrase;
  }
  return undefined;
}

/** A verb's spoken forms: "fix", "fixes", "fixed", "fixing"; "tile", "tiled", "tiling". */
function verbForms(verb: string): string {
  return verb.endsWith("e") ? `${verb.slice(0, -1)}(?:e|es|ed|ing)` : `${verb}(?:s|es|ed|ing|${verb.slice(-1)}ing|${verb.slice(-1)}ed)?`;
}

const VERB_RE = new RegExp(
  `\\b(${Object.keys(JOB_NOUNS).map(verbForms).join("|")})\\b(?:\\s+(?:up|out|over|back))?\\s+((?:the|my|your|our|a|an|some|this|that|those|these|his|her)\\s+)?([a-z][a-z'-]*(?:\\s+[a-z][a-z'-]*){0,2})`,
  "gi",
);

function verbOf(form: string): string | undefined {
  return Object.keys(JOB_NOUNS).find((v) => new RegExp(`^${verbForms(v)}$`).test(form));
}

/** "Can you fix the gutter?" → "Gutter repair"; "the tiling" → "Tiling"; "guitar lessons". Undefined when no job is named. */
export function jobPhrase(text: string): string | undefined {
  const lower = text.toLowerCase().replace(/[’‘`]/g, "'");
  // "the rewiring", "the tiling": a job said as a gerund.
  const gerund = lower.match(/\b(?:the|a|some|your|my)\s+([a-z]+ing)\b/);
  if (gerund?.[1] && verbOf(gerund[1]) && !/^(?:thing|morning|evening|ceiling|building|something|anything|nothing|everything|ring|spring|king)$/.test(gerund[1])) {
    return capitalise(gerund[1]);
  }
  for (const m of lower.matchAll(VERB_RE)) {
    const verb = verbOf(m[1] ?? "");
    if (!verb) continue;
    // "moving to Osaka", "cleaning up after": an object needs its article or a plain noun.
    const object = contentWords((m[3] ?? "").split(/\s+/));
    // "moving to Osaka", "cut down last month": a preposition or particle first is no object.
    const firstWord = (m[3] ?? "").split(/\s+/)[0] ?? "";
    if (!m[2] && (PREPOSITIONS.has(firstWord) || STOP.has(firstWord) || FILLERS.has(firstWord))) continue;
    if (!object || isQuantity(object) || /^(?:you|it|them|me|for|job|that|this|to|properly|again|today|tomorrow)$/.test(object) || !hasNoun(object)) continue;
    return capitalise(`${object} ${JOB_NOUNS[verb] ?? verb}`);
  }
  const tail = lower.match(/\b([a-z][a-z'-]+(?:\s+[a-z][a-z'-]+)?)\s+(repair|repairs|lessons|tuition|cleaning|clean|mowing|painting|installation|servicing|service|clearance|removal|tutoring|coaching|decorating|walking|sitting|training|mounting|tuning|restoration|rental|hire|fitting|redesign|design|video|photography|plans|trimming|pruning|cutting|class|classes|course)\b/);
  if (tail) {
    const object = contentWords((tail[1] ?? "").split(/\s+/));
    if (object && !isQuantity(object)) return capitalise(`${object} ${tail[2]}`);
  }
  return undefined;
}

/** "It's the gutter round the back", "I'm here about the sofa": what the talk is about, weakly. */
export function topicPhrase(text: string): string | undefined {
  const lower = text.toLowerCase().replace(/[’‘`]/g, "'");
  const m = lower.match(/\b(?:it'?s|this is|these are|is this|are these|here about|here for|interested in|about|looking at)\s+(?:the|your|my|these|those|this|that)\s+([a-z][a-z'-]*(?:\s+[a-z][a-z'-]*){0,3})/);
  if (!m?.[1]) return undefined;
  const object = contentWords(m[1].split(/\s+/));
  if (!object || isQuantity(object) || !hasNoun(object)) return undefined;
  return capitalise(object);
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

/** People and animals: "my son is fourteen", "the dog is nine" say an age, not a price. */
const BEINGS = /\b(?:son|daughter|kid|kids|child|children|boy|girl|baby|mum|mom|dad|mother|father|wife|husband|partner|brother|sister|nan|gran|grandma|grandad|grandmother|grandfather|dog|dogs|cat|cats|puppy|he|she|i|we|they|you|age|aged)\b/i;

/** True when a phrase names a thing (a noun, not a person, an animal or a pronoun). */
export function namesAThing(phrase: string): boolean {
  if (BEINGS.test(phrase) || !hasNoun(phrase)) return false;
  const terms = nlp(phrase).terms().json() as { terms: { tags: string[] }[] }[];
  return !terms.some((t) => {
    const tags = t.terms[0]?.tags ?? [];
    return tags.includes("Actor") || tags.includes("Person") || tags.includes("Possessive");
  });
}

/** Words that name work rather than goods: "gutter repair", "call-out", "haircut", "van and driver". */
const WORK_WORDS = /(?:ing|tion|ment|ance|ery)\b|\b(?:repair|repairs|service|services|labour|labor|call-out|callout|survey|rental|hire|trip|ride|lesson|lessons|class|classes|course|design|redesign|plans|job|work|wash|clean|haircut|cut|massage|treatment|check|visit|session|sessions|tuition|driver|help|move|removal|delivery|clearance|install|fit|tour|stay|night|nights|week|room|flat)\b/i;
/** Units of time and visits: what work is counted in. */
const WORK_UNITS = new Set(["hour", "day", "week", "month", "night", "session", "lesson", "visit", "page", "person", "room", "mile", "metre", "window", "door"]);

/** True when an item reads as goods (a sofa, twenty baguettes, four jars), not as work. */
export function looksLikeGoods(description: string, unit: string): boolean {
  if (unit !== "" && unit !== "item" && WORK_UNITS.has(unit)) return false;
  if (WORK_WORDS.test(description)) return false;
  return hasNoun(description);
}

/** First letter upper-case. */
export function capitalise(text: string): string {
  return text.length === 0 ? text : text[0]!.toUpperCase() + text.slice(1);
}
