import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { LineItemKind, LineItemSchema, PartySchema, ProposalSchema } from "../../gen/handshake/v1/deal_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { dealKindOf, draftFromTemplate } from "../../src/deal/contract-template.js";

function draft(summary: string, items: { description: string; amountMinor: bigint; unit?: string; quantity?: number }[]) {
  const proposal = create(ProposalSchema, {
    id: "prop-1",
    summary,
    currency: "GBP",
    totalMinor: items.reduce((s, i) => s + i.amountMinor, 0n),
    providerUserId: "usr_s",
    clientUserId: "usr_b",
    lineItems: items.map((i, n) =>
      create(LineItemSchema, {
        id: `item-${n + 1}`,
        description: i.description,
        kind: LineItemKind.IMMEDIATE,
        amountMinor: i.amountMinor,
        quantity: i.quantity ?? 1,
        unitPriceMinor: i.amountMinor / BigInt(i.quantity ?? 1),
        unit: i.unit ?? "",
      }),
    ),
  });
  const parties = [
    create(PartySchema, { userId: "usr_s", displayName: "Rosa", role: PartyRole.PROVIDER }),
    create(PartySchema, { userId: "usr_b", displayName: "Liam", role: PartyRole.CLIENT }),
  ];
  return draftFromTemplate({ proposal, parties, conversation: [] });
}

describe("contract template", () => {
  it("titles a sale of goods as a sale, with seller and buyer", () => {
    const { title, text } = draft("Sale of Sofa. 1 item, £400.00 in total.", [{ description: "Sofa", amountMinor: 40_000n }]);
    expect(title).toBe("Sale of Sofa");
    expect(text.split("\n")[0]).toBe('SALE OF GOODS AGREEMENT: "Sale of Sofa"');
    expect(text).toContain('- Seller: "Rosa" (user usr_s)');
    expect(text).toContain('- Buyer: "Liam" (user usr_b)');
    expect(text).toContain("paid by the Buyer to the Seller");
    expect(text.toLowerCase()).not.toContain("service agreement");
    expect(text).toContain('1. "Sofa": £400.00 (paid on signing)');
  });

  it("titles lessons as lessons and a trade's work as a service", () => {
    const lessons = draft("Piano lessons. 1 item, £850.00 in total.", [{ description: "Piano lessons", amountMinor: 85_000n, unit: "lesson", quantity: 10 }]);
    expect(lessons.text.split("\n")[0]).toBe('LESSONS AGREEMENT: "Piano lessons"');
    expect(lessons.text).toContain('10 "lesson" × £85.00 = £850.00');
    const job = draft("Gutter repair. 1 item, £185.00 in total.", [{ description: "Gutter repair", amountMinor: 18_500n }]);
    expect(job.text.split("\n")[0]).toBe('SERVICE AGREEMENT: "Gutter repair"');
    expect(job.text).toContain('- Provider: "Rosa"');
  });

  it.each([
    ["Sale of Bicycle. 1 item, ¥45,000 in total.", "sale"],
    ["Selling a used car", "sale"],
    ["Guitar lessons", "lessons"],
    ["English tutoring, two sessions", "lessons"],
    ["Window cleaning", "service"],
  ])("%s is a %s", (summary, kind) => {
    expect(dealKindOf({ summary, lineItems: [] })).toBe(kind);
  });
});
