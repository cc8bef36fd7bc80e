import { describe, expect, it } from "vitest";
import { parseMoney, parseNumberWords, parseSpokenNumber, scanAmounts } from "../../src/language/amounts.js";

describe("parseNumberWords", () => {
  it.each([
    ["one", 1],
    ["twelve", 12],
    ["twenty five", 25],
    ["ninety", 90],
    ["a hundred", 100],
    ["one hundred and twenty", 120],
    ["eleven hundred", 1100],
    ["two thousand five hundred", 2500],
    ["two thousand and five", 2005],
    ["one thousand two hundred and fifty", 1250],
    ["a thousand", 1000],
    ["three million", 3_000_000],
  ])("%s → %d", (text, value) => {
    const words = text.split(" ");
    expect(parseNumberWords(words)).toEqual({ value, used: words.length });
  });

  it("stops where the number ends", () => {
    expect(parseNumberWords(["three", "and", "five"])).toEqual({ value: 3, used: 1 });
    expect(parseNumberWords(["twelve", "thirteen"])).toEqual({ value: 12, used: 1 });
    expect(parseNumberWords(["forty", "pounds"])).toEqual({ value: 40, used: 1 });
    expect(parseNumberWords(["pounds"])).toBeUndefined();
    expect(parseNumberWords(["a", "dog"])).toBeUndefined();
  });

  it("parses whole spoken numbers, with hyphens and digits", () => {
    expect(parseSpokenNumber("twenty-five")).toBe(25);
    expect(parseSpokenNumber("1,250.5")).toBe(1250.5);
    expect(parseSpokenNumber("one hundred and twenty")).toBe(120);
    expect(parseSpokenNumber("three and five")).toBeUndefined();
  });
});

describe("prices as people say them", () => {
  it.each<[string, string, bigint, string]>([
    ["one point two five grand", "GBP", 125_000n, "GBP"],
    ["one point five thousand euros", "GBP", 150_000n, "EUR"],
    ["two point five k", "USD", 250_000n, "USD"],
    ["one and a half grand", "GBP", 150_000n, "GBP"],
    ["two and a half thousand pounds", "EUR", 250_000n, "GBP"],
    ["half a grand", "GBP", 50_000n, "GBP"],
    ["a grand", "GBP", 100_000n, "GBP"],
    ["a couple of hundred euros", "GBP", 20_000n, "EUR"],
    ["a couple of hundred quid", "EUR", 20_000n, "GBP"],
    ["a fiver", "EUR", 500n, "GBP"],
    ["a tenner", "GBP", 1_000n, "GBP"],
    ["fifty quid", "EUR", 5_000n, "GBP"],
    ["3.5k dollars", "GBP", 350_000n, "USD"],
    ["£2,480", "EUR", 248_000n, "GBP"],
    ["€75", "GBP", 7_500n, "EUR"],
    ["¥45,000", "GBP", 45_000n, "JPY"],
    ["four thousand yen", "GBP", 4_000n, "JPY"],
    ["CHF 85", "GBP", 8_500n, "CHF"],
    ["two hundred and forty francs", "GBP", 24_000n, "CHF"],
    ["thirty-seven francs fifty", "GBP", 3_750n, "CHF"],
    ["forty-two fifty pounds", "GBP", 4_250n, "GBP"],
    ["a hundred and five pounds", "GBP", 10_500n, "GBP"],
    ["one twenty pounds", "GBP", 12_000n, "GBP"],
    ["two fifty quid", "GBP", 25_000n, "GBP"],
    ["one twenty five dollars", "GBP", 12_500n, "USD"],
    ["one eight five pounds", "GBP", 18_500n, "GBP"],
    ["Three fifty's a bit low", "GBP", 35_000n, "GBP"],
  ])("%s (default %s) → %d %s", (text, defaultCurrency, amountMinor, currency) => {
    expect(scanAmounts(text, defaultCurrency, { bareNumbers: "loose" }).money[0]).toMatchObject({ amountMinor, currency });
  });

  it("reads rates by the symbol, the word and the thing", () => {
    expect(scanAmounts("$35/hr", "GBP").money[0]).toMatchObject({ amountMinor: 3_500n, currency: "USD", per: "hour" });
    expect(scanAmounts("fifty an hour", "GBP", { bareNumbers: "loose" }).money[0]).toMatchObject({ amountMinor: 5_000n, per: "hour" });
    expect(scanAmounts("It's €12.50 a jar.", "GBP").money[0]).toMatchObject({ amountMinor: 1_250n, currency: "EUR", per: "jar" });
    expect(scanAmounts("CHF 85 per lesson", "GBP").money[0]).toMatchObject({ amountMinor: 8_500n, per: "lesson" });
    expect(scanAmounts("thirty five each", "GBP", { bareNumbers: "loose" }).money[0]).toMatchObject({ amountMinor: 3_500n, per: "item" });
  });

  it("reads ranges whose bounds carry no currency word, and a scale said once for both", () => {
    const loose = { bareNumbers: "loose" } as const;
    expect(scanAmounts("somewhere between eighty and one twenty depending on the roof", "GBP", loose).money).toMatchObject([
      { range: { minMinor: 8_000n, maxMinor: 12_000n }, currency: "GBP" },
    ]);
    expect(scanAmounts("between three and four hundred, depending on the roots", "CHF", loose).money).toMatchObject([
      { range: { minMinor: 30_000n, maxMinor: 40_000n } },
    ]);
    expect(scanAmounts("anywhere from three to five hundred euros", "GBP").money).toMatchObject([
      { range: { minMinor: 30_000n, maxMinor: 50_000n }, currency: "EUR" },
    ]);
    expect(scanAmounts("somewhere between two and four hundred dollars", "GBP").money).toMatchObject([
      { range: { minMinor: 20_000n, maxMinor: 40_000n }, currency: "USD" },
    ]);
  });

  it("keeps counts apart from money, even loosely read", () => {
    const loose = { bareNumbers: "loose" } as const;
    expect(scanAmounts("I usually do one-hour lessons", "GBP", loose).money).toEqual([]);
    expect(scanAmounts("three sessions a week for two weeks", "GBP", loose)).toMatchObject({
      money: [],
      counts: [{ count: 3, unit: "session" }, { count: 2, unit: "week" }],
    });
    expect(scanAmounts("I'll take four jars", "GBP", loose).counts).toMatchObject([{ count: 4, unit: "jar" }]);
    expect(scanAmounts("I have 3 kids and 2 dogs", "GBP", loose).money).toEqual([]);
  });
});

