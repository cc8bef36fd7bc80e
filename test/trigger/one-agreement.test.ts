import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TranscriptEntrySchema, TriggerKind, type TranscriptEntry, type TriggerEvent } from "../../gen/handshake/v1/transcript_pb.js";
import { findKeyword, saysKeyword } from "../../src/trigger/keyword.js";
import { createPriceReader, createTriggerDetector, type TriggerRefusal } from "../../src/trigger/trigger-detector.js";

// The detector reads each entry's receivedAtMs; entries are stamped with the (fake) clock, as the room does.
beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(1_700_000_000_000);
});
afterEach(() => {
  vi.useRealTimers();
});

let seq = 0;
function say(speaker: string, text: string): TranscriptEntry {
  seq += 1;
  return create(TranscriptEntrySchema, { id: `e${seq}`, speakerUserId: speaker, text, isFinal: true, receivedAtMs: BigInt(Date.now()) });
}

function detector(options: { keyword?: string; requireBoth?: boolean } = {}) {
  const fired: TriggerEvent[] = [];
  const confirmed: TriggerEvent[] = [];
  const refused: TriggerRefusal[] = [];
  const d = createTriggerDetector({
    keyword: options.keyword ?? "handshake",
    requireBoth: options.requireBoth ?? false,
    dualWindowMs: 10_000,
    onTrigger: (e) => fired.push(e),
    onConfirmed: (e) => confirmed.push(e),
    onRefused: (r) => refused.push(r),
  });
  return { d, fired, confirmed, refused };
}

describe("negated and conditional keywords", () => {
  it.each([
    ["Let's not shake on it yet.", "shake on it"],
    ["Before we shake on it, can you check the wiring?", "shake on it"],
    ["It's not a deal until I've seen the garden.", "deal"],
    ["Don't shake on it yet.", "shake on it"],
    ["We can't shake on that.", "shake"],
    ["No handshake until the price is right.", "handshake"],
    ["I don't think we should shake on it", "shake on it"],
    ["We'll shake on it once you've seen the roof.", "shake on it"],
    ["We handshake if you can start on Monday", "handshake"],
    ["hold off on the handshake", "handshake"],
  ])("%j does not say %j as agreement", (text, keyword) => {
    expect(findKeyword(text, keyword).length).toBeGreaterThan(0);
    expect(saysKeyword(text, keyword)).toBe(false);
  });

  it.each([
    ["OK, handshake.", "handshake"],
    ["Handshake!", "handshake"],
    ["No problem, handshake.", "handshake"],
    ["Why not, let's shake on it.", "shake on it"],
    ["Not bad at all. Deal!", "deal"],
    ["It's a deal after all", "deal"],
    ["Let's not wait: shake on it.", "shake on it"],
    ["Not yet? No, we're ready. Handshake.", "handshake"],
  ])("%j says %j as agreement", (text, keyword) => {
    expect(saysKeyword(text, keyword)).toBe(true);
  });

  it("a negated keyword does not fire the detector; the plain one after it does", () => {
    const { d, fired, refused } = detector({ keyword: "shake on it" });
    d.feed(say("a", "It's one hundred and twenty pounds for the repair."));
    d.feed(say("b", "Let's not shake on it yet, I need to ask my partner."));
    d.feed(say("a", "Before we shake on it, I'll check the parts."));
    expect(fired).toHaveLength(0);
    expect(refused).toHaveLength(0);
    d.feed(say("b", "Right, let's shake on it."));
    expect(fired).toHaveLength(1);
    expect(fired[0]?.speakerUserId).toBe("b");
  });
});

