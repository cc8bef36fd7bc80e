import http from "node:http";
import type { AddressInfo } from "node:net";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { createTokenService } from "../../src/auth/tokens.js";
import { UnauthenticatedError } from "../../src/core/errors.js";
import { grpcTransport, startTestApp, testProfile, type TestApp } from "../support/app.js";

const secret = new Uint8Array(32).fill(7);

describe("token service", () => {
  it("issues user and session tokens and tells them apart", async () => {
    const tokens = createTokenService({ secret, sessionTtlMs: 60_000, userTtlMs: 600_000 });
    expect(await tokens.verify(await tokens.issueUserToken("usr_1"))).toEqual({ kind: "user", userId: "usr_1" });
    const session = await tokens.issueSessionToken("usr_1", "room-1");
    expect(await tokens.verify(session.token)).toEqual({ kind: "session", userId: "usr_1", roomId: "room-1" });
  });

  it("refuses expired, malformed and wrongly signed tokens", async () => {
    let now = 1_000_000_000_000;
    const tokens = createTokenService({ secret, sessionTtlMs: 60_000, userTtlMs: 600_000, now: () => now });
    const { token } = await tokens.issueSessionToken("usr_1", "room-1");
    // Verified once (and remembered), it must still be refused once it expires.
    expect(await tokens.verify(token)).toEqual({ kind: "session", userId: "usr_1", roomId: "room-1" });
    now += 59_000;
    expect(await tokens.verify(token)).toEqual({ kind: "session", userId: "usr_1", roomId: "room-1" });
    now += 2_000;
    await expect(tokens.verify(token)).rejects.toThrow(/expired/);
    await expect(tokens.verify("not.a.token")).rejects.toBeInstanceOf(UnauthenticatedError);
    const other = createTokenService({ secret: new Uint8Array(32).fill(8), sessionTtlMs: 60_000, userTtlMs: 600_000, now: () => now });
    await expect(tokens.verify(await other.issueUserToken("usr_1"))).rejects.toThrow(/signature/);
  });
});

describe("tokens from an external OIDC issuer", () => {
  let jwksServer: http.Server;
  let t: TestApp;
  let privateKey: CryptoKey;
  const issuer = "https://login.example.test/";

  beforeAll(async () => {
    const pair = await generateKeyPair("RS256");
    privateKey = pair.privateKey as CryptoKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "RS256", use: "sig" };
    jwksServer = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, "127.0.0.1", resolve));
    const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
    t = await startTestApp({ OIDC_ISSUER: issuer, OIDC_JWKS_URL: jwksUrl, OIDC_AUDIENCE: "handshake" });
  });
  afterAll(async () => {
    await t.close();
    await new Promise((resolve) => jwksServer.close(resolve));
  });

  const external = (claims: { iss?: string; aud?: string; sub?: string }) =>
    new SignJWT({})
      .setProtectedHeader({ alg: "RS256", kid: "k1" })
      .setIssuer(claims.iss ?? issuer)
      .setAudience(claims.aud ?? "handshake")
      .setSubject(claims.sub ?? "alice")
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(privateKey);

  it("accepts the issuer's token as a user token: join as that user, then read contracts", async () => {
    const token = await external({});
    const joined = await createClient(RoomService, grpcTransport(t.baseUrl)).joinRoom({ roomId: "oidc", profile: testProfile(), userToken: token });
    expect(joined.userId).toBe("oidc:alice");
    const listed = await createClient(ContractService, grpcTransport(t.baseUrl, token)).listContracts({});
    expect(listed.contracts).toEqual([]);
  });

  it("refuses tokens of another issuer or audience", async () => {
    for (const claims of [{ iss: "https://evil.example.test/" }, { aud: "someone-else" }]) {
      const call = createClient(ContractService, grpcTransport(t.baseUrl, await external(claims))).listContracts({});
      await expect(call).rejects.toSatisfy((err: unknown) => ConnectError.from(err).code === Code.Unauthenticated);
    }
  });
});
