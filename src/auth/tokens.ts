import { createHmac, timingSafeEqual } from "node:crypto";
import { jwtVerify, createRemoteJWKSet, type JWTPayload } from "jose";
import { UnauthenticatedError } from "../core/errors.js";

/** Who is calling, as established from a token. */
export type Caller =
  | { kind: "user"; userId: string }
  | { kind: "session"; userId: string; roomId: string };

/** Options of the token service. */
export interface TokenServiceOptions {
  /** HMAC-SHA256 secret, at least 32 bytes. */
  secret: Uint8Array;
  sessionTtlMs: number;
  userTtlMs: number;
  /** External OpenID Connect issuer whose tokens are accepted as user tokens. */
  oidc?: { issuer: string; jwksUrl: string; audience?: string };
  now?: () => number;
}

/** Issues and verifies Handshake's tokens (signed JWTs). */
export interface TokenService {
  issueUserToken(userId: string): Promise<string>;
  issueSessionToken(userId: string, roomId: string): Promise<{ token: string; expiresAtMs: number }>;
  /** Throws UnauthenticatedError for a missing, malformed, expired or wrongly signed token. */
  verify(token: string): Promise<Caller>;
}

const ISSUER = "handshake";
/** Verified tokens remembered, so a client's every RPC costs a map lookup instead of an HMAC. Oldest entries go first beyond this many. */
const VERIFIED_CACHE_SIZE = 10_000;
const AUDIENCE = "handshake-api";
/** The protected header of every token this service signs, as jose's SignJWT wrote it. */
const HEADER = Buffer.from(JSON.stringify({ alg: "HS256", typ: "JWT" })).toString("base64url");

/** Why one of our tokens was refused; `foreign` when it may be the external issuer's instead (another algorithm or key). */
interface Refusal {
  error: UnauthenticatedError;
  foreign: boolean;
}

/**
 * Creates the token service. User ids of OIDC callers are prefixed `oidc:` so they never collide.
 * Our own tokens are compact HS256 JWTs signed and checked with node:crypto's HMAC, in the call:
 * WebCrypto's HMAC was a thread-pool job and a promise hop at every join.
 */
export function createTokenService(options: TokenServiceOptions): TokenService {
  if (options.secret.byteLength < 32) throw new Error("token secret must be at least 32 bytes");
  const now = options.now ?? Date.now;
  const jwks = options.oidc ? createRemoteJWKSet(new URL(options.oidc.jwksUrl)) : undefined;
  const secret = Buffer.from(options.secret);
  const mac = (input: string) => createHmac("sha256", secret).update(input).digest();
  const verified = new Map<string, { caller: Caller; expiresAtMs: number }>();

  function sign(claims: JWTPayload, subject: string, ttlMs: number): string {
    const iat = Math.floor(now() / 1000);
    // The claims in the order jose's SignJWT wrote them, so tokens are the same bytes as before.
    const payload = { ...claims, iss: ISSUER, aud: AUDIENCE, sub: subject, iat, exp: iat + Math.ceil(ttlMs / 1000) };
    const input = `${HEADER}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}`;
    return `${input}.${mac(input).toString("base64url")}`;
  }

  /** Checks one of our tokens as jose's jwtVerify did (HS256 only, issuer, audience, exp required, nbf, iat). */
  function verifyOwn(token: string, nowMs: number): { caller: Caller; expiresAtMs: number } | Refusal {
    const [header, body, signature] = token.split(".") as [string, string, string];
    const headerJson = parseJson(header);
    if (headerJson?.alg !== "HS256" || headerJson.crit !== undefined) return { error: new UnauthenticatedError("token is invalid"), foreign: true };
    const expected = mac(`${header}.${body}`);
    const given = Buffer.from(signature, "base64url");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { error: new UnauthenticatedError("token signature is invalid"), foreign: true };
    const payload = parseJson(body);
    if (!payload) return { error: new UnauthenticatedError("token is invalid"), foreign: true };
    const claim = (name: string): Refusal => ({ error: new UnauthenticatedError(`token claim "${name}" is invalid`), foreign: false });
    const nowS = Math.floor(nowMs / 1000);
    if (payload.iss !== ISSUER) return claim("iss");
    if (payload.aud !== AUDIENCE && !(Array.isArray(payload.aud) && payload.aud.includes(AUDIENCE))) return claim("aud");
    if (typeof payload.exp !== "number") return claim("exp");
    if (payload.iat !== undefined && typeof payload.iat !== "number") return claim("iat");
    if (payload.nbf !== undefined && (typeof payload.nbf !== "number" || payload.nbf > nowS)) return claim("nbf");
    if (payload.exp <= nowS) return { error: new UnauthenticatedError("token has expired"), foreign: false };
    try {
      return { caller: toCaller(payload), expiresAtMs: payload.exp * 1000 };
    } catch (err) {
      return { error: err as UnauthenticatedError, foreign: true };
    }
  }

  return {
    issueUserToken: async (userId) => sign({ typ: "user" }, userId, options.userTtlMs),
    async issueSessionToken(userId, roomId) {
      const token = sign({ typ: "session", room: roomId }, userId, options.sessionTtlMs);
      return { token, expiresAtMs: Math.floor(now() / 1000) * 1000 + Math.ceil(options.sessionTtlMs / 1000) * 1000 };
    },
    async verify(token) {
      if (!token || token.split(".").length !== 3) throw new UnauthenticatedError("token is malformed");
      const nowMs = now();
      const known = verified.get(token);
      if (known && nowMs < known.expiresAtMs) return { ...known.caller };
      if (known) verified.delete(token);
      const result = verifyOwn(token, nowMs);
      if ("caller" in result) {
        if (verified.size >= VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value!);
        verified.set(token, result);
        return { ...result.caller };
      }
      // Not one of ours (another algorithm or key): it may be the external issuer's.
      if (jwks && options.oidc && result.foreign) {
        const external = await verifyExternal(token, jwks, options.oidc, new Date(nowMs));
        if (external) return external;
      }
      throw result.error;
    },
  };
}

/** A base64url JSON object, or undefined when it is not one. */
function parseJson(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

async function verifyExternal(
  token: string,
  jwks: ReturnType<typeof createRemoteJWKSet>,
  oidc: NonNullable<TokenServiceOptions["oidc"]>,
  currentDate: Date,
): Promise<Caller | undefined> {
  try {
    const { payload } = await jwtVerify(token, jwks, {
      issuer: oidc.issuer,
      ...(oidc.audience ? { audience: oidc.audience } : {}),
      currentDate,
    });
    if (!payload.sub) return undefined;
    return { kind: "user", userId: `oidc:${payload.sub}` };
  } catch {
    return undefined;
  }
}

function toCaller(payload: JWTPayload): Caller {
  const userId = payload.sub;
  if (typeof userId !== "string" || userId === "") throw new UnauthenticatedError("token has no subject");
  if (payload.typ === "session" && typeof payload.room === "string") return { kind: "session", userId, roomId: payload.room };
  if (payload.typ === "user") return { kind: "user", userId };
  throw new UnauthenticatedError("token is of an unknown kind");
}
