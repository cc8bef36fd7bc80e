import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { moneyTalkSentences } from "./money-talk.js";

/**
 * The local recogniser's language model and dictionary, biased to money talk, built from the
 * Debian model: the `generalWords` most frequent words of en-us.lm.bin (its unigram table) keep
 * their everyday probabilities, and trigrams of deal talk (money-talk.ts) put prices, currencies,
 * trades and agreement in context. Why not the Debian LM itself: it is 27 MB of n-grams and
 * 130k dictionary words that cost ≈ 90 MB per recogniser process and rarely hear "one fifty" or
 * "quid"; this one is ≈ 1 MB and a process with it ≈ 10 MB of its own.
 */
export interface MoneyLanguageModel {
  /** ARPA text trigram model. */
  lmPath: string;
  /** The dictionary lines of its words, from cmudict-en-us.dict. */
  dictPath: string;
  /** Words in it. */
  words: number;
}

/** Options of `moneyLanguageModel`. */
export interface MoneyLanguageModelOptions {
  /** Everyday words kept from the Debian model, most frequent first. Default 5000. */
  generalWords?: number;
  /** Words that must be recognisable whatever their frequency (a room's trigger keyword). */
  extraWords?: readonly string[];
}

/** Bump when the way the model is built changes, so a cached build is not reused. */
const BUILD_VERSION = 1;
/** Share of unigram probability given to the deal-talk corpus; the rest keeps everyday frequencies. */
const DOMAIN_WEIGHT = 0.6;
/** Absolute discount of every seen bigram and trigram. */
const DISCOUNT = 0.5;
/** Trigrams seen fewer times are left to the bigram (keeps the model small). */
const MIN_TRIGRAM_COUNT = 2;
/** Unigram probability floor. */
const RARE_WORD_P = 1e-7;
/** sphinxbase stores log probabilities in base 1.0001. */
const LOG10_OF_SPHINX_BASE = Math.log10(1.0001);

const built = new Map<string, MoneyLanguageModel>();

/**
 * The money-biased model for `modelDir`, written once into `dir` (content-addressed: a rerun
 * with the same inputs reuses the files; concurrent servers write by rename).
 */
export function moneyLanguageModel(modelDir: string, dir: string, options: MoneyLanguageModelOptions = {}): MoneyLanguageModel {
  const generalWords = options.generalWords ?? 5000;
  const extraWords = [...new Set((options.extraWords ?? []).flatMap((w) => w.toLowerCase().split(/\s+/)).filter(Boolean))].sort();
  const lmBin = join(modelDir, "en-us.lm.bin");
  const dictFile = join(modelDir, "cmudict-en-us.dict");
  const sentences = moneyTalkSentences();
  const key = createHash("sha256")
    .update(JSON.stringify({ BUILD_VERSION, generalWords, extraWords, lm: fileStamp(lmBin), dict: fileStamp(dictFile) }))
    .update(sentences.join("\n"))
    .digest("hex")
    .slice(0, 16);
  const lmPath = join(dir, `money-${key}.lm`);
  const dictPath = join(dir, `money-${key}.dict`);
  const known = built.get(lmPath);
  if (known && existsSync(lmPath) && existsSync(dictPath)) return known;

  const pronunciations = readDictionary(dictFile);
  const general = readUnigrams(lmBin).filter((u) => pronunciations.has(u.word) || u.word === "</s>");
  const corpus = sentences.map((s) => s.split(" ").filter((w) => pronunciations.has(w)));
  const vocabulary = new Set<string>(["<s>", "</s>"]);
  for (const u of general.slice(0, generalWords)) vocabulary.add(u.word);
  for (const words of corpus) for (const w of words) vocabulary.add(w);
  for (const w of extraWords) if (pronunciations.has(w)) vocabulary.add(w);

  const arpa = buildArpa(corpus, general.filter((u) => vocabulary.has(u.word)), vocabulary);
  const dictLines = [...vocabulary].filter((w) => pronunciations.has(w)).flatMap((w) => pronunciations.get(w)!);
  writeOnce(lmPath, arpa);
  writeOnce(dictPath, `${dictLines.join("\n")}\n`);
  const model = { lmPath, dictPath, words: vocabulary.size };
  built.set(lmPath, model);
  return model;
}

function fileStamp(path: string): string {
  const st = statSync(path);
  return `${st.size}:${st.mtimeMs}`;
}

function writeOnce(path: string, text: string): void {
  if (existsSync(path)) return;
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, text, { mode: 0o600 });
  renameSync(temp, path);
}

/** Word → its dictionary lines ("pounds P AW N D Z", "either(2) …"). */
function readDictionary(path: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of readFileSync(path, "latin1").split("\n")) {
    const space = line.indexOf(" ");
    if (space <= 0) continue;
    const word = line.slice(0, space).replace(/\(\d+\)$/, "");
    const lines = out.get(word);
    if (lines) lines.push(line);
    else out.set(word, [line]);
  }
  return out;
}

/**
 * The unigram table of a sphinxbase trie binary LM ("Trie Language Model"): words with log10
 * probabilities, most probable first. Layout: header, order (1 byte), n-gram counts (uint32 each),
 * quantiser type (uint32; 1 = 16-bit tables: 2 per middle order and 1 for the last, 65536 floats
 * each), unigrams {float prob, float backoff, uint32 next} × (count + 1), …, and at the end the
 * words, NUL-separated, in unigram order.
 */
