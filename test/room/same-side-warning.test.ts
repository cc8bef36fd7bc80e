import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { describeEvent, sameSideText } from "../../clients/shared/format.js";
import { createParticipant } from "../../clients/cli/participant.js";
import { startTestApp, testProfile, type TestApp } from "../support/app.js";
import { joinPerson } from "../support/people.js";

/*
 * Two people on the same side of a deal are told before anything fails: the second join with the
 * first one's side warns both on their panels, and switching side says it is over.
 */

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t.close();
});

describe("same-side warning", () => {
  it("warns both members when the second joins on the first one's side, and clears when one switches", async () => {
    const sam = await joinPerson(t.baseUrl, "same-side", { displayName: "Sam", role: PartyRole.CLIENT });
    const alex = await joinPerson(t.baseUrl, "same-side", { displayName: "Alex", role: PartyRole.CLIENT });
    try {
      for (const person of [sam, alex]) {
        const warned = await person.panel.waitFor((e) => e.event.case === "sameSide", "same-side warning");
        if (warned.event.case !== "sameSide") throw new Error("unreachable");
        expect(warned.event.value).toMatchObject({ userIds: [sam.userId, alex.userId], role: PartyRole.CLIENT, cleared: false });
        // Each member's role is in the room's snapshot too, so a client can tell who should switch.
        const status = await person.panel.waitFor((e) => e.event.case === "roomStatus" && e.event.value.participants.length === 2);
        if (status.event.case !== "roomStatus") throw new Error("unreachable");
        expect(status.event.value.participants.map((p) => p.role)).toEqual([PartyRole.CLIENT, PartyRole.CLIENT]);
      }
      const names = (id: string) => (id === sam.userId ? "You" : "Alex");
      const warned = sam.panel.events.find((e) => e.event.case === "sameSide");
      if (warned?.event.case !== "sameSide") throw new Error("no warning");
      expect(sameSideText(warned.event.value, names)).toBe("You and Alex are both set as paying — one of you should switch, or the deal will fail.");

      // A profile update that changes nothing about sides says nothing more.
      await sam.room.setProfile({ profile: testProfile({ displayName: "Sam", role: PartyRole.CLIENT, trade: "homeowner" }) });
      await alex.room.setProfile({ profile: testProfile({ displayName: "Alex", role: PartyRole.PROVIDER }) });
      for (const person of [sam, alex]) {
        const cleared = await person.panel.waitFor((e) => e.event.case === "sameSide" && e.event.value.cleared, "cleared warning");
        expect(describeEvent(cleared, (id) => (id === sam.userId ? "Sam" : "Alex"))).toMatch(/sides sorted: Sam and Alex are on different sides now/);
        expect(person.panel.events.filter((e) => e.event.case === "sameSide").length).toBe(2);
      }
    } finally {
      await Promise.all([sam.panel.stop(), alex.panel.stop()]);
    }
  });

  it("is printed by the command-line participant, in the words the CLI shows for every room event", async () => {
    const lines: string[] = [];
    const [sam, alex] = (["Sam", "Alex"] as const).map((name) =>
      createParticipant({
        serverUrl: t.baseUrl,
        roomId: "same-side-cli",
        profile: testProfile({ displayName: name, role: PartyRole.PROVIDER }),
        onEvent: (event, p) => lines.push(`${name}: ${describeEvent(event, (id) => p.nameOf(id))}`),
      }),
    ) as [ReturnType<typeof createParticipant>, ReturnType<typeof createParticipant>];
    try {
      await sam.join();
      await alex.join();
      for (const p of [sam, alex]) await p.waitFor((e) => (e.event.case === "sameSide" ? true : undefined));
      for (const name of ["Sam", "Alex"]) {
        expect(lines.find((l) => l.startsWith(`${name}: `) && l.includes("warning:"))).toMatch(/warning: Sam and Alex are both set as being paid — one of you should switch, or the deal will fail\.$/);
      }
    } finally {
      await Promise.all([sam.close(), alex.close()]);
    }
  });

  it("says nothing when the two are on different sides or one has not said", async () => {
    const ada = await joinPerson(t.baseUrl, "different-sides", { displayName: "Ada", role: PartyRole.PROVIDER });
    const bo = await joinPerson(t.baseUrl, "different-sides", { displayName: "Bo", role: PartyRole.CLIENT });
    const cy = await joinPerson(t.baseUrl, "no-side", { displayName: "Cy", role: PartyRole.UNSPECIFIED });
    const di = await joinPerson(t.baseUrl, "no-side", { displayName: "Di", role: PartyRole.UNSPECIFIED });
    try {
      // Events are in order: a warning from the joins would come before a line said after them.
      await Promise.all([ada.say("Hello."), cy.say("Hello.")]);
      for (const person of [ada, bo, cy, di]) await person.panel.waitFor((e) => e.event.case === "transcript" && e.event.value.isFinal, "a line said after the joins");
      for (const person of [ada, bo, cy, di]) expect(person.panel.events.some((e) => e.event.case === "sameSide")).toBe(false);
    } finally {
      await Promise.all([ada, bo, cy, di].map((p) => p.panel.stop()));
    }
  });
});
