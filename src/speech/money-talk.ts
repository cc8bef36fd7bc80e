/**
 * Sentences of ordinary deal talk with prices said every way people say them ("two hundred and
 * fifty quid", "one fifty", "twelve hundred", "eighty dollars an hour", "fifteen pounds fifty"):
 * the training text of the local recogniser's money-biased language model (money-language-model.ts).
 * Deterministic: the same sentences on every run, so the built model is content-addressed.
 */

const UNITS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
const TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"];
const TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];

/** 1..99 in words: "seven", "fourteen", "forty five". */
function underHundred(n: number): string {
  if (n < 10) return UNITS[n - 1]!;
  if (n < 20) return TEENS[n - 10]!;
  const tens = TENS[Math.floor(n / 10) - 2]!;
  return n % 10 === 0 ? tens : `${tens} ${UNITS[(n % 10) - 1]}`;
}

/** The ways a number of whole units is said; the British "and" and the shop-talk "one fifty". */
function spokenNumbers(n: number): string[] {
  if (n < 100) return [underHundred(n)];
  const forms: string[] = [];
  const hundreds = Math.floor(n / 100);
  const rest = n % 100;
  if (n < 1000) {
    const head = `${UNITS[hundreds - 1]} hundred`;
    forms.push(rest === 0 ? head : `${head} and ${underHundred(rest)}`);
    if (rest === 0 && hundreds === 1) forms.push("a hundred");
    else if (rest !== 0) forms.push(`${UNITS[hundreds - 1]} ${rest < 10 ? `oh ${UNITS[rest - 1]}` : underHundred(rest)}`);
    return forms;
  }
  const thousands = Math.floor(n / 1000);
  const belowThousand = n % 1000;
  const head = `${underHundred(thousands)} thousand`;
  if (belowThousand === 0) forms.push(head, ...(thousands === 1 ? ["a thousand"] : []));
  else if (belowThousand % 100 === 0) forms.push(`${head} ${UNITS[belowThousand / 100 - 1]} hundred`);
  else forms.push(`${head} and ${underHundred(belowThousand % 100)}`);
  // "twelve hundred", "fifteen hundred".
  if (n < 10000 && n % 100 === 0 && hundreds % 10 !== 0) forms.push(`${underHundred(hundreds)} hundred`);
  return forms;
}

const PRICES = [
  5, 8, 10, 12, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 99, 100, 110, 120, 125, 130, 140, 145, 150, 160,
  175, 180, 200, 220, 240, 250, 275, 300, 320, 350, 400, 450, 480, 500, 550, 600, 650, 700, 750, 800, 850, 900, 950, 1000, 1100,
  1200, 1250, 1500, 1800, 2000, 2500, 3000, 4500, 5000, 7500, 10000,
];
const CURRENCIES = ["pounds", "quid", "dollars", "bucks", "euros", "pounds", "dollars"];
const SMALL_CHANGE = ["pence", "cents", "p"];
const PER = ["an hour", "a day", "per hour", "per day", "each", "a week", "a month", "per square metre", "a visit"];
const THINGS = [
  "boiler", "tap", "fence", "roof", "kitchen", "bathroom", "bike", "car", "lesson", "garden", "window", "radiator", "door", "sofa",
  "table", "laptop", "phone", "camera", "shower", "sink", "toilet", "lights", "wiring", "gutter", "drive", "patio", "deck", "wall",
  "ceiling", "floor", "carpet", "boxes", "parts", "materials", "paint", "tiles", "cake", "website", "logo", "haircut", "engine",
  "brakes", "tyres", "service", "repair", "job", "work", "labour", "delivery", "callout", "valve", "pipe", "lawn", "hedge", "shed",
  "plumbing", "painting", "decorating", "gardening", "cleaning", "roofing", "plastering", "lessons", "flat", "house", "van",
];
const TRADES = ["plumber", "painter", "electrician", "roofer", "gardener", "mechanic", "builder", "cleaner", "tutor", "designer", "decorator", "carpenter"];
const DOING = ["fix", "fit", "paint", "replace", "clean", "service", "repair", "sell", "build", "install", "check", "sort", "do", "deliver", "mow", "tile"];
const TIMES = ["today", "tomorrow", "next week", "on monday", "on friday", "this afternoon", "by the weekend", "in two days", "tonight", "this morning"];