function readUnigrams(path: string): { word: string; log10Prob: number }[] {
  const bin = readFileSync(path);
  const header = "Trie Language Model";
  if (bin.toString("latin1", 0, header.length) !== header) throw new Error(`${path} is not a sphinxbase trie language model`);
  let at = header.length;
  const order = bin[at]!;
  at += 1;
  const count = bin.readUInt32LE(at);
  at += 4 * order;
  const quantType = bin.readUInt32LE(at);
  at += 4;
  if (quantType === 1) at += (2 * (order - 2) + 1) * 65536 * 4;
  else if (quantType !== 0) throw new Error(`${path}: unknown quantiser ${quantType}`);
  const words = bin.toString("latin1", bin.length - Math.min(bin.length, count * 64)).replace(/\0+$/, "").split("\0").slice(-count);
  if (words.length !== count) throw new Error(`${path}: word list does not match the unigram count`);
  // <s> is never predicted: its probability is a sentinel.
  const out = words.map((word, i) => ({ word, log10Prob: bin.readFloatLE(at + i * 12) * LOG10_OF_SPHINX_BASE })).filter((u) => u.word !== "<s>");
  if (!out.every((u) => u.log10Prob <= 0 && u.log10Prob > -99)) throw new Error(`${path}: unigram table not where expected`);
  return out.sort((a, b) => b.log10Prob - a.log10Prob);
}

const log10 = (p: number): string => (p > 0 ? Math.log10(p).toFixed(4) : "-99");

/**
 * An ARPA backoff trigram model: unigrams mix the corpus with everyday frequencies; bigrams and
 * trigrams (seen `MIN_TRIGRAM_COUNT` times) come from the corpus with absolute discounting, the
 * discounted mass given to the lower order through exact backoff weights.
 */
function buildArpa(corpus: string[][], general: { word: string; log10Prob: number }[], vocabulary: Set<string>): string {
  const c1 = new Map<string, number>();
  const c2 = new Map<string, number>();
  const c3 = new Map<string, number>();
  const add = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  let tokens = 0;
  for (const words of corpus) {
    if (words.length === 0) continue;
    const s = ["<s>", ...words, "</s>"];
    for (let i = 0; i < s.length; i++) {
      if (i > 0) {
        add(c1, s[i]!);
        tokens++;
        add(c2, `${s[i - 1]} ${s[i]}`);
      }
      if (i > 1) add(c3, `${s[i - 2]} ${s[i - 1]} ${s[i]}`);
    }
  }
  const generalTotal = general.reduce((sum, u) => sum + 10 ** u.log10Prob, 0);
  const generalP = new Map(general.map((u) => [u.word, 10 ** u.log10Prob / generalTotal]));
  const p1 = new Map<string, number>();
  for (const w of vocabulary) {
    if (w === "<s>") continue;
    // A word in neither (an extra word) gets a rare word's chance rather than none.
    p1.set(w, Math.max(RARE_WORD_P, DOMAIN_WEIGHT * ((c1.get(w) ?? 0) / tokens) + (1 - DOMAIN_WEIGHT) * (generalP.get(w) ?? 0)));
  }
  // Histories' totals.
  const h1 = new Map<string, number>();
  for (const [k, n] of c2) add2(h1, k.slice(0, k.indexOf(" ")), n);
  const h2 = new Map<string, number>();
  for (const [k, n] of c3) add2(h2, k.slice(0, k.lastIndexOf(" ")), n);

  const p2 = new Map<string, number>();
  const seen2 = new Map<string, { kept: number; lower: number }>();
  for (const [k, n] of c2) {
    const [v, w] = k.split(" ") as [string, string];
    const p = (n - DISCOUNT) / h1.get(v)!;
    p2.set(k, p);
    const s = seen2.get(v) ?? { kept: 0, lower: 0 };
    s.kept += p;
    s.lower += p1.get(w) ?? 0;
    seen2.set(v, s);
  }
  const bow1 = new Map<string, number>();
  for (const [v, s] of seen2) bow1.set(v, (1 - s.kept) / Math.max(1e-9, 1 - s.lower));
  /** Bigram probability with backoff, for the trigram weights. */
  const bigram = (v: string, w: string): number => p2.get(`${v} ${w}`) ?? (bow1.get(v) ?? 1) * (p1.get(w) ?? 0);

  const p3 = new Map<string, number>();
  const seen3 = new Map<string, { kept: number; lower: number }>();
  for (const [k, n] of c3) {
    if (n < MIN_TRIGRAM_COUNT) continue;
    const last = k.lastIndexOf(" ");
    const h = k.slice(0, last);
    const w = k.slice(last + 1);
    const p = (n - DISCOUNT) / h2.get(h)!;
    p3.set(k, p);
    const s = seen3.get(h) ?? { kept: 0, lower: 0 };
    s.kept += p;
    s.lower += bigram(h.slice(h.indexOf(" ") + 1), w);
    seen3.set(h, s);
  }
  const bow2 = new Map<string, number>();
  for (const [h, s] of seen3) bow2.set(h, (1 - s.kept) / Math.max(1e-9, 1 - s.lower));

  const lines = ["\\data\\", `ngram 1=${vocabulary.size}`, `ngram 2=${p2.size}`, `ngram 3=${p3.size}`, "", "\\1-grams:"];
  for (const w of vocabulary) {
    const bo = bow1.get(w);
    lines.push(`${w === "<s>" ? "-99" : log10(p1.get(w) ?? 0)} ${w}${bo !== undefined ? ` ${log10(bo)}` : ""}`);
  }
  lines.push("", "\\2-grams:");
  for (const [k, p] of p2) {
    const bo = bow2.get(k);
    lines.push(`${log10(p)} ${k}${bo !== undefined ? ` ${log10(bo)}` : ""}`);
  }
  lines.push("", "\\3-grams:");
  for (const [k, p] of p3) lines.push(`${log10(p)} ${k}`);
  lines.push("", "\\end\\", "");
  return lines.join("\n");
}

function add2(m: Map<string, number>, k: string, n: number): void {
  m.set(k, (m.get(k) ?? 0) + n);
}
