import { plainWords } from "../language/agreement.js";

/**
 * Keyword matching for spoken text: case-insensitive, on word boundaries, tolerant of
 * punctuation ("Deal!", "deal."), apostrophes ("let's" = "lets") and hyphens ("hand-shake" =
 * "handshake"), for single words and multi-word phrases. A keyword said negated or as a
 * condition ("let's not shake on it yet", "before we shake on it") is not a trigger.
 */

/** Words that negate a keyword said shortly after them in the same clause. */
const NEGATORS = new Set([
  "not", "never", "dont", "cant", "cannot", "wont", "shouldnt", "wouldnt", "couldnt", "isnt", "arent",
  "wasnt", "aint", "mustnt", "neither", "nor", "without", "hold", "wait",
]);
/** Words that make a keyword after them in the same clause a condition or a later step, not agreement now. */
const CONDITIONS_BEFORE = new Set(["before", "until", "till", "unless", "if", "once", "whether", "after"]);
/** Words right after the keyword, in its clause, that make it conditional ("shake on it once you've seen it"). */
const CONDITIONS_AFTER = new Set(["until", "till", "unless", "once", "if", "yet", "after", "before"]);
/** How many words back a negator still reaches the keyword ("don't think we should shake on it"). */
const NEGATION_REACH = 4;
/** How many words back a condition word still reaches it ("before we can shake on it"). */
const CONDITION_REACH = 3;
/** How many words after the keyword a condition word counts. */
const AFTER_REACH = 2;

/** A word with the clause it belongs to (clauses end at . , ; : ! ? … and dashes). */
interface Word {
  text: string;
  clause: number;
}

/** True when `keyword` (one word or a phrase) is said in `text` as whole words. */
export function containsKeyword(text: string, keyword: string): boolean {
  return findKeyword(text, keyword).length > 0;
}

/**
 * True when `text` says `keyword` as agreement: at least one occurrence that is not negated
 * ("no handshake", "we can't shake on that") nor a condition ("before we shake on it",
 * "not a deal until…", "shake on it once you've seen it").
 */
export function saysKeyword(text: string, keyword: string): boolean {
  return findKeyword(text, keyword).some((match) => !match.negated);
}

/** One occurrence of the keyword and whether it is negated or conditional. */
export interface KeywordMatch {
  /** Index of the first matched word. */
  at: number;
  negated: boolean;
}

/** Every occurrence of `keyword` in `text`, each with whether it is negated or conditional. */
export function findKeyword(text: string, keyword: string): KeywordMatch[] {
  const wanted = plainWords(keyword);
  if (wanted.length === 0) return [];
  const joinedWanted = wanted.join("");
  // Try the text as said and with hyphens closed up, so "hand-shake" matches "handshake" and
  // "hand shake" matches "hand-shake".
  for (const words of [clauseWords(text), clauseWords(text.replace(/(\S)[-‐](\S)/g, "$1$2"))]) {
    const found: KeywordMatch[] = [];
    for (const [at, length] of occurrences(words, wanted, joinedWanted)) {
      found.push({ at, negated: isNegated(words, at, length) });
    }
    if (found.length > 0) return found;
  }
  return [];
}

/** Words without punctuation, each tagged with its clause. */
function clauseWords(text: string): Word[] {
  const words: Word[] = [];
  let clause = 0;
  const cleaned = text.toLowerCase().replace(/['’‘`]/g, "");
  for (const token of cleaned.match(/[\p{L}\p{N}]+|[.,;:!?…—–]|\s-\s/gu) ?? []) {
    if (/^[\p{L}\p{N}]/u.test(token)) words.push({ text: token, clause });
    else clause += 1;
  }
  return words;
}

/** Start index and length (in words) of each occurrence; a phrase also matches closed up. */
function occurrences(words: readonly Word[], wanted: readonly string[], joined: string): [number, number][] {
  const out: [number, number][] = [];
  outer: for (let i = 0; i + wanted.length <= words.length; i++) {
    for (let j = 0; j < wanted.length; j++) {
      if (words[i + j]!.text !== wanted[j]) continue outer;
    }
    out.push([i, wanted.length]);
  }
  if (wanted.length > 1) {
    words.forEach((w, i) => {
      if (w.text === joined) out.push([i, 1]);
    });
  }
  return out;
}

function isNegated(words: readonly Word[], at: number, length: number): boolean {
  const clause = words[at]!.clause;
  for (let back = 1; back <= NEGATION_REACH; back++) {
    const word = words[at - back];
    if (!word || word.clause !== clause) break;
    // "why not, handshake" and "why not handshake" agree.
    if (word.text === "not" && words[at - back - 1]?.text === "why" && words[at - back - 1]?.clause === clause) continue;
    if (NEGATORS.has(word.text)) return true;
    // "no handshake", "no deal", but not "no problem, handshake" (another clause) or "no worries handshake".
    if (word.text === "no" && back === 1) return true;
    if (back <= CONDITION_REACH && CONDITIONS_BEFORE.has(word.text)) return true;
  }
  for (let ahead = 0; ahead < AFTER_REACH; ahead++) {
    const word = words[at + length + ahead];
    if (!word || word.clause !== clause) break;
    // "deal after all" agrees.
    if (word.text === "after" && words[at + length + ahead + 1]?.text === "all") break;
    if (CONDITIONS_AFTER.has(word.text)) return true;
  }
  return false;
}

/**
 * The spotting hook: the words a speech recogniser must know for `keyword` to be heard at all (a
 * small vocabulary drops unknown words). Dictionary forms, apostrophes kept ("let's"); a phrase or
 * a hyphenated keyword also closed up, as `findKeyword` matches it ("hand-shake" → hand, shake,
 * handshake).
 */
export function keywordVocabulary(keyword: string): string[] {
  const words = keyword.toLowerCase().replace(/[’‘`]/g, "'").split(/[^\p{L}\p{N}']+/u).filter((w) => /[\p{L}\p{N}]/u.test(w));
  return [...new Set(words.length > 1 ? [...words, words.join("")] : words)];
}
