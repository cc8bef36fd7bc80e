import { describe, expect, it } from "vitest";
import { nextSessionState, transitionSession } from "../../src/room/session.js";

describe("session machine: a declined contract", () => {
  it("returns signing sessions to active, and is illegal anywhere else", () => {
    expect(transitionSession("signing", "declined", 5)).toEqual({ from: "signing", to: "active", at: 5 });
    for (const state of ["discovering", "active", "negotiating", "completed"] as const) {
      expect(nextSessionState(state, "declined")).toBeUndefined();
      expect(() => transitionSession(state, "declined", 5)).toThrow(/cannot go from/);
    }
    expect(nextSessionState("active", "triggered")).toBe("negotiating");
  });
});
