import { describe, expect, it } from "vitest";
import {
  dealRoles,
  dealTerms,
  initialDealState,
  nextDealState,
  readConversation,
  summariseDealState,
  type DealParty,
  type DealState,
} from "../../src/language/deal-state.js";

const S = "sam"; // the tradesperson or seller by profile
const C = "cleo"; // the client by profile
const PARTIES: DealParty[] = [
  { userId: S, profileRole: "provider" },
  { userId: C, profileRole: "client" },
];

/** Folds lines one at a time, returning every intermediate state. */
function talk(lines: [string, string][], currency = "GBP", parties = PARTIES): DealState[] {
  const states: DealState[] = [];
  let state = initialDealState(parties, currency);
  lines.forEach(([speakerUserId, text], index) => {
    state = nextDealState(state, { speakerUserId, text, index });
    states.push(state);
  });
  return states;
}

function last(lines: [string, string][], currency = "GBP", parties = PARTIES): DealState {
  return talk(lines, currency, parties).at(-1)!;
}

function items(state: DealState) {
  return dealTerms(state)!.items.map((i) => [i.description, i.amountMinor, i.quantity, i.range ? [i.range.minMinor, i.range.maxMinor] : undefined]);
}

describe("deal state: a pure reducer over final utterances", () => {
  it("never changes the state it is given", () => {
    const before = initialDealState(PARTIES, "GBP");
    const after = nextDealState(before, { speakerUserId: S, text: "The repair is £120.", index: 0 });
    expect(before.items).toEqual([]);
    expect(before.offers).toEqual([]);
    expect(after.items).toHaveLength(1);
    const again = nextDealState(after, { speakerUserId: C, text: "Deal.", index: 1 });
    expect(after.acceptances).toEqual([]);
    expect(again.acceptances).toHaveLength(1);
  });

  it("keeps the utterance each fact came from", () => {
    const state = last([
      [C, "Can you fix the gutter?"],
      [S, "The gutter repair is a hundred and twenty pounds."],
      [C, "Deal."],
    ]);
    expect(state.items[0]!.priceSource).toMatchObject({ index: 1, speakerUserId: S, text: "The gutter repair is a hundred and twenty pounds." });
    expect(state.offers[0]!.source.index).toBe(1);
    expect(state.acceptances[0]).toMatchObject({ speakerUserId: C, source: { index: 2, text: "Deal." } });
  });
});

describe("items are the noun phrase the people used", () => {
  it.each<[string, [string, string][], string[]]>([
    ["a job said with its verb", [[C, "Can you fix the gutter round the back?"], [S, "That'd be one eighty."]], ["Gutter repair"]],
    ["a price for a thing", [[S, "It's eighty pounds for the call-out."]], ["Call-out"]],
    ["the thing, then the price", [[S, "The piano tuning is €75."]], ["Piano tuning"]],
    ["two things in one breath", [[S, "Window cleaning is CHF 120, the oven cleaning is CHF 80."]], ["Window cleaning", "Oven cleaning"]],
    ["a 'for' phrase opening the sentence", [[S, "For the gutter repair, new brackets and resealing, I'd say, er, one hundred and eighty five pounds."]], ["Gutter repair"]],
    ["a name said with 'is' run into it", [[S, "Tap's a quick one, thirty quid."]], ["Tap"]],
    ["a noun right before a bare price", [[S, "Materials would be about two fifty, and labour seven hundred."]], ["Materials", "Labour"]],
    ["goods being sold", [[C, "I'll sell you my sofa for fifty quid."]], ["Sofa"]],
    ["goods asked about", [[C, "How much for the bike?"], [S, "Forty pounds."]], ["Bike"]],
    ["a job said as a gerund", [[C, "What would the tiling cost me?"], [S, "A couple of hundred euros."]], ["Tiling"]],
    ["a trade's own noun", [[C, "I want guitar lessons."], [S, "Forty euros an hour."]], ["Guitar lessons"]],
  ])("%s", (_, lines, names) => {
    const state = last(lines);
    expect(dealTerms(state)!.items.map((i) => i.description)).toEqual(names);
  });

  it("never names an item with a filler word", () => {
    for (const lines of [
      [[S, "I can do it for 260."]],
      [[S, "That's forty for the lot."]],
      [[S, "You had it at four fifty, would you take three fifty?"]],
      [[S, "Give us a fiver and it's yours."]],
    ] as [string, string][][]) {
      const names = dealTerms(last(lines))!.items.map((i) => i.description.toLowerCase());
      for (const name of names) expect(["it", "that", "lot", "had", "give", "take", "yours", "us"]).not.toContain(name);
    }
  });
});

