import { minorDigits } from "../core/money.js";

/*
 * Number words are read here by hand, on purpose. compromise 14 (with its numbers plugin built
 * in) and words-to-numbers were tried on the phrases people use for prices: compromise reads "a
 * couple of hundred" as 100, "one and a half grand" as 1.5 and "3.5k" as 3.5, misses "a fiver"
 * and "$35/hr", and returns floats; words-to-numbers turns "between eighty and one twenty" into
 * "between 81 20". Prices need exact decimals (bigint minor units) and price idioms ("one
 * twenty" is 120, "forty-two fifty" is 42.50), so the parser below stays; compromise is used
 * where it is better, for telling nouns from verbs in item names (phrases.ts).
 */

/**
 * Finds money, price ranges, rates and counts in spoken English, exactly (bigint minor units,
 * never floats): "£120", "120 pounds", "one hundred and twenty pounds", "€1,250.50",
 * "forty dollars an hour", "for three hours", "anything from 150 to 250 pounds".
 */

/** A sum of money said in the text. For a range, `amountMinor` is the range's maximum. */
export interface MoneyMention {
  amountMinor: bigint;
  currency: string;
  /** True when the text named the currency (symbol, code or word); else the default was used. */
  explicitCurrency: boolean;
  /** Set for "from X to Y", "between X and Y", "X to Y", "X-Y". */
  range?: { minMinor: bigint; maxMinor: bigint };
  /** Set for rates: "an hour" → "hour", "per day" → "day", "each" → "item". */
  per?: string;
  /** Character offsets of the mention in the text. */
  start: number;
  end: number;
}

/** A count of units: "three hours", "2 days", "between three and five hours". */
export interface CountMention {
  count: number;
  /** Upper end for "three to five hours". */
  countMax?: number;
  /** Singular unit, e.g. "hour". */
  unit: string;
  start: number;
  end: number;
}

/** Everything found in one text, in text order. */
export interface AmountScan {
  money: MoneyMention[];
  counts: CountMention[];
}

interface Token {
  kind: "num" | "sym" | "word" | "punct";
  text: string;
  lower: string;
  start: number;
  end: number;
  /** For "num": the value × SCALE; `k` when written "1.5k". */
  scaled?: bigint;
}

/** Fixed-point scale for parsed numbers: four decimal places are plenty for spoken prices. */
const SCALE = 10_000n;

