import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PanelEventSchema } from "../../gen/handshake/v1/events_pb.js";
import { LineItemKind, NegotiationStatus, RoundAction } from "../../gen/handshake/v1/deal_pb.js";
import { EscrowPreference, NegotiationStyle, PartyRole, RateUnit } from "../../gen/handshake/v1/profile_pb.js";
import { DialogueError, parseDialogue } from "../../clients/cli/dialogue.js";
import { describeEvent, formatMoney, parseMoney } from "../../clients/shared/format.js";
import { ProfileError, buildProfile } from "../../clients/cli/profile.js";
import { FRAME_BYTES, readPcm16Wav, splitFrames, toMono } from "../../clients/cli/wav.js";
import { WavFormatError, encodeWav, pcm16Bytes } from "../../clients/shared/wav.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "handshake-cli-units-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("money words", () => {
  it("formats minor units exactly, with the currency's digits", () => {
    expect(formatMoney(12_000n, "GBP")).toBe("£120.00");
    expect(formatMoney(123_456_789n, "EUR")).toBe("€1,234,567.89");
    expect(formatMoney(-5n, "USD")).toBe("-$0.05");
    expect(formatMoney(500n, "JPY")).toBe("¥500");
    expect(formatMoney(1_234n, "CHF")).toBe("12.34 CHF");
    expect(formatMoney(1_234n, "KWD")).toBe("1.234 KWD");
  });

  it("parses typed amounts without floats and refuses what is not an amount", () => {
    expect(parseMoney("120", "GBP")).toBe(12_000n);
    expect(parseMoney("£1,250.5", "GBP")).toBe(125_050n);
    expect(parseMoney("0.10", "USD")).toBe(10n);
    expect(parseMoney("500", "JPY")).toBe(500n);
    // 0.1 + 0.2 style float errors cannot happen: 19.99 is 1999 exactly.
    expect(parseMoney("19.99", "EUR")).toBe(1_999n);
    expect(() => parseMoney("1.234", "GBP")).toThrow(/more than 2 decimals/);
    expect(() => parseMoney("ten", "GBP")).toThrow(/not an amount/);
    expect(() => parseMoney("-5", "GBP")).toThrow(/not an amount/);
  });

  it("describes a negotiation round with its amounts and items", () => {
    const event = create(PanelEventSchema, {
      seq: 7n,
      event: {
        case: "negotiation",
        value: {
          status: NegotiationStatus.OPEN,
          rounds: [
            {
              number: 2,
              fromUserId: "u1",
              action: RoundAction.COUNTER,
              reason: "closer to budget",
              proposal: {
                currency: "GBP",
                totalMinor: 17_000n,
                lineItems: [
                  { description: "Boiler repair", kind: LineItemKind.IMMEDIATE, amountMinor: 11_000n, quantity: 1 },
                  { description: "Radiator flush", kind: LineItemKind.ESCROW, amountMinor: 6_000n, range: { minMinor: 4_000n, maxMinor: 6_000n } },
                ],
              },
            },
          ],
        },
      },
    });
    expect(describeEvent(event, (id) => (id === "u1" ? "Alex" : id))).toBe(
      "[7] negotiation open round 2: Alex counter £170.00: Boiler repair — £110.00 [immediate]; Radiator flush — £60.00 range £40.00–£60.00 [escrow] — closer to budget",
    );
  });
});

