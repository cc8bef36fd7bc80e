import { readFileSync, statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DEFAULT_POCKETSPHINX_MODEL_DIR } from "../../src/speech/pocketsphinx.js";
import { moneyLanguageModel } from "../../src/speech/money-language-model.js";
import { keywordVocabulary } from "../../src/trigger/keyword.js";
import { tempDirPerTest } from "../support/temp-dir.js";

const dir = tempDirPerTest();

/** The sections of an ARPA file: declared counts and the entries of each order. */
function readArpa(text: string): { declared: number[]; grams: { log10Prob: number; words: string[]; backoff?: number }[][] } {
  const declared: number[] = [];
  const grams: { log10Prob: number; words: string[]; backoff?: number }[][] = [];
  let order = 0;
  for (const line of text.split("\n")) {
    const count = /^ngram (\d)=(\d+)$/.exec(line);
    if (count) declared[Number(count[1]) - 1] = Number(count[2]);
    const section = /^\\(\d)-grams:$/.exec(line);
    if (section) {
      order = Number(section[1]);
      grams[order - 1] = [];
      continue;
    }
    if (order === 0 || line === "" || line.startsWith("\\")) continue;
    const fields = line.split(" ");
    const words = fields.slice(1, 1 + order);
    const backoff = fields[1 + order];
    grams[order - 1]!.push({ log10Prob: Number(fields[0]), words, ...(backoff !== undefined ? { backoff: Number(backoff) } : {}) });
  }
  return { declared, grams };
}

describe("the money-biased language model", () => {
  it("is a well-formed ARPA trigram model whose words all have pronunciations, with prices, currencies and the trigger words in it", () => {
    const model = moneyLanguageModel(DEFAULT_POCKETSPHINX_MODEL_DIR, dir(), { generalWords: 2000, extraWords: ["Shipshape"] });
    const { declared, grams } = readArpa(readFileSync(model.lmPath, "utf8"));
    expect(grams.map((g) => g.length)).toEqual(declared);
    expect(declared[0]).toBe(model.words);
    const unigrams = new Map(grams[0]!.map((g) => [g.words[0]!, g]));
    // Probabilities of what may follow any history sum to one.
    const total = [...unigrams.values()].filter((g) => g.words[0] !== "<s>").reduce((sum, g) => sum + 10 ** g.log10Prob, 0);
    expect(total).toBeGreaterThan(0.98);
    expect(total).toBeLessThan(1.02);
    for (const word of ["quid", "pounds", "dollars", "euros", "fifty", "hundred", "thousand", "handshake", "deal", "boiler", "plumber", "shipshape"]) {
      expect(unigrams.has(word), word).toBe(true);
    }
    // Every n-gram's words are unigrams, and every lower-order history of a trigram is a bigram.
    const bigrams = new Set(grams[1]!.map((g) => g.words.join(" ")));
    for (const g of grams[1]!) for (const w of g.words) expect(unigrams.has(w)).toBe(true);
    for (const g of grams[2]!) expect(bigrams.has(g.words.slice(0, 2).join(" "))).toBe(true);
    expect(bigrams.has("hundred and")).toBe(true);
    expect(bigrams.has("fifty quid")).toBe(true);

    const dictWords = new Set(readFileSync(model.dictPath, "utf8").trim().split("\n").map((l) => l.split(" ")[0]!.replace(/\(\d+\)$/, "")));
    for (const w of unigrams.keys()) if (w !== "<s>" && w !== "</s>") expect(dictWords.has(w), w).toBe(true);
    // A dictionary of the model's words only, not the Debian one's 130k.
    expect(statSync(model.dictPath).size).toBeLessThan(200_000);
  });

  it("is content-addressed: the same inputs give the same files, other words other files", () => {
    const first = moneyLanguageModel(DEFAULT_POCKETSPHINX_MODEL_DIR, dir(), { generalWords: 1000 });
    const again = moneyLanguageModel(DEFAULT_POCKETSPHINX_MODEL_DIR, dir(), { generalWords: 1000 });
    const other = moneyLanguageModel(DEFAULT_POCKETSPHINX_MODEL_DIR, dir(), { generalWords: 1000, extraWords: ["shipshape"] });
    expect(again).toEqual(first);
    expect(other.lmPath).not.toBe(first.lmPath);
    expect(other.words).toBe(first.words + 1);
  });
});

describe("the trigger keyword's words (keywordVocabulary, the spotting hook)", () => {
  it("puts a keyword the everyday vocabulary lacks into the model, as said and closed up", () => {
    expect(keywordVocabulary("Ship-shape")).toEqual(["ship", "shape", "shipshape"]);
    expect(keywordVocabulary("let's shake on it")).toEqual(["let's", "shake", "on", "it", "let'sshakeonit"]);
    const model = moneyLanguageModel(DEFAULT_POCKETSPHINX_MODEL_DIR, dir(), { generalWords: 500, extraWords: keywordVocabulary("Ship-shape") });
    const unigrams = readArpa(readFileSync(model.lmPath, "utf8")).grams[0]!.map((g) => g.words[0]);
    expect(unigrams).toEqual(expect.arrayContaining(["ship", "shape", "shipshape"]));
  });
});