describe("one agreement, one trigger", () => {
  it("the peer's keyword shortly after the first confirms it, even when the room re-armed in between", () => {
    const { d, fired, confirmed } = detector();
    d.feed(say("a", "I can fix it for £120."));
    vi.advanceTimersByTime(1_000);
    d.feed(say("b", "OK, handshake."));
    expect(fired).toHaveLength(1);
    // The negotiation and the contract were quick: the room is armed again before the peer speaks.
    d.arm();
    vi.advanceTimersByTime(300);
    d.feed(say("a", "Handshake! A hundred and twenty it is."));
    expect(fired).toHaveLength(1);
    expect(confirmed.map((e) => e.speakerUserId)).toEqual(["a"]);
  });

  it("a confirmation while the negotiation is under way is a confirmation, not a refusal", () => {
    const { d, fired, confirmed, refused } = detector();
    d.feed(say("a", "Fifty pounds for the lawn."));
    d.feed(say("b", "Handshake."));
    vi.advanceTimersByTime(500);
    d.feed(say("a", "Handshake!"));
    expect(fired).toHaveLength(1);
    expect(confirmed).toHaveLength(1);
    expect(refused).toHaveLength(0);
  });

  it("after a rejected negotiation, new priced words inside the window make the keyword a new trigger", () => {
    const { d, fired } = detector();
    d.feed(say("a", "Painting the house is nine hundred pounds."));
    d.feed(say("b", "Handshake."));
    d.arm(); // rejected
    vi.advanceTimersByTime(2_000);
    d.feed(say("a", "Fine, just the kitchen then, for two hundred and fifty pounds."));
    vi.advanceTimersByTime(1_000);
    d.feed(say("b", "Handshake."));
    expect(fired).toHaveLength(2);
  });

  it("after a contract, a keyword with nothing new priced starts nothing and says why", () => {
    const { d, fired, refused } = detector();
    d.feed(say("a", "The boiler repair is £120."));
    d.feed(say("b", "Handshake."));
    d.dealMade();
    d.arm(); // executed
    vi.advanceTimersByTime(60_000);
    d.feed(say("a", "Thanks again, that was easy."));
    d.feed(say("b", "Handshake."));
    expect(fired).toHaveLength(1);
    expect(refused).toEqual([{ code: "no_new_terms", speakerUserId: "b", matchedText: "Handshake." }]);
    expect(d.isArmed()).toBe(true);
    // New priced terms after the contract: the keyword fires.
    d.feed(say("a", "I could also service the radiators for sixty pounds."));
    vi.advanceTimersByTime(2_000);
    d.feed(say("b", "Handshake."));
    expect(fired).toHaveLength(2);
  });

  it("priced words said during the negotiation, before the contract, are not new terms", () => {
    const { d, fired, refused } = detector();
    d.feed(say("a", "It's £80 for the gutter."));
    d.feed(say("b", "Handshake."));
    d.feed(say("a", "Eighty pounds, yes."));
    d.dealMade();
    d.arm();
    vi.advanceTimersByTime(30_000);
    d.feed(say("b", "Handshake"));
    expect(fired).toHaveLength(1);
    expect(refused.map((r) => r.code)).toEqual(["no_new_terms"]);
  });

  it("a declined contract lets the same terms be agreed again, but an earlier contract still counts", () => {
    const { d, fired, refused } = detector();
    d.feed(say("a", "Lawn mowing is thirty pounds."));
    d.feed(say("b", "Handshake."));
    d.dealMade(); // contract 1, executed
    d.arm();
    vi.advanceTimersByTime(30_000);
    d.feed(say("a", "And the hedge for forty pounds."));
    d.feed(say("b", "Handshake."));
    expect(fired).toHaveLength(2);
    d.dealMade(); // contract 2, declined
    d.dealUndone();
    d.arm();
    vi.advanceTimersByTime(30_000);
    d.feed(say("b", "Handshake."));
    expect(fired).toHaveLength(3);
    expect(refused).toHaveLength(0);
    // Contract 1's boundary stays: with contract 3 declined too, the hedge is still new since contract 1.
    d.dealMade();
    d.dealUndone();
    d.arm();
    vi.advanceTimersByTime(30_000);
    d.feed(say("b", "Handshake."));
    expect(fired).toHaveLength(4);
  });

  it("right after a contract, the peer's keyword is told why nothing starts, even restating the price", () => {
    const { d, fired, confirmed, refused } = detector();
    d.feed(say("a", "I can fix the boiler for one hundred and twenty pounds."));
    d.feed(say("b", "OK, handshake."));
    d.dealMade(); // drafted, signed and paid within the second
    d.arm();
    vi.advanceTimersByTime(400);
    d.feed(say("a", "Handshake! A hundred and twenty it is."));
    vi.advanceTimersByTime(400);
    d.feed(say("a", "You bet, I'll be there at six."));
    d.feed(say("b", "Handshake!"));
    expect(fired).toHaveLength(1);
    expect(confirmed).toHaveLength(0);
    expect(refused.map((r) => r.code)).toEqual(["no_new_terms", "no_new_terms"]);
  });

  it("a keyword while disarmed and not a confirmation is refused as not armed", () => {
    const { d, refused, confirmed } = detector();
    d.feed(say("a", "Ten pounds."));
    d.feed(say("b", "Handshake."));
    vi.advanceTimersByTime(20_000);
    d.feed(say("a", "Handshake?"));
    expect(confirmed).toHaveLength(0);
    expect(refused.map((r) => r.code)).toEqual(["not_armed"]);
  });

  it("dual-keyword mode still needs both, and a third keyword confirms", () => {
    const { d, fired, confirmed } = detector({ requireBoth: true });
    d.feed(say("a", "Twenty pounds an hour, two hours."));
    d.feed(say("a", "Handshake?"));
    expect(fired).toHaveLength(0);
    vi.advanceTimersByTime(2_000);
    d.feed(say("b", "Handshake!"));
    expect(fired).toHaveLength(1);
    expect(fired[0]?.kind).toBe(TriggerKind.DUAL_KEYWORD);
    d.arm();
    vi.advanceTimersByTime(1_000);
    d.feed(say("a", "Handshake, great."));
    vi.advanceTimersByTime(1_000);
    d.feed(say("b", "Handshake."));
    expect(fired).toHaveLength(1);
    expect(confirmed.length).toBeGreaterThan(0);
  });

  it("dual-keyword mode refuses a repeat of a contract's terms", () => {
    const { d, fired, refused } = detector({ requireBoth: true });
    d.feed(say("a", "A hundred pounds for the sofa."));
    d.feed(say("a", "Handshake."));
    d.feed(say("b", "Handshake."));
    d.dealMade();
    d.arm();
    vi.advanceTimersByTime(60_000);
    d.feed(say("a", "Handshake."));
    d.feed(say("b", "Handshake."));
    expect(fired).toHaveLength(1);
    expect(refused.map((r) => r.code)).toEqual(["no_new_terms"]);
  });
});

