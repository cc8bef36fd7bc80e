import { plainWords } from "../language/agreement.js";

/**
 * Keyword matching for spoken text: case-insensitive, on word boundaries, tolerant of
 * punctuation ("Deal!", "deal."), apostrophes ("let's" = "lets") and hyphens ("hand-shake" =
 * "handshake"), for single words and multi-word phrases.
 */

/** True when `keyword` (one word or a phrase) is said in `text` as whole words. */
export function containsKeyword(text: string, keyword: string): boolean {
  const wanted = plainWords(keyword);
  if (wanted.length === 0) return false;
  const joinedWanted = wanted.join("");
  // Try the text as said and with hyphens closed up, so "hand-shake" matches "handshake" and
  // "hand shake" matches "hand-shake".
  const variants = [plainWords(text), plainWords(text.replace(/[-‐–]/g, ""))];
  for (const words of variants) {
    if (containsSequence(words, wanted)) return true;
    if (wanted.length > 1 && words.includes(joinedWanted)) return true;
  }
  return false;
}

function containsSequence(words: readonly string[], wanted: readonly string[]): boolean {
  outer: for (let i = 0; i + wanted.length <= words.length; i++) {
    for (let j = 0; j < wanted.length; j++) {
      if (words[i + j] !== wanted[j]) continue outer;
    }
    return true;
  }
  return false;
}
