import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import {
  TriggerEventSchema,
  TriggerKind,
  type TranscriptEntry,
  type TriggerEvent,
} from "../../gen/handshake/v1/transcript_pb.js";
import { containsKeyword } from "./keyword.js";

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
  /** Allows one more firing (the room calls it after a rejected or expired negotiation). */
  arm(): void;
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

  function fire(event: TriggerEvent): void {
    armed = false;
    epoch += 1;
    hits.clear();
    cancelSmartTimer();
    options.onTrigger(event);
  }

  function entryTime(entry: TranscriptEntry): number {
    return entry.receivedAtMs > 0n ? Number(entry.receivedAtMs) : now();
  }

  function checkKeyword(entry: TranscriptEntry): boolean {
    if (keyword.trim() === "" || !containsKeyword(entry.text, keyword)) return false;
    if (!requireBoth) {
      fire(
        create(TriggerEventSchema, {
          kind: TriggerKind.KEYWORD,
          speakerUserId: entry.speakerUserId,
          keyword,
          matchedText: entry.text,
          confidence: 1,
          atMs: BigInt(now()),
        }),
      );
      return true;
    }
    const at = entryTime(entry);
    hits.set(entry.speakerUserId, at);
    for (const [speaker, when] of hits) {
      if (speaker !== entry.speakerUserId && Math.abs(at - when) <= options.dualWindowMs) {
        fire(
          create(TriggerEventSchema, {
            kind: TriggerKind.DUAL_KEYWORD,
            speakerUserId: entry.speakerUserId,
            keyword,
            matchedText: entry.text,
            confidence: 1,
            atMs: BigInt(now()),
          }),
        );
        return true;
      }
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
      fire(found);
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
      if (!armed) return;
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