describe("quantity × price", () => {
  it.each<[string, [string, string][], bigint, number]>([
    ["each, so three of them", [[S, "Thirty five each, so three of them is a hundred and five."]], 10_500n, 3],
    ["an hour, three sessions a week for two weeks", [[S, "Fifty an hour, three sessions a week for two weeks."]], 30_000n, 6],
    ["a rate and the hours, in two turns", [[S, "I charge $35/hr."], [S, "Four hours, so for the TV mounting that's a hundred and forty dollars."]], 14_000n, 4],
    ["per lesson, with the count said before", [[S, "I do a block of ten lessons."], [S, "CHF 85 per lesson."]], 85_000n, 10],
    ["a jar, then four jars", [[S, "It's €12.50 a jar."], [C, "I'll take four jars."], [S, "Four jars, that's fifty euros."]], 5_000n, 4],
    ["each, for the three chairs", [[S, "£20 each for the three chairs."]], 6_000n, 3],
    ["per person, four of us", [[S, "It's £30 per person."], [C, "There are four of us."], [S, "So £120."]], 12_000n, 4],
    ["yen an hour, two lessons", [[S, "It's three thousand five hundred yen an hour. Two lessons before the exam, so seven thousand yen."]], 7_000n, 2],
  ])("%s", (_, lines, amount, quantity) => {
    const state = last(lines, lines.some(([, t]) => /€/.test(t)) ? "EUR" : "GBP");
    const [item] = dealTerms(state)!.items;
    expect(item).toMatchObject({ amountMinor: amount, quantity });
  });

  it("turns a count range into a price range held as uncertain", () => {
    const state = last([[S, "Labour's $75 an hour, probably two to three hours."], [C, "Sounds good."]], "USD");
    const [item] = dealTerms(state)!.items;
    expect(item).toMatchObject({ quantity: 3, unitPriceMinor: 7_500n, amountMinor: 22_500n, range: { minMinor: 15_000n, maxMinor: 22_500n }, uncertain: true });
  });

  it("reads a restated product as the item's total, not a second item", () => {
    const state = last([[S, "CHF 85 per lesson, so for the ten piano lessons CHF 850."], [C, "CHF 850 for ten. Yes, we'd like that."]], "CHF");
    expect(items(state)).toEqual([["Piano lessons", 85_000n, 10, undefined]]);
    expect(dealTerms(state)).toMatchObject({ agreed: true, agreedTotalMinor: 85_000n });
  });
});

describe("a total one side states and the other confirms wins over the sum", () => {
  it.each<[string, [string, string][], bigint]>([
    ["all in?, that's right", [[S, "Lawn is thirty, hedge is fifty, so that's eighty."], [C, "That's eighty all in?"], [S, "That's right."]], 8_000n],
    ["a lower total for everything", [[S, "Materials would be about two fifty, and labour seven hundred."], [C, "So nine fifty? Could you do nine hundred total, including the materials?"], [S, "Yep, nine hundred total, materials included."]], 90_000n],
    ["a round figure for everything", [[S, "The tiles are four hundred and fifty francs, and my labour six hundred and twenty."], [C, "Hmm. So a thousand francs for everything?"], [S, "Exactly, a thousand for everything."]], 100_000n],
  ])("%s", (_, lines, total) => {
    const terms = dealTerms(last(lines, "CHF"))!;
    expect(terms.agreed).toBe(true);
    expect(terms.agreedTotalMinor).toBe(total);
    expect(terms.items.reduce((s, i) => s + (i.amountMinor ?? 0n), 0n)).toBe(total);
  });

  it("a number asked back is a question, agreed when the other side says yes", () => {
    const states = talk([[S, "The repair is four hundred pounds."], [C, "Four hundred?"], [S, "That's right, four hundred."]]);
    expect(dealTerms(states[1]!)!.agreed).toBe(false);
    expect(dealTerms(states[2]!)).toMatchObject({ agreed: true, agreedTotalMinor: 40_000n });
  });

  it("a total not yet confirmed agrees nothing", () => {
    const terms = dealTerms(last([[S, "Lawn is thirty, hedge is fifty."], [C, "That's eighty all in?"]]))!;
    expect(terms.agreed).toBe(false);
  });
});

