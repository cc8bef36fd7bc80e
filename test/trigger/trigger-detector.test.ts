import { create } from "@bufbuild/protobuf";
import { describe, expect, it, vi } from "vitest";
import { TranscriptEntrySchema, TriggerEventSchema, TriggerKind, type TranscriptEntry, type TriggerEvent } from "../../gen/handshake/v1/transcript_pb.js";
import { containsKeyword } from "../../src/trigger/keyword.js";
import { createOfflineSmartTriggerDetector } from "../../src/trigger/offline-smart.js";
import { createTriggerDetector, type SmartTriggerDetector } from "../../src/trigger/trigger-detector.js";

let seq = 0;
function say(speaker: string, text: string, atMs: number, isFinal = true): TranscriptEntry {
  seq += 1;
  return create(TranscriptEntrySchema, { id: `e${seq}`, speakerUserId: speaker, text, isFinal, receivedAtMs: BigInt(atMs) });
}

function detector(options: { keyword?: string; requireBoth?: boolean; dualWindowMs?: number; smart?: SmartTriggerDetector; armed?: boolean } = {}) {
  const fired: TriggerEvent[] = [];
  const d = createTriggerDetector({
    keyword: options.keyword ?? "handshake",
    requireBoth: options.requireBoth ?? false,
    dualWindowMs: options.dualWindowMs ?? 10_000,
    smart: options.smart,
    armed: options.armed,
    now: () => 42,
    onTrigger: (e) => fired.push(e),
  });
  return { d, fired };
}

describe("keyword matching", () => {
  it.each([
    ["Handshake!", "handshake", true],
    ["ok... HANDSHAKE.", "handshake", true],
    ["hand-shake then", "handshake", true],
    ["handshakes are nice", "handshake", false],
    ["a firm handshaker", "handshake", false],
    ["Let's shake on it!", "shake on it", true],
    ["shake, on it", "shake on it", true],
    ["shake it on", "shake on it", false],
    ["We've got a deal, then", "deal", true],
    ["ideal", "deal", false],
    ["let's do it", "lets do it", true],
    ["Café crème", "crème", true],
  ])("%j contains %j: %s", (text, keyword, expected) => {
    expect(containsKeyword(text, keyword)).toBe(expected);
  });
});

