import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import {
  TriggerEventSchema,
  TriggerKind,
  type TranscriptEntry,
  type TriggerEvent,
} from "../../gen/handshake/v1/transcript_pb.js";
import { initialDealState, nextDealState, type DealState } from "../language/deal-state.js";
import { saysKeyword } from "./keyword.js";

/**
 * Judges from the recent conversation whether a deal is being agreed. Implementations: the
 * offline phrase detector (src/trigger/offline-smart.ts) and Claude (src/agents/claude-smart-trigger.ts).
 */
export interface SmartTriggerDetector {
  /**
   * How often to consult it over new transcript, milliseconds; 0 or absent means after every
   * final entry (cheap local detectors). Remote models set an interval to bound their calls.
   */
  readonly intervalMs?: number;
  /** `recent` is oldest first and ends with the newest final entry. */
  consider(recent: TranscriptEntry[]): Promise<TriggerEvent | undefined>;
}

/**
 * Why a keyword did not start a negotiation, for the room's panel. `no_new_terms`: a contract was
 * made since the last priced words, so there is nothing new to agree; `not_armed`: the keyword came
 * while a negotiation or a contract was under way (and was not a confirmation of it).
 */
export type TriggerRefusalCode = "no_new_terms" | "not_armed";

/** A keyword that was heard and deliberately not turned into a trigger. */
export interface TriggerRefusal {
  code: TriggerRefusalCode;
  speakerUserId: string;
  matchedText: string;
}

/** Options of `createTriggerDetector`. */
export interface TriggerDetectorOptions {
  /** Word or phrase that starts a negotiation, e.g. "handshake". */
  keyword: string;
  /** When true, both participants must say the keyword within `dualWindowMs`. */
  requireBoth: boolean;
  dualWindowMs: number;
  smart?: SmartTriggerDetector;
  /** Called once per firing; the detector disarms itself first. */
  onTrigger(event: TriggerEvent): void;
  /**
   * The keyword said again shortly after a firing, with nothing new priced in between ("OK,
   * handshake." → "Handshake!"), while that deal is still being made: it confirms that trigger
   * and never starts another. (Once its contract is drafted, such a keyword is refused instead.)
   */
  onConfirmed?(event: TriggerEvent): void;
  /** A keyword that was heard but refused (see TriggerRefusalCode); smart findings are dropped silently. */
  onRefused?(refusal: TriggerRefusal): void;
  /** How long after a firing the keyword counts as its confirmation; default `dualWindowMs`. */
  confirmWindowMs?: number;
  /**
   * Whether a final entry puts a price forward; default `createPriceReader()` (src/language's
   * deal state: times, dates and a repeat of the other side's number are not new prices).
   */
  isPriced?: (entry: TranscriptEntry) => boolean;
  now?: () => number;
  /** Final entries kept for the smart detector; default 12. */
  recentLimit?: number;
  /** Starts armed unless false. */
  armed?: boolean;
  log?: Logger;
}

/** Watches a room's final transcripts and fires at most once while armed. */
export interface TriggerDetector {
  /** A transcript entry; partials are ignored. */
  feed(entry: TranscriptEntry): void;
  /** Changes the keyword (SetTriggerKeyword); pending dual-keyword hits are forgotten. */
  setKeyword(keyword: string, requireBoth: boolean): void;
  /** Allows one more firing (the room calls it after a rejected or expired negotiation, or a contract). */
  arm(): void;
  /**
   * A contract was drafted from the last firing: from now on a new firing needs priced words said
   * after this call (one spoken agreement gives one contract).
   */
  dealMade(): void;
  /**
   * The last contract was declined before anything was paid: its terms may be agreed again, so
   * the requirement `dealMade` added is lifted (an earlier contract's still holds).
   */
  dealUndone(): void;
  /** Stops firing until armed again (a negotiation is under way). */
  disarm(): void;
  isArmed(): boolean;
  /** Stops timers and ignores later input; safe to call twice. */
  close(): void;
}

