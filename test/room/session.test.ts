import { describe, expect, it } from "vitest";
import { SessionStatus } from "../../gen/handshake/v1/events_pb.js";
import { nextSessionState, toSessionStatus, transitionSession } from "../../src/room/session.js";

describe("session transitions", () => {
  it("walks discovering → active → negotiating → signing → completed", () => {
    let state = "discovering" as const as Parameters<typeof nextSessionState>[0];
    const seen: string[] = [state];
    for (const event of ["paired", "triggered", "agreed", "executed"] as const) {
      const t = transitionSession(state, event, 1);
      expect(t?.from).toBe(state);
      state = t!.to;
      seen.push(state);
    }
    expect(seen).toEqual(["discovering", "active", "negotiating", "signing", "completed"]);
    expect(toSessionStatus(state)).toBe(SessionStatus.COMPLETED);
  });

  it("returns to active when a negotiation is rejected or expires, and to discovering when unpaired", () => {
    expect(nextSessionState("negotiating", "negotiation_ended")).toBe("active");
    expect(nextSessionState("signing", "unpaired")).toBe("discovering");
    expect(nextSessionState("completed", "triggered")).toBe("negotiating");
    expect(nextSessionState("signing", "negotiation_ended")).toBe("active");
  });

  it("refuses illegal moves and ignores no-ops", () => {
    expect(() => transitionSession("discovering", "triggered", 1)).toThrow(/cannot go from discovering/);
    expect(() => transitionSession("signing", "triggered", 1)).toThrow();
    expect(transitionSession("active", "paired", 1)).toBeUndefined();
  });
});