describe("counter-offers: the last number both accepted wins", () => {
  it("with and without a currency word", () => {
    const states = talk([
      [C, "Hi, I'm here about the sofa? The grey corner one."],
      [C, "You had it at four fifty, would you take three fifty?"],
      [S, "Three fifty's a bit low. Four twenty?"],
      [C, "Hmm. Four hundred and I'll take it today."],
      [S, "Go on, four hundred for the sofa."],
    ]);
    expect(dealTerms(states[2]!)).toMatchObject({ agreed: false, payeeAskMinor: 42_000n, payerOfferMinor: 35_000n });
    expect(dealTerms(states[3]!)).toMatchObject({ agreed: false, payerOfferMinor: 40_000n });
    expect(dealTerms(states[4]!)).toMatchObject({ agreed: true, agreedTotalMinor: 40_000n });
    expect(items(states[4]!)).toEqual([["Sofa", 40_000n, 1, undefined]]);
  });

  it.each<[string, [string, string][], bigint]>([
    ["splitting the difference, proposed and accepted", [[S, "Deep clean, the whole flat: six hundred euros."], [C, "Six hundred. I was thinking more like five hundred."], [S, "Hmm. Split the difference?"], [C, "Fine, split the difference."]], 55_000n],
    ["splitting the difference, said with the number", [[S, "Deep clean, the whole flat: six hundred euros."], [C, "I was thinking five hundred."], [S, "Let's meet in the middle."], [C, "Five fifty, deal."]], 55_000n],
    ["meet me in the middle, asked and taken with the number", [[S, "It's 45 euros."], [C, "I'll do 40."], [S, "Meet me in the middle?"], [C, "Fine, 42.50."]], 4_250n],
    ["a usual price that gives way", [[C, "How much to clear the gutters?"], [S, "Usually sixty, but I'll do both sides for ninety."], [C, "Ninety's fine."]], 9_000n],
    ["a cash price instead of the list price", [[C, "Can I get a discount if I pay cash?"], [S, "Cash, 450 instead of 500."], [C, "Deal, 450 cash."]], 45_000n],
    ["a lower number repeated back", [[S, "It's a hundred and twenty pounds for the lot."], [C, "Would you take a hundred quid?"], [S, "Let's say one hundred and ten pounds then."], [C, "Deal, one hundred and ten it is."]], 11_000n],
    ["a number said alone, a question and a final counter", [[S, "Three hundred."], [C, "Nah, too steep. 250?"], [S, "Okay, you've twisted my arm, 275."], [C, "Done."]], 27_500n],
    ["thousands dropped once the scale is clear", [[C, "The listing said ¥50,000. Would you take forty?"], [S, "Hmm. Forty is too low. ¥45,000 for the bicycle?"], [C, "¥45,000. Okay, deal, I'll take the bicycle."]], 45_000n],
    ["a decimal said back without its scale", [[S, "For all that, it comes to about one point two five grand."], [C, "One point two five. Hmm. Okay, yes, let's get it done."]], 125_000n],
  ])("%s", (_, lines, total) => {
    const terms = dealTerms(last(lines, lines.some(([, t]) => /¥/.test(t)) ? "JPY" : "EUR"))!;
    expect(terms).toMatchObject({ agreed: true, agreedTotalMinor: total });
  });

  it("a refusal or 'let the agents sort it out' is no yes", () => {
    for (const reply of ["No, that's too much.", "That's a bit steep.", "We're not there yet. Let the agents sort it out: handshake?", "I can't do that."]) {
      expect(dealTerms(last([[S, "I can paint your living room for £600."], [C, reply]]))!.agreed).toBe(false);
    }
  });

  it("a yes agrees to every price that side named, and a new price from either side re-opens it", () => {
    const states = talk([
      [S, "The call-out is sixty pounds."],
      [C, "Okay. And the actual repair?"],
      [S, "The repair, um, somewhere between eighty and one twenty, depending on what I find."],
      [C, "That's fine."],
    ]);
    expect(dealTerms(states[2]!)!.agreed).toBe(false);
    expect(dealTerms(states[3]!)!.agreed).toBe(true);
    expect(items(states[3]!)).toEqual([
      ["Call-out", 6_000n, 1, undefined],
      ["Repair", 12_000n, 1, [8_000n, 12_000n]],
    ]);
    expect(dealTerms(states[3]!)!.items[1]!.uncertain).toBe(true);
  });
});