describe("parseMoney", () => {
  it.each<[string, string, bigint, string]>([
    ["£120", "USD", 12_000n, "GBP"],
    ["120 pounds", "USD", 12_000n, "GBP"],
    ["one hundred and twenty pounds", "EUR", 12_000n, "GBP"],
    ["a hundred and twenty quid", "EUR", 12_000n, "GBP"],
    ["ninety euros", "GBP", 9_000n, "EUR"],
    ["forty dollars", "GBP", 4_000n, "USD"],
    ["forty dollars", "CAD", 4_000n, "CAD"],
    ["€1,250.50", "GBP", 125_050n, "EUR"],
    ["$40", "GBP", 4_000n, "USD"],
    ["40$", "GBP", 4_000n, "USD"],
    ["EUR 90", "GBP", 9_000n, "EUR"],
    ["90 eur", "GBP", 9_000n, "EUR"],
    ["50p", "GBP", 50n, "GBP"],
    ["twelve pounds fifty", "GBP", 1_250n, "GBP"],
    ["£1.5k", "GBP", 150_000n, "GBP"],
    ["five grand", "GBP", 500_000n, "GBP"],
    ["twenty-five dollars", "GBP", 2_500n, "USD"],
    ["eleven hundred euros", "GBP", 110_000n, "EUR"],
    ["£12.345", "GBP", 1_235n, "GBP"],
    ["¥5000", "GBP", 5_000n, "JPY"],
    ["I can do 260", "GBP", 26_000n, "GBP"],
    ["how about 450?", "EUR", 45_000n, "EUR"],
    ["I'll pay 80 for it", "USD", 8_000n, "USD"],
  ])("%s (default %s) → %d %s", (text, defaultCurrency, amountMinor, currency) => {
    expect(parseMoney(text, defaultCurrency)).toMatchObject({ amountMinor, currency });
  });

  it.each(["see you at 5", "I have 3 kids and 2 dogs", "in 2024", "room 12", "it takes 3 hours", "1.5k"])("%s has no money", (text) => {
    expect(parseMoney(text, "GBP")).toBeUndefined();
  });
});

describe("scanAmounts", () => {
  it("finds rates and the count they apply to", () => {
    const scan = scanAmounts("forty dollars an hour for three hours", "GBP");
    expect(scan.money).toMatchObject([{ amountMinor: 4_000n, currency: "USD", per: "hour" }]);
    expect(scan.counts).toMatchObject([{ count: 3, unit: "hour" }]);
    expect(scanAmounts("£40/hr", "GBP").money[0]?.per).toBe("hour");
    expect(scanAmounts("£30 per day", "GBP").money[0]?.per).toBe("day");
    expect(scanAmounts("€5 each", "GBP").money[0]?.per).toBe("item");
    expect(scanAmounts("a couple of hours", "GBP").counts).toMatchObject([{ count: 2, unit: "hour" }]);
  });

  it.each<[string, bigint, bigint, string]>([
    ["anything from 150 to 250 pounds", 15_000n, 25_000n, "GBP"],
    ["between £150 and £250", 15_000n, 25_000n, "GBP"],
    ["£150-£250", 15_000n, 25_000n, "GBP"],
    ["150 to 250 euros", 15_000n, 25_000n, "EUR"],
    ["from 90 to 120", 9_000n, 12_000n, "GBP"],
  ])("range %s", (text, minMinor, maxMinor, currency) => {
    expect(scanAmounts(text, "GBP").money).toMatchObject([{ amountMinor: maxMinor, currency, range: { minMinor, maxMinor } }]);
  });

  it("reads count ranges and keeps them apart from money", () => {
    const scan = scanAmounts("it'll be between three and five hours at £40/hr", "GBP");
    expect(scan.counts).toMatchObject([{ count: 3, countMax: 5, unit: "hour" }]);
    expect(scan.money).toMatchObject([{ amountMinor: 4_000n, per: "hour" }]);
    expect(scan.money[0]!.range).toBeUndefined();
  });

  it("finds several amounts in one sentence, with positions", () => {
    const text = "£80 call-out plus £40 an hour, probably 3 hours, and $25 for parts";
    const scan = scanAmounts(text, "GBP");
    expect(scan.money.map((m) => [m.amountMinor, m.currency, m.per])).toEqual([
      [8_000n, "GBP", undefined],
      [4_000n, "GBP", "hour"],
      [2_500n, "USD", undefined],
    ]);
    expect(text.slice(scan.money[0]!.start, scan.money[0]!.end)).toBe("£80");
    expect(scan.counts).toMatchObject([{ count: 3, unit: "hour" }]);
  });
});