describe("price reader", () => {
  it("stays bounded over a long talk: prices are still read after hundreds of priced lines", () => {
    const priced = createPriceReader();
    for (let i = 1; i <= 300; i++) priced(say(i % 2 ? "a" : "b", `Item ${i} for ${i} pounds.`));
    expect(priced(say("a", "And the gate for three thousand and one pounds."))).toBe(true);
    expect(priced(say("b", "You bet, I'll be here at six."))).toBe(false);
  });

  it("a failing reader does not break the transcript: the words count as no price", () => {
    const fired: TriggerEvent[] = [];
    const d = createTriggerDetector({
      keyword: "handshake",
      requireBoth: false,
      dualWindowMs: 10_000,
      isPriced: () => {
        throw new Error("reader bug");
      },
      onTrigger: (e) => fired.push(e),
    });
    expect(() => d.feed(say("a", "Forty pounds. Handshake."))).not.toThrow();
    expect(fired).toHaveLength(1);
  });

  it("reads prices put forward, not times, dates or the other side's number said back", () => {
    const priced = createPriceReader();
    const lines: [string, string, boolean][] = [
      ["b", "Can you clear the driveway every time it snows this week?", false],
      ["a", "Sure. Snow clearing for the week, seventy five dollars.", true],
      ["b", "Seventy five, great, handshake.", false],
      ["a", "You bet, I'll be here at six.", false],
      ["a", "Seventy five dollars it is, then.", false],
      ["a", "See you on the 18th.", false],
      ["a", "And the gutters for forty dollars.", true],
    ];
    for (const [who, text, expected] of lines) expect([text, priced(say(who, text))]).toEqual([text, expected]);
  });
});
