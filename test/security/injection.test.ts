import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LineItemKind, PartySchema, ProposalSchema } from "../../gen/handshake/v1/deal_pb.js";
import { AgentProfileSchema, PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { TranscriptEntrySchema } from "../../gen/handshake/v1/transcript_pb.js";
import { draftFromTemplate } from "../../src/deal/contract-template.js";
import { grpcTransport, startTestApp, testProfile, type TestApp } from "../support/app.js";
import { TEST_JWT_SECRET, expectCode, joinAs, type Person } from "../support/security.js";
import { settledStoreDigest } from "../support/store-rows.js";

/**
 * Text that people type or say must not become a clause of the contract both of them sign: the
 * boundary refuses control characters, newlines and bidi overrides in one-line texts (naming the
 * field), and the template quotes whatever people said, so no input can look like a clause.
 */

const FORGED_CLAUSE = "\n2. Price: £1.00";

let t: TestApp;
let host: Person;

beforeAll(async () => {
  t = await startTestApp({ JWT_SECRET: TEST_JWT_SECRET, LEAVE_GRACE_MS: "3600000" });
  host = await joinAs(t, "inj-room", { displayName: "Host" });
}, 30_000);

afterAll(async () => {
  await host?.panel.stop();
  await t?.close();
});

/** The store and the room, which a refused call must leave as they were. */
async function snapshot(): Promise<unknown> {
  return { store: await settledStoreDigest(t.dataDir), room: await host.room.getRoom({}) };
}

describe("one-line texts are refused with the field named", () => {
  const rate = (description: string) => ({ rates: [{ description, amountMinor: 100n, unit: 1 }] });
  const cases: [string, MessageInitShape<typeof AgentProfileSchema>, string][] = [
    ["a name with a forged clause after a newline", { displayName: `Sam${FORGED_CLAUSE}` }, "profile.display_name"],
    ["a name ending in a newline", { displayName: "Sam\n" }, "profile.display_name"],
    ["a name with a carriage return", { displayName: "Sam\r2. Price: £1.00" }, "profile.display_name"],
    ["a name with a tab", { displayName: "Sam\tthe plumber" }, "profile.display_name"],
    ["a name with a right-to-left override", { displayName: "Sam \u202e00.1£" }, "profile.display_name"],
    ["a name with a bidi isolate", { displayName: "Sam \u2066x\u2069" }, "profile.display_name"],
    ["a name with a line separator", { displayName: "Sam\u20282. Price" }, "profile.display_name"],
    ["a name with a C1 control", { displayName: "Sam\u0085x" }, "profile.display_name"],
    ["a trade with a newline", { trade: `plumber${FORGED_CLAUSE}` }, "profile.trade"],
    ["a trade with a bidi override", { trade: "\u202dplumber" }, "profile.trade"],
    ["a rate description with a newline", rate(`boiler repair${FORGED_CLAUSE}`), "profile.rates[0].description"],
    ["a rate description with a paragraph separator", rate("boiler\u2029repair"), "profile.rates[0].description"],
    ["a rate description with a bidi override", rate("boiler \u202erepair"), "profile.rates[0].description"],
    ["a document title with a newline", { contextDocuments: [{ title: "terms\n1. Scope", text: "x" }] }, "profile.context_documents[0].title"],
    ["a document text with a bidi override", { contextDocuments: [{ title: "terms", text: "line one\nline \u202etwo" }] }, "profile.context_documents[0].text"],
    ["instructions with a NUL", { customInstructions: "be kind\u0000" }, "profile.custom_instructions"],
    ["instructions with a bidi override", { customInstructions: "be \u202ekind" }, "profile.custom_instructions"],
  ];
  const anonymous = () => createClient(RoomService, grpcTransport(t.baseUrl));

  it.each(cases)("JoinRoom with %s", async (_name, init, field) => {
    const before = await snapshot();
    const err = await expectCode(() => anonymous().joinRoom({ roomId: "inj-new", profile: testProfile(init) }), Code.InvalidArgument);
    expect(err.rawMessage).toContain(field);
    expect(await snapshot()).toEqual(before);
    expect(t.app.deps.rooms.get("inj-new")).toBeUndefined();
  });

  it.each(cases)("SetProfile with %s", async (_name, init, field) => {
    const before = await snapshot();
    const err = await expectCode(() => host.room.setProfile({ profile: testProfile(init) }), Code.InvalidArgument);
    expect(err.rawMessage).toContain(field);
    expect(await snapshot()).toEqual(before);
  });

  it("multi-line texts keep their newlines and tabs", async () => {
    const profile = testProfile({ displayName: "Host", customInstructions: "Line one.\n\tLine two.\r\n", contextDocuments: [{ title: "Price list", text: "a: £1\nb: £2" }] });
    const res = await host.room.setProfile({ profile });
    expect(res.profile?.customInstructions).toBe("Line one.\n\tLine two.\r\n");
  });

  it.each([
    ["a newline", `I agree.${FORGED_CLAUSE}`],
    ["a bidi override", "I agree \u202e00.1£"],
    ["a NUL", "I agree\u0000"],
  ])("a device transcript with %s is INVALID_ARGUMENT and changes nothing", async (_name, text) => {
    const before = await snapshot();
    await expectCode(() => host.room.sendAudio({ transcript: { text, isFinal: true, startMs: 0, endMs: 500 } }), Code.InvalidArgument);
    expect(await snapshot()).toEqual(before);
  });
});

/** The template's own numbered clauses: a forged one would add a line to this list. */
const clauseLines = (text: string) => text.split("\n").filter((line) => /^\d+\.\s/.test(line));

describe("the contract quotes what people said", () => {
  it("a clause-like display name, trade and words stay inside quotes in the contract both parties get", async () => {
    // On one line, so the boundary takes it; the template must still keep it from reading as a clause.
    const name = 'Sam 2. Price: £1.00 "the plumber"';
    const provider = await joinAs(t, "inj-deal", {
      displayName: name,
      role: PartyRole.PROVIDER,
      trade: "plumber 3. Payment: none",
      rates: [{ description: "boiler repair", amountMinor: 12_000n }],
    });
    const client = await joinAs(t, "inj-deal", { displayName: "Alex", role: PartyRole.CLIENT, maxAutoApproveMinor: 20_000n });
    try {
      await provider.say('I can fix the boiler for one hundred and twenty pounds. 3. Payment: "none".');
      await client.say("That sounds fair. Handshake.");
      const event = await client.panel.waitFor((e) => e.event.case === "contract", "the contract");
      if (event.event.case !== "contract") throw new Error("unreachable");
      const text = event.event.value.text;
      expect(clauseLines(text)).toEqual([expect.stringMatching(/^1\. Scope$/), expect.stringMatching(/^2\. Price: £120\.00 in total/), "3. Payment", "4. Record"]);
      expect(text).toContain(`- Provider: ${JSON.stringify(name)} (user ${provider.userId})`);
      expect(text).toContain(`  ${JSON.stringify(name)}: ${JSON.stringify('I can fix the boiler for one hundred and twenty pounds. 3. Payment: "none".')}`);
    } finally {
      await provider.panel.stop();
      await client.panel.stop();
    }
  });

  it("the template keeps agents' and people's text on its own quoted line, whatever it holds", () => {
    const hostile = `boiler${FORGED_CLAUSE}\r\n3. Payment: the Client pays £1,000,000 \u202e00.0£\u2028\u2029 "x" \\ end`;
    const proposal = create(ProposalSchema, {
      id: "prop-1",
      summary: `Boiler repair.${FORGED_CLAUSE}`,
      currency: "GBP",
      totalMinor: 12_000n,
      lineItems: [
        {
          id: "li-1",
          description: hostile,
          kind: LineItemKind.ESCROW,
          amountMinor: 12_000n,
          quantity: 2,
          unit: hostile,
          unitPriceMinor: 6_000n,
          condition: hostile,
          pricingFactors: [{ name: hostile, impactMinor: 100n, description: hostile }],
          milestone: { title: hostile, deliverables: [hostile, hostile], verificationMethod: hostile, completionCriteria: hostile },
        },
      ],
    });
    const parties = [
      create(PartySchema, { userId: "usr_p", displayName: hostile, role: PartyRole.PROVIDER }),
      create(PartySchema, { userId: "usr_c", displayName: "Alex", role: PartyRole.CLIENT }),
    ];
    const conversation = [create(TranscriptEntrySchema, { id: "t1", speakerUserId: "usr_p", text: hostile, isFinal: true })];
    const clean = draftFromTemplate({
      proposal: create(ProposalSchema, { ...proposal, summary: "Boiler repair.", lineItems: proposal.lineItems.map((i) => ({ ...i, description: "boiler" })) }),
      parties,
      conversation,
    });
    const { text } = draftFromTemplate({ proposal, parties, conversation });
    expect(clauseLines(text)).toEqual(clauseLines(clean.text));
    expect(text.split("\n")).toHaveLength(clean.text.split("\n").length);
    expect(text).not.toMatch(/[\u202a-\u202e\u2066-\u2069\u2028\u2029\r]/);
    // Each quote is one JSON string: the quote and the backslash inside are escaped, not closing it.
    const quoted = JSON.stringify(`boiler 2. Price: £1.00 3. Payment: the Client pays £1,000,000 00.0£ "x" \\ end`);
    expect(text).toContain(`- Provider: ${quoted} (user usr_p)`);
    expect(text).toContain(`  1. ${quoted}: 2 ${quoted} × £60.00 = £120.00 (escrow)`);
    expect(text).toContain(`     Condition: ${quoted}`);
    expect(text).toContain(`     Deliverables: ${quoted}; ${quoted}`);
  });
});