const TOKEN_RE = /(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)([kK](?![A-Za-z]))?|([£€$¥])|([A-Za-z]+(?:['’][A-Za-z]+)*)|([/\-–—,.;:!?()%])/g;

const SMALL: Record<string, number> = {
  zero: 0, one: 1, two: 2, three: 3, four: 4, five: 5, six: 6, seven: 7, eight: 8, nine: 9, ten: 10,
  eleven: 11, twelve: 12, thirteen: 13, fourteen: 14, fifteen: 15, sixteen: 16, seventeen: 17,
  eighteen: 18, nineteen: 19,
};
const TENS: Record<string, number> = {
  twenty: 20, thirty: 30, forty: 40, fourty: 40, fifty: 50, sixty: 60, seventy: 70, eighty: 80, ninety: 90,
};
const MULTIPLIERS: Record<string, number> = { hundred: 100, thousand: 1000, million: 1_000_000 };

const SYMBOL_CURRENCY: Record<string, string> = { "£": "GBP", "€": "EUR", $: "USD", "¥": "JPY" };
const CODES = new Set(["GBP", "EUR", "USD", "CAD", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "JPY", "SGD", "HKD", "INR", "ZAR", "MXN", "BRL"]);
const DOLLAR_CURRENCIES = new Set(["USD", "CAD", "AUD", "NZD", "SGD", "HKD"]);

/** Currency words said after a number; `minor` for words naming the minor unit. */
function currencyWord(word: string, defaultCurrency: string): { currency: string; minor: boolean } | undefined {
  switch (word) {
    case "pound":
    case "pounds":
    case "quid":
    case "sterling":
      return { currency: "GBP", minor: false };
    case "pence":
    case "penny":
    case "pennies":
      return { currency: "GBP", minor: true };
    case "euro":
    case "euros":
      return { currency: "EUR", minor: false };
    case "yen":
      return { currency: "JPY", minor: false };
    case "franc":
    case "francs":
      return { currency: "CHF", minor: false };
    case "rappen":
    case "centimes":
      return { currency: "CHF", minor: true };
    case "dollar":
    case "dollars":
    case "buck":
    case "bucks":
      // "Dollars" in Toronto or Sydney are the local dollar.
      return { currency: DOLLAR_CURRENCIES.has(defaultCurrency) ? defaultCurrency : "USD", minor: false };
    case "cent":
    case "cents":
      return { currency: defaultCurrency === "EUR" || DOLLAR_CURRENCIES.has(defaultCurrency) ? defaultCurrency : "USD", minor: true };
    default: {
      const code = word.toUpperCase();
      return CODES.has(code) ? { currency: code, minor: false } : undefined;
    }
  }
}

/** Unit nouns, singular and plural, for rates ("an hour") and counts ("three hours"). */
const UNITS: Record<string, string> = {
  hour: "hour", hours: "hour", hr: "hour", hrs: "hour", h: "hour",
  day: "day", days: "day",
  week: "week", weeks: "week",
  month: "month", months: "month",
  night: "night", nights: "night",
  item: "item", items: "item", piece: "item", pieces: "item", unit: "item", units: "item",
  room: "room", rooms: "room",
  session: "session", sessions: "session",
  lesson: "lesson", lessons: "lesson",
  visit: "visit", visits: "visit",
  page: "page", pages: "page",
  person: "person", people: "person", head: "person",
  mile: "mile", miles: "mile",
  metre: "metre", metres: "metre", meter: "metre", meters: "metre",
  window: "window", windows: "window",
  door: "door", doors: "door",
};

/** Words that may follow a bare number that is still a price ("I can do 260 for the lot"). */
const FOLLOW_OK = new Set([
  "and", "or", "to", "for", "then", "total", "all", "in", "on", "a", "an", "per", "if", "but", "so", "is", "tops",
  "max", "maximum", "flat", "plus", "with", "that", "this", "it", "okay", "ok", "please", "yeah", "right", "fine",
  "deal", "cash", "including", "altogether", "overall", "upfront", "now", "the", "at", "though", "instead",
  "because", "each", "including", "inclusive", "all-in", "would", "will", "should", "sounds", "works", "work", "is",
  "hmm", "yes", "no", "how", "what", "you", "i", "we", "it's", "that's", "fair",
  "depending", "depends", "give", "roughly", "ish", "last", "final", "mate", "love", "cheers", "really", "sound",
  "good", "alright", "tops", "quid", "either", "maybe", "probably", "mind", "though", "up", "from", "or", "if",
]);

/** Words before a bare number that make it a price. */
const MONEY_CUES = new Set([
  "pay", "paying", "paid", "charge", "charging", "charges", "cost", "costs", "costing", "price", "priced", "quote",
  "quoted", "budget", "offer", "offering", "for", "say", "do", "make", "meet", "settle", "afford", "spend",
  "worth", "fee", "rate", "asking", "ask", "about", "around", "than", "over", "under", "only", "just",
  "take", "call", "quote", "quoting", "accept", "give", "knock", "down", "be", "instead", "rather", "from", "that's", "it's", "that'd", "it'd",
  "that'll", "it'll",
]);

/** A tokenised text. */
function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  for (const m of text.matchAll(TOKEN_RE)) {
    const start = m.index;
    const raw = m[0];
    if (m[1] !== undefined) {
      let scaled = parseDecimal(m[1].replace(/,/g, ""));
      if (m[2] !== undefined) scaled *= 1000n;
      tokens.push({ kind: "num", text: raw, lower: raw.toLowerCase(), start, end: start + raw.length, scaled });
    } else if (m[3] !== undefined) {
      tokens.push({ kind: "sym", text: raw, lower: raw, start, end: start + raw.length });
    } else if (m[4] !== undefined) {
      const lower = raw.toLowerCase().replace(/’/g, "'");
      // "Three fifty's a bit low": a number word keeps its value before "'s".
      const bare = lower.endsWith("'s") ? lower.slice(0, -2) : lower;
      const numberish = bare !== "one" && (SMALL[bare] !== undefined || TENS[bare] !== undefined || MULTIPLIERS[bare] !== undefined);
      tokens.push({ kind: "word", text: raw, lower: numberish ? bare : lower, start, end: start + raw.length });
    } else {
      tokens.push({ kind: "punct", text: raw, lower: raw, start, end: start + raw.length });
    }
  }
  return tokens;
}

/** "1250.50" → 12505000n (× SCALE); extra decimals beyond the scale are cut. */
function parseDecimal(digits: string): bigint {
  const [whole = "0", frac = ""] = digits.split(".");
  const fracScaled = (frac + "0000").slice(0, 4);
  return BigInt(whole) * SCALE + BigInt(fracScaled);
}

/**
 * Parses number words from the start of `words`: "one hundred and twenty" → 120, "a hundred" →
 * 100, "twenty-five" (as "twenty","-","five") → 25, "eleven hundred" → 1100. Returns the value and
 * how many entries it used, or undefined when `words` does not start with a number.
 */
export function parseNumberWords(words: readonly string[]): { value: number; used: number } | undefined {
  let total = 0;
  let current = 0;
  let used = 0;
  let last: "none" | "unit" | "teen" | "tens" | "mult" | "and" = "none";
  let any = false;
  /** "one twenty" already made hundreds: no "hundred" may follow. */
  let spokenHundreds = false;
  for (let i = 0; i < words.length; i++) {
    const w = (words[i] ?? "").toLowerCase();
    const next = (words[i + 1] ?? "").toLowerCase();
    if ((w === "a" || w === "an") && !any && MULTIPLIERS[next] !== undefined) {
      current = 1;
      last = "unit";
      continue;
    }
    // "and" joins only after hundred/thousand ("one hundred and twenty"): "three and five" is two numbers.
    if (w === "and" && any && last === "mult" && (SMALL[next] !== undefined || TENS[next] !== undefined)) {
      last = "and";
      continue;
    }
    // "twenty-five" arrives as "twenty", "-", "five".
    if (w === "-" && last === "tens" && SMALL[next] !== undefined && (SMALL[next] ?? 0) < 10) {
      continue;
    }
    const small = SMALL[w];
    const tens = TENS[w];
    const mult = MULTIPLIERS[w];
    if (small !== undefined) {
      const teen = small >= 10;
      // "one twenty five": after "one twenty" (a hundred and twenty) a unit still joins.
      if (spokenHundreds && last === "tens" && !teen && small > 0) {
        current += small;
        last = "unit";
        any = true;
        used = i + 1;
        continue;
      }
      // "one fifteen" is 115, as prices are said; "twelve thirteen" stays two numbers.
      if (last === "unit" && teen && total === 0 && current > 0 && current < 10 && !spokenHundreds) {
        current = current * 100 + small;
        spokenHundreds = true;
        last = "teen";
        used = i + 1;
        continue;
      }
      if (last === "unit" || last === "teen" || (last === "tens" && (teen || small === 0))) break;
      current += small;
      last = teen ? "teen" : "unit";
    } else if (tens !== undefined) {
      // "one twenty" is 120 and "two fifty" 250: how people say prices between 100 and 999.
      if (last === "unit" && total === 0 && current > 0 && current < 10 && !spokenHundreds) {
        current = current * 100 + tens;
        spokenHundreds = true;
        last = "tens";
        used = i + 1;
        continue;
      }
      if (last === "unit" || last === "teen" || last === "tens") break;
      current += tens;
      last = "tens";
    } else if (mult !== undefined) {
      if (!any && current === 0) break;
      if (spokenHundreds) break;
      if (mult === 100) {
        current = (current === 0 ? 1 : current) * 100;
      } else {
        total += (current === 0 ? 1 : current) * mult;
        current = 0;
      }
      last = "mult";
    } else {
      break;
    }
    any = true;
    used = i + 1;
  }
  if (!any) return undefined;
  return { value: total + current, used };
}

/** Parses a whole phrase of number words or digits ("one hundred and twenty", "1,250") → number. */
export function parseSpokenNumber(text: string): number | undefined {
  const tokens = tokenize(text);
  const phrase = numberPhraseAt(tokens, 0);
  if (!phrase || phrase.end !== tokens.length) return undefined;
  return Number(phrase.scaled) / Number(SCALE);
}

interface NumberPhrase {
  /** Token indices [start, end). */
  start: number;
  end: number;
  scaled: bigint;
  /** "grand" was said: thousands of the default currency. */
  grand: boolean;
  /** Slang that names its currency too: "a fiver", "a tenner" are pounds. */
  currency?: string;
  /** A scale word was said: hundred, thousand, grand, k, million. */
  multiplied?: boolean;
}

/** British money slang: the number and the currency in one word. */
const SLANG: Record<string, { value: bigint; currency: string }> = {
  fiver: { value: 5n, currency: "GBP" },
  fivers: { value: 5n, currency: "GBP" },
  tenner: { value: 10n, currency: "GBP" },
  tenners: { value: 10n, currency: "GBP" },
  score: { value: 20n, currency: "" },
  pony: { value: 25n, currency: "GBP" },
  ton: { value: 100n, currency: "GBP" },
  monkey: { value: 500n, currency: "GBP" },
};

/** Single digits said after "point": "one point two five". */
const DIGIT_WORDS: Record<string, string> = {
  zero: "0", oh: "0", o: "0", nought: "0", one: "1", two: "2", three: "3", four: "4", five: "5", six: "6", seven: "7", eight: "8", nine: "9",
};

/**
 * A number starting at token `i`: digits or words, with decimals ("one point two five"),
 * halves ("one and a half"), "a couple of", slang ("a fiver") and the multipliers "thousand",
 * "grand", "k", "hundred" ("a couple of hundred", "3.5k").
 */
function numberPhraseAt(tokens: readonly Token[], i: number): NumberPhrase | undefined {
  const tok = tokens[i];
  if (!tok) return undefined;
  let scaled: bigint;
  let end: number;
  let currency: string | undefined;
  if (tok.kind === "num" && tok.scaled !== undefined) {
    scaled = tok.scaled;
    end = i + 1;
  } else if (tok.kind === "word") {
    const article = tok.lower === "a" || tok.lower === "an";
    const head = article ? tokens[i + 1] : tok;
    if (head?.kind === "word" && SLANG[head.lower] && (article || head.lower.endsWith("s") === false)) {
      const slang = SLANG[head.lower]!;
      // "a score" is twenty of something; only a named currency makes it money, so it stays bare.
      if (!article && head.lower === "score") return undefined;
      return { start: i, end: (article ? i + 2 : i + 1), scaled: slang.value * SCALE, grand: false, currency: slang.currency || undefined };
    }
    if (head?.lower === "half" && tokens[(article ? i + 2 : i + 1)]?.lower === "a") {
      // "half a grand", "half a million".
      const at = article ? i + 3 : i + 2;
      const unit = tokens[at]?.lower;
      if (unit === "grand" || unit === "thousand" || unit === "k") return { start: i, end: at + 1, scaled: 500n * SCALE, grand: unit === "grand" };
      if (unit === "million") return { start: i, end: at + 1, scaled: 500_000n * SCALE, grand: false };
      return undefined;
    }
    if (tok.lower === "couple" || (article && tokens[i + 1]?.lower === "couple")) {
      // "a couple of hours" is two; "a couple of hundred" two hundred.
      const at = article ? i + 1 : i;
      if (tokens[at + 1]?.lower !== "of") return undefined;
      scaled = 2n * SCALE;
      end = at + 2;
      const mult = tokens[end]?.lower;
      if (mult === "hundred") {
        scaled *= 100n;
        end += 1;
      }
    } else if (article && tokens[i + 1]?.lower === "grand") {
      return { start: i, end: i + 2, scaled: 1000n * SCALE, grand: true };
    } else {
      const words: string[] = [];
      for (let j = i; j < tokens.length && j < i + 12; j++) {
        const t = tokens[j]!;
        if (t.kind === "word") words.push(t.lower);
        else if (t.kind === "punct" && t.text === "-" && t.start === tokens[j - 1]?.end) words.push("-");
        else break;
      }
      const parsed = parseNumberWords(words);
      if (!parsed) return undefined;
      scaled = BigInt(parsed.value) * SCALE;
      end = i + parsed.used;
      // "Forty-two fifty", "twelve ninety-nine": major units then minor units, as prices are said.
      if (parsed.value >= 10 && parsed.value < 100 && !words.slice(0, parsed.used).some((w) => MULTIPLIERS[w] !== undefined)) {
        const rest = words.slice(parsed.used);
        const cents = rest[0] !== undefined && TENS[rest[0]] !== undefined ? parseNumberWords(rest) : undefined;
        if (cents && cents.value >= 10 && cents.value < 100 && !rest.slice(0, cents.used).some((w) => MULTIPLIERS[w] !== undefined)) {
          scaled += (BigInt(cents.value) * SCALE) / 100n;
          end += cents.used;
        }
      }
      // "One eight five": three or more single digits said one by one are one number.
      if (parsed.used === 1 && parsed.value < 10 && parsed.value > 0) {
        let digits = String(parsed.value);
        let j = end;
        while (j < tokens.length && tokens[j]!.kind === "word" && (SMALL[tokens[j]!.lower] ?? 10) < 10 && digits.length < 6) {
          digits += String(SMALL[tokens[j]!.lower]);
          j += 1;
        }
        if (digits.length >= 3) {
          scaled = BigInt(digits) * SCALE;
          end = j;
        }
      }
      // "one point two five": digits after "point" are said one by one.
      if (tokens[end]?.lower === "point" && DIGIT_WORDS[tokens[end + 1]?.lower ?? ""] !== undefined) {
        let digits = "";
        let j = end + 1;
        while (j < tokens.length && DIGIT_WORDS[tokens[j]!.lower] !== undefined && digits.length < 4) {
          digits += DIGIT_WORDS[tokens[j]!.lower];
          j += 1;
        }
        scaled += BigInt((digits + "0000").slice(0, 4));
        end = j;
      }
    }
  } else {
    return undefined;
  }
  // "one and a half grand", "two and a half thousand".
  if (tokens[end]?.lower === "and" && tokens[end + 1]?.lower === "a" && tokens[end + 2]?.lower === "half") {
    const unit = tokens[end + 3]?.lower;
    // "an hour and a half" is time, but after a number it is half of the number's unit.
    if (unit === "grand" || unit === "thousand" || unit === "k" || unit === "million" || unit === "hundred" || UNIT_WORDS.has(unit ?? "") || unit === undefined || CURRENCY_AFTER.has(unit ?? "")) {
      scaled += SCALE / 2n;
      end += 3;
    }
  }
  let grand = false;
  let multiplied = tok.kind === "word" && tokens.slice(i, end).some((t) => MULTIPLIERS[t.lower] !== undefined);
  if (tok.kind === "num" && /k$/i.test(tok.text)) multiplied = true;
  const after = tokens[end];
  if (after?.kind === "word" && ["thousand", "k", "grand", "million", "hundred"].includes(after.lower)) multiplied = true;
  if (after?.kind === "word") {
    if (after.lower === "thousand" || after.lower === "k") {
      scaled *= 1000n;
      end += 1;
    } else if (after.lower === "grand") {
      scaled *= 1000n;
      grand = true;
      end += 1;
    } else if (after.lower === "million" && (tok.kind === "num" || scaled % SCALE !== 0n)) {
      scaled *= 1_000_000n;
      end += 1;
    } else if (after.lower === "hundred" && (tok.kind === "num" || scaled % SCALE !== 0n)) {
      scaled *= 100n;
      end += 1;
    }
  }
  return { start: i, end, scaled, grand, currency, multiplied };
}

/** Unit and currency words that may follow "and a half". */
const UNIT_WORDS = new Set(["hours", "hour", "days", "day", "weeks", "week"]);
const CURRENCY_AFTER = new Set(["pounds", "quid", "euros", "dollars", "bucks", "francs", "yen"]);

/** Converts a scaled value to minor units of `currency`, rounding half up. */
function toMinor(scaled: bigint, currency: string): bigint {
  const factor = 10n ** BigInt(minorDigits(currency));
  return (scaled * factor * 2n + SCALE) / (2n * SCALE);
}

interface Candidate {
  phrase: NumberPhrase;
  /** Token range including currency symbol/word and rate words. */
  start: number;
  end: number;
  currency?: string;
  /** The number counts minor units ("50p"). */
  minor: boolean;
  per?: string;
  /** A unit noun follows directly: a count, not money. */
  countUnit?: string;
  /** A plural noun follows ("four jars"): a count of that noun. */
  nounUnit?: string;
  cue: boolean;
  followOk: boolean;
}

/** How `scanAmounts` reads bare numbers. */
export interface ScanOptions {
  /**
   * "cued" (default): a bare number is money only after a price word ("for 260", "pay 80").
   * "loose": any bare number not followed by a unit or a noun is money; for a conversation
   * already known to be about a price (the deal state filters years, times and ages itself).
   */
  bareNumbers?: "cued" | "loose";
}

/**
 * Scans a text for money, ranges, rates and counts. Bare numbers are money only after a price
 * word ("for", "pay", "charge", "do", …) or in a range with a currency; they take
 * `defaultCurrency` (the profile's).
 */
export function scanAmounts(text: string, defaultCurrency: string, options: ScanOptions = {}): AmountScan {
  const loose = options.bareNumbers === "loose";
  const tokens = tokenize(text);
  const candidates: Candidate[] = [];
  for (let i = 0; i < tokens.length; ) {
    const phrase = numberPhraseAt(tokens, i);
    if (!phrase) {
      i += 1;
      continue;
    }
    candidates.push(describe(tokens, phrase, defaultCurrency));
    i = Math.max(phrase.end, candidates[candidates.length - 1]!.end);
  }

  const money: MoneyMention[] = [];
  const counts: CountMention[] = [];
  for (let c = 0; c < candidates.length; c++) {
    const a = candidates[c]!;
    const b = candidates[c + 1];
    const range = b ? rangeBetween(tokens, a, b) : false;
    if (b && range) {
      const currency = a.currency ?? b.currency;
      const unit = b.countUnit ?? a.countUnit;
      if (currency !== undefined || ((a.cue || range === "strong" || loose) && unit === undefined && b.followOk)) {
        const cur = currency ?? defaultCurrency;
        let min = amountOf(a, cur);
        const max = amountOf(b, cur);
        // "between three and four hundred", "three to five grand": the scale said once covers both.
        if (b.phrase.multiplied && !a.phrase.multiplied && a.phrase.scaled < 100n * SCALE && min > 0n) {
          while (min * 10n <= max) min *= 10n;
          if (min > max) min /= 10n;
        }
        if (min > 0n && min <= max) {
          money.push({
            amountMinor: max,
            currency: cur,
            explicitCurrency: currency !== undefined,
            range: { minMinor: min, maxMinor: max },
            per: b.per ?? a.per,
            start: tokens[a.start]!.start,
            end: tokens[b.end - 1]!.end,
          });
          c += 1;
          continue;
        }
      } else if (unit !== undefined && isWhole(a.phrase.scaled) && isWhole(b.phrase.scaled)) {
        const lo = Number(a.phrase.scaled / SCALE);
        const hi = Number(b.phrase.scaled / SCALE);
        if (lo > 0 && lo <= hi) {
          counts.push({ count: lo, countMax: hi, unit, start: tokens[a.start]!.start, end: tokens[b.end]?.end ?? tokens[b.end - 1]!.end });
          c += 1;
          continue;
        }
      }
    }
    if (a.currency !== undefined || ((a.cue || loose) && a.countUnit === undefined && a.followOk) || a.phrase.grand) {
      const cur = a.currency ?? defaultCurrency;
      const amount = amountOf(a, cur);
      if (amount > 0n) {
        money.push({
          amountMinor: amount,
          currency: cur,
          explicitCurrency: a.currency !== undefined,
          per: a.per,
          start: tokens[a.start]!.start,
          end: tokens[a.end - 1]!.end,
        });
      }
    } else if (a.countUnit !== undefined && isWhole(a.phrase.scaled) && a.phrase.scaled > 0n) {
      counts.push({ count: Number(a.phrase.scaled / SCALE), unit: a.countUnit, start: tokens[a.start]!.start, end: tokens[a.end]!.end });
    } else if (a.nounUnit !== undefined && isWhole(a.phrase.scaled) && a.phrase.scaled > 0n) {
      counts.push({ count: Number(a.phrase.scaled / SCALE), unit: a.nounUnit, start: tokens[a.start]!.start, end: tokens[a.end]!.end });
    }
  }
  return { money, counts };
}

/** The first money mention in a text, if any (table-test helper and quick checks). */
export function parseMoney(text: string, defaultCurrency: string): MoneyMention | undefined {
  return scanAmounts(text, defaultCurrency).money[0];
}

function isWhole(scaled: bigint): boolean {
  return scaled % SCALE === 0n;
}

function amountOf(c: Candidate, currency: string): bigint {
  return c.minor ? c.phrase.scaled / SCALE : toMinor(c.phrase.scaled, currency);
}

/** Looks around a number for its currency, rate unit, count unit and price cues. */
function describe(tokens: readonly Token[], phrase: NumberPhrase, defaultCurrency: string): Candidate {
  let start = phrase.start;
  let end = phrase.end;
  let currency: string | undefined = phrase.currency;
  let minor = false;
  const before = tokens[start - 1];
  if (currency !== undefined) {
    // Slang names its own currency ("a fiver").
  } else if (before?.kind === "sym") {
    currency = SYMBOL_CURRENCY[before.text];
    start -= 1;
  } else if (before?.kind === "word" && CODES.has(before.text.toUpperCase()) && (before.text === before.text.toUpperCase() || before.lower === "chf")) {
    currency = before.text.toUpperCase();
    start -= 1;
  }
  const after = tokens[end];
  if (currency === undefined && after) {
    if (after.kind === "sym" && after.start === tokens[end - 1]!.end) {
      currency = SYMBOL_CURRENCY[after.text];
      end += 1;
    } else if (after.kind === "word") {
      if ((after.lower === "swiss" || after.lower === "japanese") && tokens[end + 1]?.kind === "word") {
        const named = currencyWord(tokens[end + 1]!.lower, defaultCurrency);
        if (named) end += 1;
      }
    }
    const word0 = tokens[end];
    if (currency === undefined && word0?.kind === "word") {
      const after = word0;
      // "50p" is fifty pence only when written together.
      const attachedP = after.lower === "p" && after.start === tokens[end - 1]!.end;
      const word = attachedP ? { currency: "GBP", minor: true } : currencyWord(after.lower, defaultCurrency);
      if (word) {
        currency = word.currency;
        minor = word.minor;
        end += 1;
        // "twelve pounds fifty": the pence follow the pounds.
        if (!minor) {
          const pence = numberPhraseAt(tokens, end);
          const afterPence = pence ? tokens[pence.end] : undefined;
          if (
            pence &&
            !pence.grand &&
            pence.scaled < 100n * SCALE &&
            isWhole(pence.scaled) &&
            (afterPence === undefined || afterPence.kind !== "word" || FOLLOW_OK.has(afterPence.lower)) &&
            (afterPence === undefined || afterPence.kind !== "word" || UNITS[afterPence.lower] === undefined)
          ) {
            const digits = minorDigits(currency);
            if (digits === 2) {
              phrase = { ...phrase, scaled: phrase.scaled + pence.scaled / 100n };
              end = pence.end;
            }
          }
        }
      }
    }
  }
  // Rates: "an hour", "per day", "/hr", "each", "hourly".
  let per: string | undefined;
  const r0 = tokens[end];
  const r1 = tokens[end + 1];
  if (r0 && (r0.lower === "a" || r0.lower === "an" || r0.lower === "per" || r0.text === "/") && r1?.kind === "word" && UNITS[r1.lower]) {
    per = UNITS[r1.lower];
    end += 2;
  } else if (
    currency !== undefined &&
    r0 &&
    (r0.lower === "a" || r0.lower === "an" || r0.lower === "per") &&
    r1?.kind === "word" &&
    r1.lower.length >= 3 &&
    !NOT_UNITS.has(r1.lower) &&
    currencyWord(r1.lower, defaultCurrency) === undefined
  ) {
    // "€12.50 a jar", "£40 a bag": a price per thing is a rate in that thing.
    per = singular(r1.lower);
    end += 2;
  } else if (r0?.lower === "each") {
    per = "item";
    end += 1;
  } else if (r0?.lower === "hourly") {
    per = "hour";
    end += 1;
  } else if (r0?.lower === "daily") {
    per = "day";
    end += 1;
  }
  let countUnit: string | undefined;
  let nounUnit: string | undefined;
  const next = tokens[end];
  if (currency === undefined && next?.kind === "word") {
    // "four jars": a count of things, kept for rates in those things.
    if (UNITS[next.lower] === undefined && /[^s]s$/.test(next.lower) && next.lower.length > 3 && !FOLLOW_OK.has(next.lower)) nounUnit = singular(next.lower);
    const unit = UNITS[next.lower];
    // "3 h" is hours, but "h" alone after a long gap is not; require it attached or spaced normally.
    if (unit && !(next.lower === "h" && next.start !== tokens[end - 1]!.end)) countUnit = unit;
  }
  const hyphenated = next?.kind === "punct" && next.text === "-" && next.start === tokens[end - 1]!.end && tokens[end + 1]?.kind === "word" && tokens[end + 1]!.start === next.end;
  if (hyphenated && currency === undefined) {
    // "one-hour lessons", "two-bedroom flat": a number joined to a noun describes it.
    const unit = UNITS[tokens[end + 1]!.lower];
    if (unit) countUnit = unit;
  }
  const followOk = !hyphenated && (next === undefined || next.kind !== "word" || FOLLOW_OK.has(next.lower));
  let cue = false;
  for (let j = start - 1; j >= 0 && j >= start - 3; j--) {
    const t = tokens[j]!;
    if (t.kind === "punct" && t.text !== "-") break;
    if (t.kind === "word" && MONEY_CUES.has(t.lower)) {
      cue = true;
      break;
    }
  }
  // A stand-alone number right at a clause start after "£" was handled above; after "from"/"between"
  // cues come from the range rule.
  return { phrase, start, end, currency, minor, per, countUnit, nounUnit, cue, followOk };
}

/** Words after "a" that are no unit of sale: "£50 a bargain", "a bit". */
const NOT_UNITS = new Set(["lot", "bit", "little", "couple", "few", "deal", "bargain", "steal", "great", "good", "fair", "fortune", "pop", "throw", "shot", "fiver", "tenner", "grand", "total", "discount", "quid", "the", "and", "but"]);

/** "jars" → "jar", "boxes" → "box", "berries" → "berry". */
function singular(word: string): string {
  if (word.length > 4 && word.endsWith("ies")) return word.slice(0, -3) + "y";
  if (word.length > 4 && /(?:ches|shes|xes|sses)$/.test(word)) return word.slice(0, -2);
  if (word.length > 3 && word.endsWith("s") && !word.endsWith("ss")) return word.slice(0, -1);
  return word;
}

/**
 * Whether candidates `a` and `b` form a range: "from A to B", "between A and B", "A to B", "A-B".
 * "strong" when introduced by from/between/anywhere (then bare numbers count as money with a cue).
 */
function rangeBetween(tokens: readonly Token[], a: Candidate, b: Candidate): false | "weak" | "strong" {
  const gap = tokens.slice(a.end, b.start);
  if (gap.length !== 1) return false;
  const connector = gap[0]!.lower;
  const intro = tokens[a.start - 1]?.lower;
  const strong = intro === "from" || intro === "between";
  if (connector === "and") return intro === "between" ? "strong" : false;
  if (connector === "to" || connector === "-" || connector === "–" || connector === "—") return strong ? "strong" : "weak";
  return false;
}
