import { describe, expect, it } from "vitest";
import { NegotiationStyle } from "../../gen/handshake/v1/profile_pb.js";
import { concessionAlpha, negotiationTime, offerAt, STYLE_BETA, type Position } from "../../src/agents/offline/concession.js";

const provider: Position = { side: "provider", targetMinor: 100_000n, reservationMinor: 80_000n, currency: "GBP" };
const client: Position = { side: "client", targetMinor: 40_000n, reservationMinor: 60_000n, currency: "GBP" };

describe("Faratin time-dependent concession", () => {
  it("α(0) = κ and α(1) = 1 for every style", () => {
    for (const beta of Object.values(STYLE_BETA)) {
      expect(concessionAlpha(0, beta)).toBe(0);
      expect(concessionAlpha(0, beta, 0.1)).toBeCloseTo(0.1);
      expect(concessionAlpha(1, beta)).toBe(1);
    }
  });

  it("Boulware (aggressive, β < 1) holds past half time; Conceder (β > 1) has given more than half", () => {
    expect(STYLE_BETA[NegotiationStyle.AGGRESSIVE]).toBeLessThan(1);
    expect(STYLE_BETA[NegotiationStyle.BALANCED]).toBe(1);
    expect(STYLE_BETA[NegotiationStyle.CONSERVATIVE]).toBeGreaterThan(1);
    const mid = (style: NegotiationStyle) => offerAt(provider, 0.5, STYLE_BETA[style]);
    expect(mid(NegotiationStyle.AGGRESSIVE)).toBeGreaterThan(90_000n); // above the midpoint: still holding
    expect(mid(NegotiationStyle.BALANCED)).toBe(90_000n);
    expect(mid(NegotiationStyle.CONSERVATIVE)).toBeLessThan(90_000n);
    const clientMid = (style: NegotiationStyle) => offerAt(client, 0.5, STYLE_BETA[style]);
    expect(clientMid(NegotiationStyle.AGGRESSIVE)).toBeLessThan(50_000n);
    expect(clientMid(NegotiationStyle.CONSERVATIVE)).toBeGreaterThan(50_000n);
  });

  it("opens at the target, ends at the reservation and never moves backwards", () => {
    for (const beta of Object.values(STYLE_BETA)) {
      let last = provider.targetMinor;
      for (let k = 0; k < 5; k++) {
        const offer = offerAt(provider, negotiationTime(k, 5), beta);
        expect(offer).toBeLessThanOrEqual(last);
        expect(offer).toBeGreaterThanOrEqual(provider.reservationMinor);
        last = offer;
      }
      expect(offerAt(provider, 0, beta)).toBe(provider.targetMinor);
      expect(offerAt(provider, 1, beta)).toBe(provider.reservationMinor);
      expect(offerAt(client, 0, beta)).toBe(client.targetMinor);
      expect(offerAt(client, 1, beta)).toBe(client.reservationMinor);
    }
  });

  it("rounds to whole units in the side's favour without crossing its bounds", () => {
    expect(offerAt(provider, 0.3, 1)).toBe(94_000n);
    expect(offerAt({ ...provider, targetMinor: 100_050n }, 0, 1)).toBe(100_050n);
    expect(offerAt(client, 0.33, 1) % 100n).toBe(0n);
    expect(offerAt({ ...client, reservationMinor: 60_050n }, 1, 1)).toBe(60_000n); // down, in the client's favour
    expect(offerAt({ ...client, targetMinor: 40_050n, reservationMinor: 40_080n }, 0.5, 1)).toBe(40_065n); // rounding would cross the target
  });

  it("normalises time so the opening offer is t = 0 and the last permitted offer t = 1", () => {
    expect(negotiationTime(0, 5)).toBe(0);
    expect(negotiationTime(2, 5)).toBe(0.5);
    expect(negotiationTime(4, 5)).toBe(1);
    expect(negotiationTime(7, 5)).toBe(1);
    expect(negotiationTime(0, 1)).toBe(1);
  });
});
