import { create } from "@bufbuild/protobuf";
import { TriggerEventSchema, TriggerKind, type TranscriptEntry } from "../../gen/handshake/v1/transcript_pb.js";
import { AGREEMENT_PHRASES, saysAgreement } from "../language/agreement.js";
import { scanAmounts } from "../language/amounts.js";
import type { SmartTriggerDetector } from "./trigger-detector.js";

/** Options of the offline smart detector. */
export interface OfflineSmartOptions {
  /** Agreement phrases; default AGREEMENT_PHRASES ("deal", "agreed", "let's do it", "sounds good", "you're on", …). */
  phrases?: readonly string[];
  /** How many recent final entries may hold the amount; default 4 (the agreement's and three before). */
  lookbackEntries?: number;
}

/**
 * The embedded smart detector: fires when the newest entry says an agreement phrase and an amount
 * of money was said in it or in the turns just before. No model, deterministic.
 */
export function createOfflineSmartTriggerDetector(options: OfflineSmartOptions = {}): SmartTriggerDetector {
  const phrases = options.phrases ?? AGREEMENT_PHRASES;
  const lookback = options.lookbackEntries ?? 4;
  return {
    intervalMs: 0,
    async consider(recent) {
      const latest = recent[recent.length - 1];
      if (!latest || !saysAgreement(latest.text, phrases)) return undefined;
      const withAmount = recent.slice(-lookback).filter((e) => hasMoney(e));
      if (withAmount.length === 0) return undefined;
      // More sure when the amount is in the agreement itself or came from the other person.
      let confidence = 0.6;
      if (hasMoney(latest)) confidence += 0.2;
      if (withAmount.some((e) => e.speakerUserId !== latest.speakerUserId)) confidence += 0.1;
      return create(TriggerEventSchema, {
        kind: TriggerKind.SMART,
        speakerUserId: latest.speakerUserId,
        matchedText: latest.text,
        confidence,
      });
    },
  };
}

function hasMoney(entry: TranscriptEntry): boolean {
  // The currency does not matter here: only whether a price was named.
  return scanAmounts(entry.text, "GBP").money.length > 0;
}