describe("items the parties drop", () => {
  it.each<[string, [string, string][], string[], bigint]>([
    ["leave out the paint, I'll buy it myself", [[S, "Labour for painting the living room is three hundred and fifty pounds, and the paint is about eighty on top."], [C, "Leave out the paint, I'll buy it myself."], [S, "No problem, just the labour then, three fifty."], [C, "Lovely, handshake."]], ["Labour"], 35_000n],
    ["skip the oven", [[S, "Window cleaning is CHF 120, the oven cleaning is CHF 80."], [C, "Hmm, actually skip the oven, we're replacing it."], [S, "Okay, only the windows."], [C, "Good, handshake."]], ["Window cleaning"], 12_000n],
    ["forget the hedge, just the lawn", [[S, "Lawn mowing is sixty dollars, the hedge trimming ninety."], [C, "Oh, forget the hedge, my son can do it. Just the lawn."], [S, "Sure, just the lawn mowing, sixty."], [C, "Great. Handshake."]], ["Lawn mowing"], 6_000n],
    ["just the kitchen then, a new scope", [[S, "Painting the whole house will cost nine hundred pounds."], [C, "Too much for me."], [S, "Fine, just the kitchen then, for two hundred and fifty pounds."], [C, "Handshake."]], ["Kitchen"], 25_000n],
    ["I'll get the tiles myself", [[S, "The tiles are two hundred and the fitting is three hundred."], [C, "I'll get the tiles myself."], [S, "Fine, three hundred for the fitting."], [C, "Deal."]], ["Fitting"], 30_000n],
  ])("%s", (_, lines, names, total) => {
    const state = last(lines);
    const terms = dealTerms(state)!;
    expect(terms.items.map((i) => i.description)).toEqual(names);
    expect(terms).toMatchObject({ agreed: true });
    expect(terms.items.reduce((s, i) => s + (i.amountMinor ?? 0n), 0n)).toBe(total);
    expect(state.drops).toHaveLength(1);
  });
});

describe("numbers that are not prices", () => {
  it.each<[string, [string, string][]]>([
    ["a house number and a year", [[C, "Hi, it's number 27, the one with the blue door."], [S, "So this is a Worcester, 2015 model by the look of it."], [C, "We put it in in 2015."]]],
    ["ages", [[C, "My son is fourteen, and he has an exam on the 20th."], [C, "I'm thirty-two and I have never played."]]],
    ["dates and times", [[C, "Could you do the 14th at 9:30?"], [S, "I can come at eight in the morning and again at five."], [C, "We move on Saturday the 9th, from the 4th floor to the 2nd floor."]]],
    ["counts", [[C, "I've got 3 dogs, two poodles and a mix."], [S, "Six, seven tiles maybe."], [C, "Twelve units and the worktop."], [S, "I rode it maybe ten times."]]],
    ["distances and sizes", [[C, "It's done 84,000 miles."], [C, "Like ten by twelve."], [S, "It serves about twenty."]]],
  ])("%s", (_, lines) => {
    const state = last(lines);
    expect(state.offers).toEqual([]);
    expect(state.items).toEqual([]);
  });

  it("still reads the price that follows them", () => {
    const state = last([
      [C, "Could you do the 14th at 9:30? I've got 3 dogs."],
      [S, "The 14th at 9:30 works. Grooming for all three is eighty dollars."],
      [C, "Eighty for all three, great."],
    ], "USD");
    expect(items(state)).toEqual([["Grooming", 8_000n, 1, undefined]]);
    expect(dealTerms(state)!.agreed).toBe(true);
  });
});