/** Templates: {amount} a price with its currency, {n} a bare price, {thing}, {trade}, {doing}, {time}, {per}. */
const TEMPLATES = [
  "i can {doing} the {thing} for {amount}",
  "i can {doing} your {thing} {time} for {amount}",
  "it will be {amount} for the {thing}",
  "that will be {amount}",
  "that comes to {amount}",
  "the whole job comes to {amount}",
  "the {thing} costs {amount}",
  "the {thing} is {amount} and the {thing} is {amount}",
  "how much for the {thing}",
  "how much will it cost",
  "how much do you charge",
  "what do you charge {per}",
  "i charge {amount} {per}",
  "it is {amount} {per}",
  "would you take {amount}",
  "would you take {amount} for the {thing}",
  "i will give you {amount} for it",
  "i will pay you {amount} for the {thing}",
  "i can pay {amount} {time}",
  "can you do it for {amount}",
  "could you do {amount}",
  "call it {n} and we have a deal",
  "call it {amount}",
  "let's say {amount}",
  "let's meet in the middle at {amount}",
  "{amount} and it's a deal",
  "{amount} and we have a deal",
  "okay {amount} it is",
  "fine {amount} it is",
  "{amount} it is",
  "{n} it is then",
  "that's too much",
  "that's a bit steep",
  "i was thinking more like {amount}",
  "my budget is {amount}",
  "the best i can do is {amount}",
  "i can go to {amount}",
  "i can't go below {amount}",
  "pay me a deposit of {amount} {time}",
  "a deposit of {amount} and the rest when it's done",
  "{amount} up front and {amount} when it's finished",
  "{amount} for parts and {amount} for labour",
  "{amount} for the {thing} plus {amount} for the {thing}",
  "the callout fee is {amount}",
  "the parts are {amount}",
  "it's {amount} including materials",
  "it's {amount} plus materials",
  "materials included",
  "anything from {amount} to {amount}",
  "between {amount} and {amount}",
  "somewhere around {amount}",
  "about {amount}",
  "roughly {n}",
  "it'll take {time}",
  "two days of work and {amount} for parts",
  "i'm a {trade}",
  "i need a {trade} {time}",
  "hi i'm the {trade} you called",
  "can you come {time}",
  "i can start {time}",
  "i can come {time}",
  "when can you start",
  "that sounds fair",
  "that sounds good",
  "that works for me",
  "sounds good to me",
  "yes please",
  "no thanks",
  "deal",
  "it's a deal",
  "we have a deal",
  "deal let's shake on it",
  "let's shake on it",
  "shake on it",
  "handshake",
  "handshake {amount} it is",
  "agreed",
  "okay agreed",
  "you've got a deal",
  "done",
  "no deal",
  "not yet",
  "let me think about it",
  "i'll get back to you",
  "send me the contract",
  "i'll sign it",
  "please sign the contract",
  "pay me {time}",
  "i'll pay you {time}",
  "i'll pay when the job is done",
  "can i pay by card",
  "cash or card",
  "is that with tax",
  "does that include the {thing}",
  "what about the {thing}",
  "and the {thing}",
  "fifteen pounds fifty",
  "{n} pounds fifty",
  "{n} dollars and fifty cents",
  "ninety nine {small}",
  "fifty {small} each",
  "a fiver",
  "a tenner",
  "a fiver each",
  "a tenner for the {thing}",
  "a hundred quid",
  "a grand",
  "two grand",
  "half a grand",
  "the {trade} wants {amount}",
  "you owe me {amount}",
  "i owe you {amount}",
  "thank you",
  "thanks very much",
  "hello",
  "hi there",
  "good morning",
  "see you {time}",
];

/** Every template filled many times, cycling through prices, currencies and things. */
export function moneyTalkSentences(): string[] {
  const amounts: string[] = [];
  const bare: string[] = [];
  for (const price of PRICES) {
    for (const spoken of spokenNumbers(price)) {
      bare.push(spoken);
      for (const currency of CURRENCIES) amounts.push(`${spoken} ${currency}`);
    }
  }
  // A fixed xorshift sequence: varied fills, the same on every run.
  let state = 0x2545f491;
  const pick = <T>(list: readonly T[]): T => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return list[(state >>> 0) % list.length]!;
  };
  const slots: Record<string, readonly string[]> = { amount: amounts, n: bare, thing: THINGS, trade: TRADES, doing: DOING, time: TIMES, per: PER, small: SMALL_CHANGE };
  const sentences: string[] = [];
  for (const template of TEMPLATES) {
    const fills = /\{/.test(template) ? 60 : 3;
    for (let k = 0; k < fills; k++) sentences.push(template.replace(/\{(\w+)\}/g, (_, name: string) => pick(slots[name] ?? [name])));
  }
  // Every price form at least once on its own and with each currency, so each n-gram of it is seen.
  for (const a of amounts) sentences.push(a);
  for (const b of bare) sentences.push(`for ${b}`);
  return sentences;
}
