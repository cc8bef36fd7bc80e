import { SignJWT, jwtVerify, createRemoteJWKSet, errors as joseErrors, type JWTPayload } from "jose";
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
/**
 * Verified tokens remembered, so a client's every RPC costs a map lookup instead of an HMAC
 * (a WebCrypto job on the thread pool). Oldest entries go first beyond this many.
 */
const VERIFIED_CACHE_SIZE = 10_000;
const AUDIENCE = "handshake-api";

/** Creates the token service. User ids of OIDC callers are prefixed `oidc:` so they never collide. */
export function createTokenService(options: TokenServiceOptions): TokenService {
  if (options.secret.byteLength < 32) throw new Error("token secret must be at least 32 bytes");
  const now = options.now ?? Date.now;
  const jwks = options.oidc ? createRemoteJWKSet(new URL(options.oidc.jwksUrl)) : undefined;
  // Imported once: jose would import a raw secret again on every sign and verify.
  const key = crypto.subtle.importKey("raw", new Uint8Array(options.secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
  const verified = new Map<string, { caller: Caller; expiresAtMs: number }>();

  async function sign(claims: JWTPayload, subject: string, ttlMs: number): Promise<string> {
    const iat = Math.floor(now() / 1000);
    return new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(subject)
      .setIssuedAt(iat)
      .setExpirationTime(iat + Math.ceil(ttlMs / 1000))
      .sign(await key);
  }

  return {
    issueUserToken: (userId) => sign({ typ: "user" }, userId, options.userTtlMs),
    async issueSessionToken(userId, roomId) {
      const token = await sign({ typ: "session", room: roomId }, userId, options.sessionTtlMs);
      return { token, expiresAtMs: Math.floor(now() / 1000) * 1000 + Math.ceil(options.sessionTtlMs / 1000) * 1000 };
    },
    async verify(token) {
      if (!token || token.split(".").length !== 3) throw new UnauthenticatedError("token is malformed");
      const known = verified.get(token);
      if (known && now() < known.expiresAtMs) return { ...known.caller };
      if (known) verified.delete(token);
      const currentDate = new Date(now());
      try {
        const { payload } = await jwtVerify(token, await key, {
          issuer: ISSUER,
          audience: AUDIENCE,
          algorithms: ["HS256"],
          currentDate,
          requiredClaims: ["exp"],
        });
        const caller = toCaller(payload);
        if (verified.size >= VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value!);
        verified.set(token, { caller, expiresAtMs: payload.exp! * 1000 });
        return { ...caller };
      } catch (err) {
        // Not one of ours (wrong algorithm or key): it may be the external issuer's.
        if (jwks && options.oidc && !(err instanceof joseErrors.JWTClaimValidationFailed)) {
          const external = await verifyExternal(token, jwks, options.oidc, currentDate);
          if (external) return external;
        }
        throw asUnauthenticated(err);
      }
    },
  };
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

function asUnauthenticated(err: unknown): UnauthenticatedError {
  if (err instanceof UnauthenticatedError) return err;
  if (err instanceof joseErrors.JWTExpired) return new UnauthenticatedError("token has expired");
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return new UnauthenticatedError("token signature is invalid");
  if (err instanceof joseErrors.JWTClaimValidationFailed) return new UnauthenticatedError(`token claim "${err.claim}" is invalid`);
  return new UnauthenticatedError("token is invalid");
}