/**
 * Creates a room's trigger detector: keyword, dual keyword (both speakers within a window) and,
 * when given, smart detection. Smart checks run one at a time; a result that arrives after the
 * detector fired or was disarmed is dropped.
 */
export function createTriggerDetector(options: TriggerDetectorOptions): TriggerDetector {
  const now = options.now ?? Date.now;
  const recentLimit = options.recentLimit ?? 12;
  const confirmWindowMs = options.confirmWindowMs ?? options.dualWindowMs;
  const isPriced = options.isPriced ?? createPriceReader();
  let keyword = options.keyword;
  let requireBoth = options.requireBoth;
  let armed = options.armed ?? true;
  let closed = false;
  /** Last time each speaker said the keyword, for the dual trigger. */
  const hits = new Map<string, number>();
  let recent: TranscriptEntry[] = [];
  /** Bumped by arm/disarm/close so a smart result from an older epoch is ignored. */
  let epoch = 0;
  let smartChain: Promise<void> = Promise.resolve();
  let smartTimer: ReturnType<typeof setTimeout> | undefined;
  let smartRunning = false;
  let smartDirty = false;
  /** Final entries fed so far; positions below are counted in it. */
  let fed = 0;
  /** Position of the newest final entry that named a price, and of the one before the newest entry. */
  let lastPriced = -1;
  let pricedBeforeCurrent = -1;
  /** Position and time of the entry that fired last. */
  let lastFire: { position: number; atMs: number } | undefined;
  /** Position at each contract not declined since (`dealMade`), oldest first. */
  const deals: number[] = [];

  /**
   * Whether a would-be firing at the current entry is only the confirmation of the last one:
   * shortly after it, with nothing priced since (the current entry's own words restate it).
   */
  function isConfirmation(atMs: number): boolean {
    if (!lastFire) return false;
    if (atMs - lastFire.atMs > confirmWindowMs) return false;
    return pricedBeforeCurrent <= lastFire.position;
  }

  /**
   * True when a contract was made and no price was said after it. Shortly after a firing, the
   * current entry's own price does not count: "Handshake! A hundred and twenty it is." restates.
   */
  function needsNewTerms(atMs: number): boolean {
    const boundary = deals[deals.length - 1];
    if (boundary === undefined) return false;
    const restating = lastFire !== undefined && atMs - lastFire.atMs <= confirmWindowMs;
    return (restating ? pricedBeforeCurrent : lastPriced) < boundary;
  }

  /**
   * Fires unless the event repeats a deal already made (after a contract, nothing priced since:
   * refused, and a keyword's refusal is reported) or confirms the last trigger while its deal is
   * still being made (silent). A smart finding's refusal is not reported: nobody asked for it.
   */
  function fire(event: TriggerEvent, atMs: number, fromKeyword: boolean): boolean {
    if (needsNewTerms(atMs)) {
      hits.clear();
      if (fromKeyword) options.onRefused?.({ code: "no_new_terms", speakerUserId: event.speakerUserId, matchedText: event.matchedText });
      return false;
    }
    if (isConfirmation(atMs)) {
      hits.clear();
      if (fromKeyword) options.onConfirmed?.(event);
      return false;
    }
    armed = false;
    epoch += 1;
    hits.clear();
    cancelSmartTimer();
    lastFire = { position: fed - 1, atMs };
    options.onTrigger(event);
    return true;
  }

  /** A reader failure must not break the room's transcript: the words then count as no price. */
  function pricedSafely(entry: TranscriptEntry): boolean {
    try {
      return isPriced(entry);
    } catch (err) {
      options.log?.warn({ err }, "reading prices failed");
      return false;
    }
  }

  function entryTime(entry: TranscriptEntry): number {
    return entry.receivedAtMs > 0n ? Number(entry.receivedAtMs) : now();
  }

  function keywordEvent(kind: TriggerKind, entry: TranscriptEntry): TriggerEvent {
    return create(TriggerEventSchema, {
      kind,
      speakerUserId: entry.speakerUserId,
      keyword,
      matchedText: entry.text,
      confidence: 1,
      atMs: BigInt(now()),
    });
  }

  /** A keyword heard while disarmed: a confirmation of the last firing, or refused as not armed. */
  function heardWhileDisarmed(entry: TranscriptEntry): void {
    if (keyword.trim() === "" || !saysKeyword(entry.text, keyword)) return;
    const event = keywordEvent(requireBoth ? TriggerKind.DUAL_KEYWORD : TriggerKind.KEYWORD, entry);
    if (isConfirmation(entryTime(entry))) options.onConfirmed?.(event);
    else options.onRefused?.({ code: "not_armed", speakerUserId: entry.speakerUserId, matchedText: entry.text });
  }

  function checkKeyword(entry: TranscriptEntry): boolean {
    // A negated or conditional keyword ("let's not shake on it yet") is talk, not agreement.
    if (keyword.trim() === "" || !saysKeyword(entry.text, keyword)) return false;
    const at = entryTime(entry);
    if (!requireBoth) {
      // Said, so handled: a refused keyword is not handed to the smart detector either.
      fire(keywordEvent(TriggerKind.KEYWORD, entry), at, true);
      return true;
    }
    hits.set(entry.speakerUserId, at);
    for (const [speaker, when] of hits) {
      if (speaker !== entry.speakerUserId && Math.abs(at - when) <= options.dualWindowMs) {
        fire(keywordEvent(TriggerKind.DUAL_KEYWORD, entry), at, true);
        return true;
      }
    }
    // The first of two keywords confirms a recent trigger just as a single one would.
    if (isConfirmation(at)) {
      hits.delete(entry.speakerUserId);
      options.onConfirmed?.(keywordEvent(TriggerKind.DUAL_KEYWORD, entry));
      return true;
    }
    return false;
  }

  /** Runs the smart detector over `snapshot`; fires if it found a deal and nothing changed meanwhile. */
  async function runSmart(snapshot: TranscriptEntry[], startedEpoch: number): Promise<void> {
    const smart = options.smart;
    if (!smart || !armed || closed || startedEpoch !== epoch) return;
    let result: TriggerEvent | undefined;
    try {
      result = await smart.consider(snapshot);
    } catch (err) {
      options.log?.warn({ err }, "smart trigger check failed");
      return;
    }
    const found = result;
    if (!found || !armed || closed || startedEpoch !== epoch) return;
    // Only people in the conversation can have agreed to something.
    if (!snapshot.some((e) => e.speakerUserId === found.speakerUserId)) {
      options.log?.warn({ speakerUserId: found.speakerUserId }, "smart trigger named an unknown speaker");
      return;
    }
    found.kind = TriggerKind.SMART;
    if (found.atMs === 0n) found.atMs = BigInt(now());
    try {
      const newest = snapshot[snapshot.length - 1];
      fire(found, newest ? entryTime(newest) : now(), false);
    } catch (err) {
      options.log?.error({ err }, "trigger handler failed");
    }
  }

  function scheduleSmart(): void {
    const smart = options.smart;
    if (!smart) return;
    const interval = smart.intervalMs ?? 0;
    if (interval <= 0) {
      // Cheap detectors judge every entry in order, each with the conversation up to it.
      const snapshot = recent.slice();
      const startedEpoch = epoch;
      smartChain = smartChain.then(() => runSmart(snapshot, startedEpoch));
      return;
    }
    smartDirty = true;
    if (smartTimer !== undefined || smartRunning) return;
    smartTimer = setTimeout(() => {
      smartTimer = undefined;
      smartDirty = false;
      smartRunning = true;
      const startedEpoch = epoch;
      void runSmart(recent.slice(), startedEpoch).finally(() => {
        smartRunning = false;
        // Talk that arrived during the check gets its own check after the next interval.
        if (smartDirty && armed && !closed) {
          smartDirty = false;
          scheduleSmart();
        }
      });
    }, interval);
  }

  function cancelSmartTimer(): void {
    if (smartTimer !== undefined) clearTimeout(smartTimer);
    smartTimer = undefined;
    smartDirty = false;
  }

  return {
    feed(entry) {
      if (closed || !entry.isFinal) return;
      recent.push(entry);
      if (recent.length > recentLimit) recent = recent.slice(-recentLimit);
      // Priced words are tracked even while disarmed: talk during a negotiation is still talk.
      pricedBeforeCurrent = lastPriced;
      if (pricedSafely(entry)) lastPriced = fed;
      fed += 1;
      if (!armed) {
        heardWhileDisarmed(entry);
        return;
      }
      if (checkKeyword(entry)) return;
      scheduleSmart();
    },
    setKeyword(next, both) {
      keyword = next;
      requireBoth = both;
      hits.clear();
    },
    arm() {
      if (closed || armed) return;
      armed = true;
      epoch += 1;
      hits.clear();
      // Talk from before the failed negotiation must not fire the next one.
      recent = [];
    },
    dealMade() {
      deals.push(fed);
    },
    dealUndone() {
      deals.pop();
    },
    disarm() {
      if (!armed) return;
      armed = false;
      epoch += 1;
      hits.clear();
      cancelSmartTimer();
    },
    isArmed: () => armed,
    close() {
      closed = true;
      armed = false;
      epoch += 1;
      cancelSmartTimer();
    },
  };
}

