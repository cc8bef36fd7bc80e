/**
 * Spoken agreement ("deal", "sounds good", "let's do it"), shared by the offline smart trigger
 * and the offline negotiator so both read the conversation the same way.
 */

/** Phrases that say "yes, we have a deal". Matched as whole words, case- and punctuation-insensitive. */
export const AGREEMENT_PHRASES: readonly string[] = [
  "deal",
  "its a deal",
  "agreed",
  "lets do it",
  "lets do that",
  "sounds good",
  "sounds fair",
  "youre on",
  "go ahead",
  "works for me",
  "that works",
  "happy with that",
  "shake on it",
  "sold",
  "done deal",
];

/** Words that turn a following phrase around ("no deal", "not agreed", "big deal"). */
const NEGATIONS = new Set(["no", "not", "never", "isnt", "wasnt", "dont", "cant", "wont", "hardly", "without", "big"]);

/** Lower-case words without punctuation; apostrophes dropped so "let's" is "lets". */
export function plainWords(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/['’‘`]/g, "")
    .split(/[^\p{L}\p{N}]+/u)
    .filter((w) => w.length > 0);
}

/** True when `text` says one of `phrases` (default: AGREEMENT_PHRASES), not negated. */
export function saysAgreement(text: string, phrases: readonly string[] = AGREEMENT_PHRASES): boolean {
  const words = plainWords(text);
  return phrases.some((phrase) => containsUnnegated(words, plainWords(phrase)));
}

function containsUnnegated(words: readonly string[], phrase: readonly string[]): boolean {
  if (phrase.length === 0) return false;
  outer: for (let i = 0; i + phrase.length <= words.length; i++) {
    for (let j = 0; j < phrase.length; j++) {
      if (words[i + j] !== phrase[j]) continue outer;
    }
    const before = words[i - 1];
    const twoBefore = words[i - 2];
    if ((before && NEGATIONS.has(before)) || (before === "a" && twoBefore && NEGATIONS.has(twoBefore))) continue;
    return true;
  }
  return false;
}
