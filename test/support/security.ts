import { randomBytes } from "node:crypto";
import http2 from "node:http2";
import { createClient, ConnectError, type Client, type Code, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { SignJWT, type JWTPayload } from "jose";
import { expect } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import type { Contract } from "../../gen/handshake/v1/deal_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { grpcTransport, testProfile, type TestApp } from "./app.js";
import { joinPerson, type Person } from "./people.js";

/** A JWT secret the tests know, so they can mint expired or odd tokens the server would sign. */
export const TEST_JWT_SECRET = "security-tests-secret-0123456789abcdefghijklmnop";

/** Claims and signing options of a hand-made token; defaults match a live session token. */
export interface MintOptions {
  claims?: JWTPayload;
  subject?: string;
  issuer?: string;
  audience?: string;
  /** Seconds since the epoch; default one hour from now. */
  expiresAt?: number;
  /** Signing key; default the server's secret. */
  key?: Uint8Array;
}

/** Signs a token the way src/auth/tokens.ts does, with every part overridable. */
export async function mintToken(options: MintOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  let jwt = new SignJWT(options.claims ?? {}).setProtectedHeader({ alg: "HS256", typ: "JWT" }).setIssuedAt(now - 10);
  jwt = jwt.setIssuer(options.issuer ?? "handshake").setAudience(options.audience ?? "handshake-api");
  if (options.subject !== undefined) jwt = jwt.setSubject(options.subject);
  jwt = jwt.setExpirationTime(options.expiresAt ?? now + 3600);
  return jwt.sign(options.key ?? new TextEncoder().encode(TEST_JWT_SECRET));
}

/** An unsigned ("alg: none") token with valid-looking claims. */
export function unsignedToken(claims: JWTPayload): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${part({ alg: "none", typ: "JWT" })}.${part({ iss: "handshake", aud: "handshake-api", exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}.`;
}

/** A random 32-byte key: tokens signed with it are forgeries. */
export const randomKey = (): Uint8Array => new Uint8Array(randomBytes(32));

/** Both typed clients over gRPC, sending `authorization` verbatim (or no header when undefined). */
export function clientsWithHeader(baseUrl: string, authorization: string | undefined): {
  room: Client<typeof RoomService>;
  contracts: Client<typeof ContractService>;
} {
  const interceptors: Interceptor[] =
    authorization === undefined
      ? []
      : [
          (next) => (req) => {
            req.header.set("authorization", authorization);
            return next(req);
          },
        ];
  const transport = createGrpcTransport({ baseUrl, interceptors });
  return { room: createClient(RoomService, transport), contracts: createClient(ContractService, transport) };
}

/** A participant of a room: its ids, tokens, clients and a live panel recorder. */
export type { Person } from "./people.js";

/** Joins `roomId` with a test profile and opens a panel recorder (which also keeps the member connected). */
export function joinAs(t: TestApp, roomId: string, profile: Parameters<typeof testProfile>[0], userToken = "", inviteCode = ""): Promise<Person> {
  return joinPerson(t.baseUrl, roomId, profile, { userToken, inviteCode });
}

/** A provider and a client who talk until the offline negotiator drafts a contract (unsigned). */
export async function driveDeal(t: TestApp, roomId: string): Promise<{ provider: Person; client: Person; contract: Contract }> {
  const provider = await joinAs(t, roomId, {
    displayName: "Sam the plumber",
    role: PartyRole.PROVIDER,
    trade: "plumber",
    rates: [{ description: "boiler repair", amountMinor: 12_000n }],
  });
  const client = await joinAs(t, roomId, { displayName: "Alex", role: PartyRole.CLIENT, maxAutoApproveMinor: 20_000n });
  await provider.say("I can fix the boiler for one hundred and twenty pounds.");
  await client.say("That sounds fair. Handshake.");
  const event = await provider.panel.waitFor((e) => e.event.case === "contract", "contract");
  if (event.event.case !== "contract") throw new Error("unreachable");
  await client.panel.waitFor((e) => e.event.case === "contract", "contract");
  return { provider, client, contract: event.event.value };
}

/** Awaits a call (or the first message of a stream) and asserts it fails with exactly `code`. */
export async function expectCode(call: () => Promise<unknown>, code: Code): Promise<ConnectError> {
  let error: unknown;
  try {
    await call();
  } catch (err) {
    error = err;
  }
  expect(error, "the call should have failed").toBeInstanceOf(ConnectError);
  const connectError = error as ConnectError;
  expect({ code: connectError.code, message: connectError.rawMessage }).toEqual({ code, message: expect.any(String) });
  return connectError;
}

/** Reads a server stream to its end (or its error). */
export async function drain(stream: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of stream) n++;
  return n;
}

/** The health service's answer for the whole server. */
export async function healthStatus(baseUrl: string): Promise<HealthCheckResponse_ServingStatus> {
  const health = createClient(Health, grpcTransport(baseUrl));
  return (await health.check({ service: "" })).status;
}

/** Outcome of a raw HTTP/2 request: HTTP status and the gRPC status from headers or trailers. */
export interface RawOutcome {
  httpStatus: number;
  grpcStatus: number | undefined;
  grpcMessage: string | undefined;
  body: Buffer;
}

/** Sends one raw HTTP/2 POST (e.g. garbage with content-type application/grpc) and reads the answer. */
export function rawHttp2Post(baseUrl: string, path: string, headers: Record<string, string>, body: Uint8Array): Promise<RawOutcome> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(baseUrl);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": path, ...headers });
    let httpStatus = 0;
    let grpcStatus: number | undefined;
    let grpcMessage: string | undefined;
    const chunks: Buffer[] = [];
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) grpcStatus = Number(h["grpc-status"]);
      if (typeof h["grpc-message"] === "string") grpcMessage = decodeURIComponent(h["grpc-message"]);
    };
    req.on("response", (h) => {
      httpStatus = Number(h[":status"]);
      take(h);
    });
    req.on("trailers", take);
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", (err) => {
      session.close();
      reject(err);
    });
    req.on("end", () => {
      session.close();
      resolve({ httpStatus, grpcStatus, grpcMessage, body: Buffer.concat(chunks) });
    });
    req.end(Buffer.from(body));
  });
}

/** A gRPC length-prefixed envelope around `payload` (uncompressed). */
export function grpcEnvelope(payload: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(5 + payload.byteLength);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, payload.byteLength);
  out.set(payload, 5);
  return out;
}