/** Final entries a price reader keeps, to re-read the talk when a new speaker joins it. */
const PRICE_READER_KEEP = 60;
/** Items, offers and totals a price reader's state may hold before it re-reads only what it kept. */
const PRICE_READER_MAX_FACTS = 120;

/**
 * Tells, entry by entry, whether the words put a price forward (an item's price, an offer, a
 * stated total), by folding them into src/language's deal state. A time ("here at six"), a date
 * or a repeat of the other side's number (an acceptance) is not a price.
 */
export function createPriceReader(defaultCurrency = "GBP"): (entry: TranscriptEntry) => boolean {
  const speakers: string[] = [];
  const kept: { speakerUserId: string; text: string; index: number }[] = [];
  let state: DealState = initialDealState([], defaultCurrency);
  let index = 0;
  return (entry) => {
    const utterance = { speakerUserId: entry.speakerUserId, text: entry.text, index: index++ };
    kept.push(utterance);
    if (kept.length > PRICE_READER_KEEP) kept.shift();
    const isNewSpeaker = !speakers.includes(entry.speakerUserId);
    if (isNewSpeaker) speakers.push(entry.speakerUserId);
    // The state is keyed by its parties, and a long talk would make every check slower: re-read
    // what was kept when a new speaker joins, or when the state has grown past its bound.
    if (isNewSpeaker || state.offers.length + state.totals.length + state.items.length > PRICE_READER_MAX_FACTS) {
      state = initialDealState(speakers.map((userId) => ({ userId, profileRole: "" })), defaultCurrency);
      for (const u of kept.slice(0, -1)) state = nextDealState(state, u);
    }
    const before = state;
    state = nextDealState(state, utterance);
    return putsNewPrice(before, state);
  };
}

/**
 * Whether `after` holds a price `before` did not: a new priced item, an item whose price changed,
 * or an offer or total of an amount nobody had said. Saying a number again is not new terms.
 */
function putsNewPrice(before: DealState, after: DealState): boolean {
  const said = new Set<string>();
  const key = (currency: string, amountMinor: bigint) => `${currency}:${amountMinor}`;
  for (const o of before.offers) said.add(key(o.currency, o.amountMinor));
  for (const t of before.totals) said.add(key(t.currency, t.amountMinor));
  for (const i of before.items) if (i.amountMinor !== undefined) said.add(key(i.currency, i.amountMinor));
  const priceOf = new Map(before.items.map((i) => [i.id, i.amountMinor] as const));
  for (const item of after.items) {
    if (item.amountMinor === undefined || item.dropped) continue;
    if (!priceOf.has(item.id) || priceOf.get(item.id) !== item.amountMinor) return true;
  }
  const fresh = [...after.offers.slice(before.offers.length), ...after.totals.slice(before.totals.length)];
  return fresh.some((x) => !said.has(key(x.currency, x.amountMinor)));
}
