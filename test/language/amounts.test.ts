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
    expect(parseNumberWords(["five", "twenty"])).toEqual({ value: 5, used: 1 });
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