describe("trigger detector", () => {
  it("fires once on the keyword from a final entry, then stays quiet until re-armed", () => {
    const { d, fired } = detector();
    d.feed(say("a", "handshake", 1_000, false));
    expect(fired).toHaveLength(0);
    d.feed(say("a", "OK, Handshake!", 1_000));
    d.feed(say("b", "handshake", 2_000));
    expect(fired).toHaveLength(1);
    expect(fired[0]).toMatchObject({ kind: TriggerKind.KEYWORD, speakerUserId: "a", keyword: "handshake", matchedText: "OK, Handshake!", confidence: 1, atMs: 42n });
    expect(d.isArmed()).toBe(false);
    d.arm();
    // Past the confirmation window (the dual window, 10 s) the keyword starts a new trigger.
    d.feed(say("b", "Handshake", 20_000));
    expect(fired.map((e) => e.speakerUserId)).toEqual(["a", "b"]);
  });

  it("does nothing while disarmed and starts disarmed when asked", () => {
    const { d, fired } = detector({ armed: false });
    d.feed(say("a", "handshake", 1_000));
    expect(fired).toHaveLength(0);
    d.arm();
    d.feed(say("a", "handshake", 2_000));
    d.disarm();
    d.arm();
    expect(fired).toHaveLength(1);
  });

  it("matches multi-word phrases and follows keyword changes", () => {
    const { d, fired } = detector({ keyword: "shake on it" });
    d.feed(say("a", "shake it", 1_000));
    d.setKeyword("seal the deal", false);
    d.feed(say("a", "Let's shake on it", 2_000));
    expect(fired).toHaveLength(0);
    d.feed(say("a", "Right, seal the deal.", 3_000));
    expect(fired).toHaveLength(1);
  });

  it("dual keyword: fires when both say it within the window, for the second speaker", () => {
    const { d, fired } = detector({ requireBoth: true, dualWindowMs: 5_000 });
    d.feed(say("a", "handshake?", 10_000));
    d.feed(say("a", "handshake!", 11_000));
    expect(fired).toHaveLength(0);
    d.feed(say("b", "Handshake.", 15_500));
    expect(fired).toHaveLength(1);
    expect(fired[0]).toMatchObject({ kind: TriggerKind.DUAL_KEYWORD, speakerUserId: "b" });
  });

  it("dual keyword: does not fire when the second speaker is outside the window", () => {
    const { d, fired } = detector({ requireBoth: true, dualWindowMs: 5_000 });
    d.feed(say("a", "handshake", 10_000));
    d.feed(say("b", "handshake", 16_000));
    expect(fired).toHaveLength(0);
    // b's hit is still fresh when a says it again.
    d.feed(say("a", "handshake", 20_000));
    expect(fired).toHaveLength(1);
    expect(fired[0]!.speakerUserId).toBe("a");
  });

  it("dual keyword: re-arming forgets earlier hits", () => {
    const { d, fired } = detector({ requireBoth: true, dualWindowMs: 5_000 });
    d.feed(say("a", "handshake", 10_000));
    d.feed(say("b", "handshake", 11_000));
    d.arm();
    d.feed(say("a", "handshake", 20_000));
    expect(fired).toHaveLength(1);
    d.feed(say("b", "handshake", 21_000));
    expect(fired).toHaveLength(2);
  });

  it("smart (offline): fires on an agreement phrase near an amount, once", async () => {
    const smart = createOfflineSmartTriggerDetector();
    const consider = vi.spyOn(smart, "consider");
    const { d, fired } = detector({ keyword: "", smart });
    d.feed(say("p", "I can fix it for £120.", 1_000));
    d.feed(say("c", "Sounds good, let's do it!", 2_000));
    d.feed(say("p", "Deal, £120.", 3_000));
    await vi.waitFor(() => expect(consider).toHaveBeenCalledTimes(2));
    await consider.mock.results[1]!.value;
    expect(fired).toHaveLength(1);
    expect(fired[0]).toMatchObject({ kind: TriggerKind.SMART, speakerUserId: "c", matchedText: "Sounds good, let's do it!" });
    expect(fired[0]!.confidence).toBeGreaterThan(0.6);
  });

  it("smart (offline): no amount, negated agreement or a price alone do not fire", async () => {
    const smart = createOfflineSmartTriggerDetector();
    const check = (lines: string[]) => smart.consider(lines.map((t, i) => say(i % 2 ? "c" : "p", t, i * 1000)));
    expect(await check(["Nice weather.", "Sounds good!"])).toBeUndefined();
    expect(await check(["It's £500.", "No deal."])).toBeUndefined();
    expect(await check(["It's £500.", "Hmm, £400?"])).toBeUndefined();
    expect(await check(["It's £500.", "That's not a deal I can take."])).toBeUndefined();
    expect(await check(["It's five hundred pounds.", "You're on."])).toMatchObject({ speakerUserId: "c" });
  });

  it("smart: a late answer after disarm is dropped", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let answer: Promise<TriggerEvent | undefined> | undefined;
    const smart: SmartTriggerDetector = {
      consider(recent) {
        answer = gate.then(() =>
          create(TriggerEventSchema, { speakerUserId: recent.at(-1)!.speakerUserId, matchedText: "deal", confidence: 0.9 }),
        );
        return answer;
      },
    };
    const { d, fired } = detector({ keyword: "", smart });
    d.feed(say("a", "deal at £10", 1_000));
    await vi.waitFor(() => expect(answer).toBeDefined());
    d.disarm();
    release();
    // The detector awaited the same promise first, so its handling has run once this resolves.
    await answer;
    expect(fired).toHaveLength(0);
  });

  it("smart with an interval: checks new talk at most once per interval, with the latest lines", async () => {
    vi.useFakeTimers();
    try {
      const seen: string[][] = [];
      const smart: SmartTriggerDetector = {
        intervalMs: 5_000,
        async consider(recent) {
          seen.push(recent.map((e) => e.text));
          return undefined;
        },
      };
      const { d } = detector({ keyword: "", smart });
      d.feed(say("a", "one", 1));
      d.feed(say("b", "two", 2));
      expect(seen).toHaveLength(0);
      await vi.advanceTimersByTimeAsync(5_000);
      expect(seen).toEqual([["one", "two"]]);
      await vi.advanceTimersByTimeAsync(20_000);
      expect(seen).toHaveLength(1);
      d.feed(say("a", "three", 3));
      await vi.advanceTimersByTimeAsync(5_000);
      expect(seen).toEqual([["one", "two"], ["one", "two", "three"]]);
      d.close();
      d.feed(say("a", "four", 4));
      await vi.advanceTimersByTimeAsync(10_000);
      expect(seen).toHaveLength(2);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