describe("currencies by word, symbol or code, with ISO 4217 exponents", () => {
  it.each<[string, string, string, bigint]>([
    ["For the flat rental, six hundred euros.", "GBP", "EUR", 60_000n],
    ["For a haircut at home, four thousand yen.", "GBP", "JPY", 4_000n],
    ["It's ¥45,000 for the bicycle.", "GBP", "JPY", 45_000n],
    ["For the move, two hundred and forty francs.", "GBP", "CHF", 24_000n],
    ["It's USD 450 for the logo.", "GBP", "USD", 45_000n],
    ["The piano tuning is €75.", "GBP", "EUR", 7_500n],
    ["The car is £2,480.", "EUR", "GBP", 248_000n],
    ["The dog walking is fifty quid.", "EUR", "GBP", 5_000n],
  ])("%s (profile %s)", (text, profileCurrency, currency, amount) => {
    const state = last([[S, text]], profileCurrency);
    expect(state.currency).toBe(currency);
    expect(dealTerms(state)!.items[0]!.amountMinor).toBe(amount);
  });

  it("re-reads bare numbers said before the currency was named", () => {
    const state = last([[S, "Materials would be about two fifty."], [S, "And labour seven hundred euros."]], "GBP");
    expect(state.currency).toBe("EUR");
    expect(state.items.every((i) => i.currency === "EUR")).toBe(true);
  });
});

describe("who pays whom comes from the talk", () => {
  it.each<[string, [string, string][], string]>([
    ["a client selling goods to a tradesperson", [[C, "Do you want those old radiators? Make me an offer."], [S, "I'll give you a hundred and twenty quid for the four radiators."], [C, "A hundred and twenty quid, sold."]], C],
    ["a client buying firewood off nobody's trade", [[S, "I'd buy the firewood off you. Ninety euros for the lot?"], [C, "Ninety euros, yes."]], C],
    ["a seller saying so", [[C, "I'll sell you my sofa for fifty quid."], [S, "Go on then."]], C],
  ])("%s", (_, lines, payee) => {
    const roles = dealRoles(last(lines))!;
    expect(roles).toMatchObject({ payeeUserId: payee, fromTalk: true });
  });

  it("falls back on the profiles when the talk does not say", () => {
    expect(dealRoles(last([[S, "The repair is £200."], [C, "OK."]]))).toMatchObject({ payeeUserId: S, fromTalk: false });
    const unknown: DealParty[] = [{ userId: S, profileRole: "" }, { userId: C, profileRole: "" }];
    expect(dealRoles(last([[C, "I need my fence painted. How much would you charge?"], [S, "I can paint it for £300."]], "GBP", unknown))).toMatchObject({ payeeUserId: S });
  });

  it("taking a thing down is no purchase", () => {
    const state = last([[C, "It's the ceiling in the back bedroom."], [S, "I'd skim the whole ceiling. Plastering it, three hundred and twenty pounds."], [S, "Yeah, I'll take it down and put it back up, included."], [C, "Great, then let's shake on it."]]);
    expect(dealRoles(state)).toMatchObject({ payeeUserId: S });
    expect(state.kind).toBe("service");
  });
});

describe("summariseDealState", () => {
  it("says items, prices, who offered and accepted, drops, totals and who pays whom", () => {
    const state = readConversation(PARTIES, "GBP", [
      { speakerUserId: S, text: "Labour is two hundred and the paint is forty.", index: 0 },
      { speakerUserId: C, text: "Leave out the paint, I'll buy it myself.", index: 1 },
      { speakerUserId: S, text: "OK, two hundred then.", index: 2 },
      { speakerUserId: C, text: "Deal.", index: 3 },
    ]);
    const text = summariseDealState(state, { [S]: "Sam", [C]: "Cleo" });
    expect(text).toContain("Cleo pays Sam (from their profiles).");
    expect(text).toContain("- Labour: £200.00, priced by Sam, accepted by Cleo");
    expect(text).toContain('- Paint: £40.00, priced by Sam, DROPPED by Cleo ("Leave out the paint, I\'ll buy it myself.")');
    expect(text).toContain("Agreed aloud: £200.00 in total.");
  });

  it("says when nothing is priced or agreed yet", () => {
    expect(summariseDealState(initialDealState(PARTIES, "EUR"))).toContain("No items priced yet.");
    const open = readConversation(PARTIES, "GBP", [{ speakerUserId: S, text: "The repair is £200.", index: 0 }]);
    expect(summariseDealState(open)).toContain("Not agreed yet; ask £200.00.");
  });
});