describe("WAV reading", () => {
  it("reads PCM16, mixes to mono and resamples to 16 kHz", () => {
    const tone = new Int16Array(8_000).map((_, i) => (i % 2 === 0 ? 1000 : -1000));
    const parsed = readPcm16Wav(encodeWav(tone, 8_000));
    expect(parsed).toMatchObject({ sampleRateHz: 8_000, channels: 1 });
    expect(parsed.samples).toEqual(tone);
    const upsampled = toMono(parsed);
    expect(upsampled.length).toBe(16_000);
    // Halfway between +1000 and -1000 is 0: linear interpolation, not repetition.
    expect([upsampled[0], upsampled[1], upsampled[2]]).toEqual([1000, 0, -1000]);
    const frames = splitFrames(pcm16Bytes(upsampled));
    expect(frames).toHaveLength(50);
    expect(frames.every((f) => f.byteLength === FRAME_BYTES)).toBe(true);
  });

  it("skips unknown chunks and explains files it cannot read", () => {
    const plain = encodeWav(new Int16Array([1, 2, 3]), 16_000);
    // Insert a LIST chunk (odd-sized, so padded) between fmt and data.
    const list = new Uint8Array([0x4c, 0x49, 0x53, 0x54, 3, 0, 0, 0, 1, 2, 3, 0]);
    const withList = new Uint8Array(plain.length + list.length);
    withList.set(plain.subarray(0, 36));
    withList.set(list, 36);
    withList.set(plain.subarray(36), 36 + list.length);
    expect(Array.from(readPcm16Wav(withList).samples)).toEqual([1, 2, 3]);
    expect(() => readPcm16Wav(new TextEncoder().encode("not a wav file at all"))).toThrow(WavFormatError);
    const eightBit = encodeWav(new Int16Array([1]), 16_000);
    new DataView(eightBit.buffer).setUint16(34, 8, true);
    expect(() => readPcm16Wav(eightBit)).toThrow(/only 16-bit/);
  });
});

describe("dialogue files", () => {
  it("accepts lines of speaker and text and refuses anything else, naming the line", () => {
    expect(parseDialogue([{ speaker: "client", text: "hi", delayMs: 10 }, { speaker: "provider", text: "hello" }])).toEqual([
      { speaker: "client", text: "hi", delayMs: 10 },
      { speaker: "provider", text: "hello" },
    ]);
    expect(() => parseDialogue([])).toThrow(DialogueError);
    expect(() => parseDialogue([{ speaker: "boss", text: "hi" }])).toThrow(/line 1: speaker/);
    expect(() => parseDialogue([{ speaker: "client", text: "ok" }, { speaker: "client", text: "" }])).toThrow(/line 2: text/);
    expect(() => parseDialogue([{ speaker: "client", text: "ok", delayMs: -1 }])).toThrow(/delayMs/);
  });
});

describe("profile flags", () => {
  it("builds a profile from a file and flags, flags winning", async () => {
    const file = path.join(dir, "profile.json");
    await writeFile(file, JSON.stringify({ displayName: "From file", role: "PARTY_ROLE_CLIENT", trade: "baker", maxAutoApproveMinor: "100" }));
    const profile = await buildProfile({
      profile: file,
      name: "Sam",
      role: "provider",
      currency: "eur",
      maxAutoApprove: "250.50",
      style: "aggressive",
      escrow: "always",
      experience: "12",
      rates: ["call-out:80:job", "labour:45.5:hour"],
    });
    expect(profile.displayName).toBe("Sam");
    expect(profile.role).toBe(PartyRole.PROVIDER);
    expect(profile.trade).toBe("baker");
    expect(profile.currency).toBe("EUR");
    expect(profile.maxAutoApproveMinor).toBe(25_050n);
    expect(profile.style).toBe(NegotiationStyle.AGGRESSIVE);
    expect(profile.escrowPreference).toBe(EscrowPreference.ALWAYS);
    expect(profile.experienceYears).toBe(12);
    expect(profile.rates.map((r) => [r.description, r.amountMinor, r.unit])).toEqual([
      ["call-out", 8_000n, RateUnit.JOB],
      ["labour", 4_550n, RateUnit.HOUR],
    ]);
  });

  it("names the flag that is wrong", async () => {
    await expect(buildProfile({ role: "provider" })).rejects.toThrow(/display name/);
    await expect(buildProfile({ name: "x", style: "sneaky" })).rejects.toThrow(ProfileError);
    await expect(buildProfile({ name: "x", maxAutoApprove: "1.234" })).rejects.toThrow(/--max-auto-approve/);
    await expect(buildProfile({ name: "x", rates: ["just-words"] })).rejects.toThrow(/--rate must look like/);
    await expect(buildProfile({ name: "x", profile: path.join(dir, "missing.json") })).rejects.toThrow(/cannot read profile/);
  });
});
