import { randomBytes, randomUUID } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { AudioControl, AudioEncoding, type AudioFormat } from "../../gen/handshake/v1/audio_pb.js";
import type { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import type { Contract } from "../../gen/handshake/v1/deal_pb.js";
import { AgentProfileSchema, EscrowPreference, NegotiationStyle, PartyRole, RateUnit } from "../../gen/handshake/v1/profile_pb.js";
import { GetRoomRequestSchema, RoomService, type AudioStreamRequest, type AudioStreamRequest as StreamRequest } from "../../gen/handshake/v1/room_service_pb.js";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { bearer, bearerHeaders, grpcTransport, startTestApp, testProfile, type TestApp } from "../support/app.js";
import {
  TEST_JWT_SECRET,
  clientsWithHeader,
  driveDeal,
  expectCode,
  grpcEnvelope,
  healthStatus,
  joinAs,
  mintToken,
  randomKey,
  rawHttp2Post,
  unsignedToken,
  type Person,
} from "../support/security.js";

/**
 * Bad input and bad credentials on every RPC of RoomService and ContractService. Each case
 * asserts the exact status code and that nothing changed: both rooms' status, every party's
 * contracts and balances, and the panels' last sequence numbers are as they were before.
 */

const ROOM_A = "sec-room-a";
const ROOM_B = "sec-room-b";
const MAX_AMOUNT_MINOR = 100_000_000n;

/** Names of process warnings since this file loaded (Node emits each kind once per emitter). */
const processWarnings: string[] = [];
process.on("warning", (w) => processWarnings.push(w.name));

let t: TestApp;
let provider: Person;
let client: Person;
let stranger: Person;
/** The provider's session in a second room, to sign room A's contract from the wrong room. */
let providerElsewhere: Person;
let contract: Contract;
let baseline: string;
/** The creator of an invite-only room. */
let inviteHost: Person;

type RoomClient = Client<typeof RoomService>;
type ContractClient = Client<typeof ContractService>;

const json = (value: unknown) => JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));

/** Everything a bad call must leave untouched. */
async function snapshot(): Promise<string> {
  const [roomA, roomB, ...rest] = await Promise.all([
    provider.room.getRoom({ roomId: ROOM_A }),
    stranger.room.getRoom({ roomId: ROOM_B }),
    provider.contracts.listContracts({}),
    client.contracts.listContracts({}),
    stranger.contracts.listContracts({}),
    provider.contracts.getBalances({}),
    client.contracts.getBalances({}),
    stranger.contracts.getBalances({}),
  ]);
  const lastSeq = (p: Person) => p.panel.events.at(-1)?.seq ?? 0n;
  return json({ roomA, roomB, rest, seqs: [provider, client, stranger].map(lastSeq) });
}

beforeAll(async () => {
  t = await startTestApp({ JWT_SECRET: TEST_JWT_SECRET, LEAVE_GRACE_MS: "3600000", SEND_AUDIO_PER_SECOND: "5" });
  ({ provider, client, contract } = await driveDeal(t, ROOM_A));
  stranger = await joinAs(t, ROOM_B, { displayName: "Mallory", role: PartyRole.CLIENT });
  inviteHost = await joinAs(t, "sec-invite", { displayName: "Host" }, "", "letmein-42");
  providerElsewhere = await joinAs(t, "sec-room-p2", { displayName: "Sam the plumber", role: PartyRole.PROVIDER }, provider.userToken);
  // The room settles into "signing" once the contract is out; wait for that status before the baseline.
  await provider.panel.waitFor((e) => e.event.case === "roomStatus" && e.event.value.contractId === contract.id, "room status with the contract");
  baseline = await snapshot();
}, 60_000);

afterAll(async () => {
  for (const p of [provider, client, stranger, providerElsewhere, inviteHost]) await p?.panel.stop();
  await t?.close();
});

const format = (init: Partial<AudioFormat> = {}) => ({ encoding: AudioEncoding.PCM16LE, sampleRateHz: 16000, channels: 1, ...init });
const frame = (bytes: number, seq = 0n) => ({ seq, pcm: new Uint8Array(bytes), capturedAtUs: 1n });

async function* oneFormat(): AsyncGenerator<Partial<StreamRequest>> {
  yield { message: { case: "format", value: format() } } as Partial<StreamRequest>;
}

/** The first message of a server stream, or its error; a deadline guards a stream that should have failed. */
async function first(stream: AsyncIterable<unknown>): Promise<unknown> {
  for await (const message of stream) return message;
  return undefined;
}

/** One call of every RoomService method that needs a token, aimed at room A. */
const roomMethods: Record<string, (c: RoomClient) => Promise<unknown>> = {
  GetRoom: (c) => c.getRoom({ roomId: ROOM_A }),
  LeaveRoom: (c) => c.leaveRoom({ roomId: ROOM_A }),
  SetProfile: (c) => c.setProfile({ profile: testProfile({ displayName: "Mallory in disguise" }) }),
  SetTriggerKeyword: (c) => c.setTriggerKeyword({ roomId: ROOM_A, keyword: "deal" }),
  SendAudio: (c) => c.sendAudio({ transcript: { text: "I will pay a million pounds. Handshake.", isFinal: true, startMs: 0, endMs: 900 } }),
  SignContract: (c) => c.signContract({ contractId: contract.id, textSha256: contract.textSha256 }),
  PanelStream: (c) => first(c.panelStream({ roomId: ROOM_A, afterSeq: 0n }, { timeoutMs: 5000 })),
  ReceiveAudio: (c) => first(c.receiveAudio({ roomId: ROOM_A }, { timeoutMs: 5000 })),
  AudioStream: (c) => first(c.audioStream(oneFormat() as AsyncIterable<never>, { timeoutMs: 5000 })),
};

/** One call of every ContractService method, aimed at room A's contract. */
const contractMethods: Record<string, (c: ContractClient) => Promise<unknown>> = {
  ListContracts: (c) => c.listContracts({}),
  GetContract: (c) => c.getContract({ contractId: contract.id }),
  ConfirmMilestone: (c) => c.confirmMilestone({ contractId: contract.id, milestoneId: `${contract.id}_m1` }),
  ProposeMilestoneAmount: (c) => c.proposeMilestoneAmount({ contractId: contract.id, milestoneId: `${contract.id}_m1`, amountMinor: 100n }),
  ApproveMilestoneAmount: (c) => c.approveMilestoneAmount({ contractId: contract.id, milestoneId: `${contract.id}_m1`, amountMinor: 100n }),
  ReleaseEscrow: (c) => c.releaseEscrow({ contractId: contract.id, milestoneId: `${contract.id}_m1` }),
  GetBalances: (c) => c.getBalances({}),
};

/** Authorization header values that must be refused with UNAUTHENTICATED, made once the room exists. */
const badCredentials: Record<string, () => Promise<string | undefined>> = {
  missing: async () => undefined,
  garbage: async () => "Bearer not-a-jwt",
  expired: async () =>
    `Bearer ${await mintToken({ claims: { typ: "session", room: ROOM_A }, subject: provider.userId, expiresAt: Math.floor(Date.now() / 1000) - 60 })}`,
  forged: async () => `Bearer ${await mintToken({ claims: { typ: "session", room: ROOM_A }, subject: provider.userId, key: randomKey() })}`,
};

interface Case {
  name: string;
  code: Code;
  call: () => Promise<unknown>;
}

const cases: Case[] = [];

// 1. Credentials: four bad kinds × every method of both services.
for (const [kind, header] of Object.entries(badCredentials)) {
  for (const [method, call] of Object.entries(roomMethods)) {
    cases.push({ name: `RoomService/${method} with a ${kind} token`, code: Code.Unauthenticated, call: async () => call(clientsWithHeader(t.baseUrl, await header()).room) });
  }
  for (const [method, call] of Object.entries(contractMethods)) {
    cases.push({
      name: `ContractService/${method} with a ${kind} token`,
      code: Code.Unauthenticated,
      call: async () => call(clientsWithHeader(t.baseUrl, await header()).contracts),
    });
  }
}

// 2. Odd tokens and headers on GetRoom.
const oddTokens: [string, () => Promise<string>][] = [
  ["a Basic authorization header", async () => "Basic dXNlcjpwYXNz"],
  ["a Bearer header with a space in the token", async () => "Bearer abc def"],
  ["an unsigned (alg none) token", async () => `Bearer ${unsignedToken({ typ: "session", room: ROOM_A, sub: provider.userId })}`],
  ["a token for another audience", async () => `Bearer ${await mintToken({ claims: { typ: "session", room: ROOM_A }, subject: provider.userId, audience: "someone-else" })}`],
  ["a token from another issuer", async () => `Bearer ${await mintToken({ claims: { typ: "session", room: ROOM_A }, subject: provider.userId, issuer: "evil" })}`],
  ["a token of an unknown kind", async () => `Bearer ${await mintToken({ claims: { typ: "admin", room: ROOM_A }, subject: provider.userId })}`],
  ["a token without a subject", async () => `Bearer ${await mintToken({ claims: { typ: "session", room: ROOM_A } })}`],
  ["a session token without a room", async () => `Bearer ${await mintToken({ claims: { typ: "session" }, subject: provider.userId })}`],
];
for (const [name, header] of oddTokens) {
  cases.push({ name: `GetRoom with ${name}`, code: Code.Unauthenticated, call: async () => clientsWithHeader(t.baseUrl, await header()).room.getRoom({ roomId: ROOM_A }) });
}

// 3. Wrong kind of token: a user token on every room method.
for (const [method, call] of Object.entries(roomMethods)) {
  cases.push({ name: `RoomService/${method} with a user token`, code: Code.PermissionDenied, call: () => call(clientsWithHeader(t.baseUrl, `Bearer ${provider.userToken}`).room) });
}

// 4. Another room's session token, naming room A.
const otherRoomCalls: Record<string, (c: RoomClient) => Promise<unknown>> = {
  GetRoom: roomMethods.GetRoom!,
  LeaveRoom: roomMethods.LeaveRoom!,
  SetTriggerKeyword: roomMethods.SetTriggerKeyword!,
  PanelStream: roomMethods.PanelStream!,
  ReceiveAudio: roomMethods.ReceiveAudio!,
};
for (const [method, call] of Object.entries(otherRoomCalls)) {
  cases.push({ name: `${method} of room A with room B's session token`, code: Code.PermissionDenied, call: () => call(stranger.room) });
}
cases.push(
  {
    name: "GetRoom with a validly signed session token of a user who is not a member",
    code: Code.PermissionDenied,
    call: async () => clientsWithHeader(t.baseUrl, `Bearer ${await mintToken({ claims: { typ: "session", room: ROOM_A }, subject: `usr_${randomUUID()}` })}`).room.getRoom({}),
  },
  {
    name: "GetRoom with a validly signed session token of a room that does not exist",
    code: Code.NotFound,
    call: async () => clientsWithHeader(t.baseUrl, `Bearer ${await mintToken({ claims: { typ: "session", room: "no-such-room" }, subject: provider.userId })}`).room.getRoom({}),
  },
  ...["has space", "ünïcødé", "x".repeat(65), "../etc/passwd"].map((roomId) => ({
    name: `GetRoom naming a malformed room id ${JSON.stringify(roomId.slice(0, 20))}`,
    code: Code.PermissionDenied,
    call: () => provider.room.getRoom({ roomId }),
  })),
);

// 5. JoinRoom: room ids, invite codes, user tokens, profiles.
const anonymousRoom = () => createClient(RoomService, grpcTransport(t.baseUrl));
// An empty room id is not bad input: it asks for a new room (test/privacy/room-history.test.ts).
for (const roomId of ["x".repeat(65), "has space", "ünïcødé", "room/1", "room\u0000"]) {
  cases.push({ name: `JoinRoom with room id ${JSON.stringify(roomId.slice(0, 20))}`, code: Code.InvalidArgument, call: () => anonymousRoom().joinRoom({ roomId, profile: testProfile() }) });
}
for (const inviteCode of ["abc", "has space", "x".repeat(65), "tab\tcode"]) {
  cases.push({ name: `JoinRoom with invite code ${JSON.stringify(inviteCode.slice(0, 20))}`, code: Code.InvalidArgument, call: () => anonymousRoom().joinRoom({ roomId: "sec-new", inviteCode, profile: testProfile() }) });
}
cases.push(
  { name: "JoinRoom with a garbage user_token", code: Code.Unauthenticated, call: () => anonymousRoom().joinRoom({ roomId: "sec-new", userToken: "garbage", profile: testProfile() }) },
  { name: "JoinRoom with a session token as user_token", code: Code.Unauthenticated, call: () => anonymousRoom().joinRoom({ roomId: "sec-new", userToken: provider.sessionToken, profile: testProfile() }) },
  {
    name: "JoinRoom with a forged user_token",
    code: Code.Unauthenticated,
    call: async () => anonymousRoom().joinRoom({ roomId: "sec-new", userToken: await mintToken({ claims: { typ: "user" }, subject: provider.userId, key: randomKey() }), profile: testProfile() }),
  },
  { name: "JoinRoom of an invite-only room without the code", code: Code.PermissionDenied, call: () => anonymousRoom().joinRoom({ roomId: "sec-invite", profile: testProfile() }) },
  { name: "JoinRoom of an invite-only room with a wrong code", code: Code.PermissionDenied, call: () => anonymousRoom().joinRoom({ roomId: "sec-invite", inviteCode: "letmein-43", profile: testProfile() }) },
  { name: "JoinRoom without a profile", code: Code.InvalidArgument, call: () => anonymousRoom().joinRoom({ roomId: "sec-new" }) },
  { name: "JoinRoom of a full room by a third person", code: Code.ResourceExhausted, call: () => anonymousRoom().joinRoom({ roomId: ROOM_A, profile: testProfile({ displayName: "Third" }) }) },
);

const rate = (amountMinor: bigint) => ({ description: "work", amountMinor, unit: 1 });
const badProfiles: [string, MessageInitShape<typeof AgentProfileSchema>][] = [
  ["an empty name", { displayName: "" }],
  ["a name of spaces", { displayName: "   " }],
  ["a 101-character name", { displayName: "n".repeat(101) }],
  ["a name with control characters", { displayName: "Eve\u0007" }],
  ["currency XYZ", { currency: "XYZ" }],
  ["currency gbp in lower case", { currency: "gbp" }],
  ["an empty currency", { currency: "" }],
  ["a negative max_auto_approve", { maxAutoApproveMinor: -1n }],
  ["max_auto_approve over MAX_AMOUNT_MINOR", { maxAutoApproveMinor: MAX_AMOUNT_MINOR + 1n }],
  ["a negative escrow threshold", { escrowThresholdMinor: -5n }],
  ["role 99", { role: 99 as PartyRole }],
  ["style 99", { style: 99 as NegotiationStyle }],
  ["escrow preference 99", { escrowPreference: 99 as EscrowPreference }],
  ["21 rates", { rates: Array.from({ length: 21 }, () => rate(100n)) }],
  ["a rate of 0", { rates: [rate(0n)] }],
  ["a rate over MAX_AMOUNT_MINOR", { rates: [rate(MAX_AMOUNT_MINOR + 1n)] }],
  ["a rate with unit 99", { rates: [{ description: "work", amountMinor: 100n, unit: 99 as RateUnit }] }],
  ["experience of 81 years", { experienceYears: 81 }],
  ["a Stripe account id (the server creates those)", { stripeAccountId: "acct_123" }],
  ["a Stripe customer id (the server creates those)", { stripeCustomerId: "cus_123" }],
  ["a Stripe payment method id (the server creates those)", { stripePaymentMethodId: "pm_card_visa" }],
  ["11 context documents", { contextDocuments: Array.from({ length: 11 }, () => ({ title: "doc", text: "x" })) }],
  ["4001 characters of instructions", { customInstructions: "i".repeat(4001) }],
];
for (const [name, init] of badProfiles) {
  cases.push(
    { name: `JoinRoom with a profile with ${name}`, code: Code.InvalidArgument, call: () => anonymousRoom().joinRoom({ roomId: "sec-new", profile: testProfile(init) }) },
    { name: `SetProfile with ${name}`, code: Code.InvalidArgument, call: () => provider.room.setProfile({ profile: testProfile(init) }) },
  );
}
cases.push({ name: "SetProfile without a profile", code: Code.InvalidArgument, call: () => provider.room.setProfile({}) });

// 6. SetTriggerKeyword.
for (const [name, keyword] of [
  ["empty", ""],
  ["spaces only", "   "],
  ["51 characters", "k".repeat(51)],
  ["punctuation only", "!!!?"],
] as const) {
  cases.push({ name: `SetTriggerKeyword ${name}`, code: Code.InvalidArgument, call: () => provider.room.setTriggerKeyword({ roomId: ROOM_A, keyword }) });
}

// 7. SendAudio.
cases.push(
  { name: "SendAudio frames without a format", code: Code.InvalidArgument, call: () => provider.room.sendAudio({ frames: [frame(640)] }) },
  { name: "SendAudio an odd-byte frame", code: Code.InvalidArgument, call: () => provider.room.sendAudio({ format: format(), frames: [frame(641)] }) },
  { name: "SendAudio an empty frame", code: Code.InvalidArgument, call: () => provider.room.sendAudio({ format: format(), frames: [frame(0)] }) },
  { name: "SendAudio a frame over 32,000 bytes", code: Code.InvalidArgument, call: () => provider.room.sendAudio({ format: format(), frames: [frame(32_002)] }) },
  { name: "SendAudio 51 frames", code: Code.InvalidArgument, call: () => provider.room.sendAudio({ format: format(), frames: Array.from({ length: 51 }, (_, i) => frame(640, BigInt(i))) }) },
  {
    name: "SendAudio a 10 MB frame (over readMaxBytes)",
    code: Code.ResourceExhausted,
    // Node's HTTP/2 client caps a session at 10 MB of buffered data (maxSessionMemory) and would reset
    // the stream itself with ENHANCE_YOUR_CALM; a client that allows more sees the server's answer.
    call: () =>
      createClient(RoomService, createGrpcTransport({ baseUrl: t.baseUrl, interceptors: [bearer(provider.sessionToken)], nodeOptions: { maxSessionMemory: 100 } })).sendAudio({
        format: format(),
        frames: [frame(10 * 1024 * 1024)],
      }),
  },
  { name: "SendAudio control 99", code: Code.InvalidArgument, call: () => provider.room.sendAudio({ control: 99 as AudioControl }) },
  { name: "SendAudio format with encoding unspecified", code: Code.InvalidArgument, call: () => provider.room.sendAudio({ format: format({ encoding: AudioEncoding.UNSPECIFIED }) }) },
  { name: "SendAudio format in stereo", code: Code.InvalidArgument, call: () => provider.room.sendAudio({ format: format({ channels: 2 }) }) },
  { name: "SendAudio format at 12,345 Hz", code: Code.InvalidArgument, call: () => provider.room.sendAudio({ format: format({ sampleRateHz: 12_345 }) }) },
  {
    name: "SendAudio a good frame with a bad control (nothing applied)",
    code: Code.InvalidArgument,
    call: () => provider.room.sendAudio({ format: format(), frames: [frame(640)], control: 99 as AudioControl }),
  },
);

// 8. SignContract.
cases.push(
  { name: "SignContract with a malformed contract id", code: Code.InvalidArgument, call: () => provider.room.signContract({ contractId: "ctr_x", textSha256: contract.textSha256 }) },
  { name: "SignContract with an empty contract id", code: Code.InvalidArgument, call: () => provider.room.signContract({ contractId: "", textSha256: contract.textSha256 }) },
  { name: "SignContract with an unknown contract id", code: Code.NotFound, call: () => provider.room.signContract({ contractId: `ctr_${randomUUID()}`, textSha256: contract.textSha256 }) },
  { name: "SignContract with the wrong hash", code: Code.FailedPrecondition, call: () => provider.room.signContract({ contractId: contract.id, textSha256: "0".repeat(64) }) },
  { name: "SignContract with a hash that is not hex", code: Code.InvalidArgument, call: () => provider.room.signContract({ contractId: contract.id, textSha256: "z".repeat(64) }) },
  { name: "SignContract with an upper-case hash", code: Code.InvalidArgument, call: () => provider.room.signContract({ contractId: contract.id, textSha256: contract.textSha256.toUpperCase() }) },
  { name: "SignContract of room A's contract by a stranger in room B", code: Code.PermissionDenied, call: () => stranger.room.signContract({ contractId: contract.id, textSha256: contract.textSha256 }) },
  { name: "SignContract of room A's contract by its party from another room", code: Code.PermissionDenied, call: () => providerElsewhere.room.signContract({ contractId: contract.id, textSha256: contract.textSha256 }) },
);

// 9. ContractService.
const milestone = (n: number | string) => `${contract.id}_m${n}`;
cases.push(
  { name: "GetContract by someone who is not a party", code: Code.PermissionDenied, call: () => stranger.contracts.getContract({ contractId: contract.id }) },
  { name: "GetContract of an unknown contract", code: Code.NotFound, call: () => provider.contracts.getContract({ contractId: `ctr_${randomUUID()}` }) },
  { name: "GetContract with a malformed id", code: Code.InvalidArgument, call: () => provider.contracts.getContract({ contractId: "'; DROP TABLE contracts; --" }) },
  { name: "GetContract with an empty id", code: Code.InvalidArgument, call: () => provider.contracts.getContract({ contractId: "" }) },
  { name: "ListContracts with page_size 101", code: Code.InvalidArgument, call: () => provider.contracts.listContracts({ pageSize: 101 }) },
  { name: "ListContracts with a garbage page_token", code: Code.InvalidArgument, call: () => provider.contracts.listContracts({ pageToken: "!!not-a-token!!" }) },
  { name: "ListContracts with a base64 page_token that is not a cursor", code: Code.InvalidArgument, call: () => provider.contracts.listContracts({ pageToken: Buffer.from('{"c":"x","i":1}').toString("base64url") }) },
  { name: "ListContracts with a 201-character page_token", code: Code.InvalidArgument, call: () => provider.contracts.listContracts({ pageToken: "a".repeat(201) }) },
  { name: "ConfirmMilestone with a malformed milestone id", code: Code.InvalidArgument, call: () => provider.contracts.confirmMilestone({ contractId: contract.id, milestoneId: "m1" }) },
  { name: "ConfirmMilestone with a malformed contract id", code: Code.InvalidArgument, call: () => provider.contracts.confirmMilestone({ contractId: "nope", milestoneId: milestone(1) }) },
  { name: "ConfirmMilestone of an unknown contract", code: Code.NotFound, call: () => provider.contracts.confirmMilestone({ contractId: `ctr_${randomUUID()}`, milestoneId: milestone(1) }) },
  { name: "ConfirmMilestone of an unknown milestone", code: Code.NotFound, call: () => provider.contracts.confirmMilestone({ contractId: contract.id, milestoneId: milestone(999) }) },
  { name: "ConfirmMilestone by someone who is not a party", code: Code.PermissionDenied, call: () => stranger.contracts.confirmMilestone({ contractId: contract.id, milestoneId: milestone(1) }) },
  { name: "ReleaseEscrow by someone who is not a party", code: Code.PermissionDenied, call: () => stranger.contracts.releaseEscrow({ contractId: contract.id, milestoneId: milestone(1) }) },
  { name: "ReleaseEscrow with a malformed milestone id", code: Code.InvalidArgument, call: () => provider.contracts.releaseEscrow({ contractId: contract.id, milestoneId: `${contract.id}_x` }) },
  { name: "ReleaseEscrow of an unknown milestone", code: Code.NotFound, call: () => provider.contracts.releaseEscrow({ contractId: contract.id, milestoneId: milestone(998) }) },
);
for (const [name, amountMinor] of [
  ["0", 0n],
  ["negative", -100n],
  ["over MAX_AMOUNT_MINOR", MAX_AMOUNT_MINOR + 1n],
  ["the int64 maximum", 2n ** 63n - 1n],
] as const) {
  cases.push(
    { name: `ProposeMilestoneAmount of ${name}`, code: Code.InvalidArgument, call: () => provider.contracts.proposeMilestoneAmount({ contractId: contract.id, milestoneId: milestone(1), amountMinor }) },
    { name: `ApproveMilestoneAmount of ${name}`, code: Code.InvalidArgument, call: () => client.contracts.approveMilestoneAmount({ contractId: contract.id, milestoneId: milestone(1), amountMinor }) },
  );
}
cases.push(
  { name: "ProposeMilestoneAmount with a malformed milestone id", code: Code.InvalidArgument, call: () => provider.contracts.proposeMilestoneAmount({ contractId: contract.id, milestoneId: "", amountMinor: 100n }) },
  { name: "ProposeMilestoneAmount by someone who is not a party", code: Code.PermissionDenied, call: () => stranger.contracts.proposeMilestoneAmount({ contractId: contract.id, milestoneId: milestone(1), amountMinor: 100n }) },
  { name: "ApproveMilestoneAmount by someone who is not a party", code: Code.PermissionDenied, call: () => stranger.contracts.approveMilestoneAmount({ contractId: contract.id, milestoneId: milestone(1), amountMinor: 100n }) },
);

describe("bad input and bad credentials", () => {
  it("has at least 60 table cases", () => {
    expect(cases.length).toBeGreaterThanOrEqual(60);
  });

  it.each(cases.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
    await expectCode(c.call, c.code);
    expect(await snapshot()).toBe(baseline);
  });
});

describe("AudioStream (native gRPC) refuses bad first messages", () => {
  const streamCases: [string, AudioStreamRequest["message"][], Code][] = [
    ["a frame before the format", [{ case: "frame", value: frame(640) as never }], Code.InvalidArgument],
    ["a format in stereo", [{ case: "format", value: format({ channels: 2 }) as never }], Code.InvalidArgument],
    ["an odd-byte frame after the format", [{ case: "format", value: format() as never }, { case: "frame", value: frame(641) as never }], Code.InvalidArgument],
    ["control 99 after the format", [{ case: "format", value: format() as never }, { case: "control", value: 99 as AudioControl }], Code.InvalidArgument],
  ];
  it.each(streamCases)("%s", async (_name, messages, code) => {
    async function* input() {
      for (const message of messages) yield { message };
    }
    await expectCode(() => first(provider.room.audioStream(input() as AsyncIterable<never>, { timeoutMs: 5000 })), code);
    expect(await snapshot()).toBe(baseline);
  });
});

describe("SendAudio rate limit (SEND_AUDIO_PER_SECOND=5)", () => {
  it("refuses the sixth call in the same second with RESOURCE_EXHAUSTED and recovers a second later", async () => {
    const flooder = await joinAs(t, "sec-flood", { displayName: "Flo" });
    // Only Date is faked: the server's token bucket reads Date.now, I/O runs for real.
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() });
    try {
      for (let i = 0; i < 5; i++) await flooder.room.sendAudio({});
      await expectCode(() => flooder.room.sendAudio({}), Code.ResourceExhausted);
      await expectCode(() => flooder.room.sendAudio({ control: 1 }), Code.ResourceExhausted);
      const room = await flooder.room.getRoom({});
      expect(room.room?.participants[0]?.muted).toBe(false);
      vi.setSystemTime(Date.now() + 1000);
      await flooder.room.sendAudio({});
    } finally {
      vi.useRealTimers();
      await flooder.panel.stop();
    }
    expect(await snapshot()).toBe(baseline);
  });
});

describe("raw garbage on the wire", () => {
  const getRoomPath = "/handshake.v1.RoomService/GetRoom";
  const authed = () => ({ "content-type": "application/grpc", te: "trailers", ...bearerHeaders(provider.sessionToken) });
  const invalidProto = new Uint8Array(64).fill(0xff);

  it.each([
    ["an envelope around bytes that are not protobuf", () => grpcEnvelope(invalidProto), Code.Internal],
    ["an envelope promising more bytes than it has", () => grpcEnvelope(new Uint8Array(100)).subarray(0, 20), Code.InvalidArgument],
    ["an envelope larger than readMaxBytes", () => grpcEnvelope(new Uint8Array(300 * 1024)), Code.ResourceExhausted],
    ["a compressed flag without grpc-encoding", () => grpcEnvelope(new Uint8Array(4), 1), Code.Internal],
    ["random bytes", () => new Uint8Array(randomBytes(257)), undefined],
  ] as const)("gRPC over HTTP/2: %s gets a clear status", async (_name, body, code) => {
    const res = await rawHttp2Post(t.baseUrl, getRoomPath, authed(), body());
    expect(res.httpStatus).toBe(200);
    expect(res.grpcStatus).toBeDefined();
    if (code === undefined) expect([Code.Internal, Code.InvalidArgument, Code.ResourceExhausted]).toContain(res.grpcStatus);
    else expect(res.grpcStatus).toBe(code);
    expect(await healthStatus(t.baseUrl)).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it("gRPC over HTTP/2: a valid GetRoom message without a token is UNAUTHENTICATED", async () => {
    const body = grpcEnvelope(toBinary(GetRoomRequestSchema, create(GetRoomRequestSchema, { roomId: ROOM_A })));
    const res = await rawHttp2Post(t.baseUrl, getRoomPath, { "content-type": "application/grpc", te: "trailers" }, body);
    expect(res.grpcStatus).toBe(Code.Unauthenticated);
  });

  it("gRPC over HTTP/2: an unknown method is UNIMPLEMENTED", async () => {
    const res = await rawHttp2Post(t.baseUrl, "/handshake.v1.RoomService/DropTables", authed(), grpcEnvelope(new Uint8Array(0)));
    expect(res.grpcStatus).toBe(Code.Unimplemented);
    expect(await healthStatus(t.baseUrl)).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it("gRPC over HTTP/2: garbage on the native AudioStream fast path gets a clear status", async () => {
    const res = await rawHttp2Post(t.baseUrl, "/handshake.v1.RoomService/AudioStream", authed(), grpcEnvelope(invalidProto));
    expect(res.httpStatus).toBe(200);
    expect([Code.InvalidArgument, Code.Internal]).toContain(res.grpcStatus);
    expect(await healthStatus(t.baseUrl)).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it.each([
    ["an envelope larger than readMaxBytes", () => grpcEnvelope(new Uint8Array(300 * 1024)), Code.ResourceExhausted],
    ["a length prefix of 2 GiB", () => Uint8Array.from([0, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3]), Code.ResourceExhausted],
    ["an empty message (no format header)", () => grpcEnvelope(new Uint8Array(0)), Code.InvalidArgument],
    ["a compressed flag without grpc-encoding", () => grpcEnvelope(new Uint8Array(4), 1), Code.Internal],
  ] as const)("gRPC over HTTP/2: AudioStream fast path, %s", async (_name, body, code) => {
    const res = await rawHttp2Post(t.baseUrl, "/handshake.v1.RoomService/AudioStream", authed(), body());
    expect(res.grpcStatus).toBe(code);
    expect(await snapshot()).toBe(baseline);
  });

  // connect-node answers "protocol error: incomplete envelope"; the fast path does the same.
  it("gRPC over HTTP/2: AudioStream fast path, an envelope cut short by the end of the stream is INVALID_ARGUMENT", async () => {
    const res = await rawHttp2Post(t.baseUrl, "/handshake.v1.RoomService/AudioStream", authed(), grpcEnvelope(new Uint8Array(100)).subarray(0, 20));
    expect(res.grpcStatus).toBe(Code.InvalidArgument);
  });

  // connect-node's handler returns OK at once; `grpc-timeout` bounds this test.
  it("gRPC over HTTP/2: AudioStream fast path, a request that ends with no message at all ends with OK", async () => {
    const res = await rawHttp2Post(t.baseUrl, "/handshake.v1.RoomService/AudioStream", { ...authed(), "grpc-timeout": "3S" }, new Uint8Array(0));
    expect({ grpcStatus: res.grpcStatus, grpcMessage: res.grpcMessage }).toEqual({ grpcStatus: 0, grpcMessage: undefined });
  });

  it.each([
    ["bytes that are not protobuf", () => invalidProto, 500, "internal"],
    ["random bytes", () => new Uint8Array(randomBytes(257)), undefined, undefined],
    ["a body larger than readMaxBytes", () => new Uint8Array(300 * 1024), 429, "resource_exhausted"],
  ] as const)("Connect over HTTP/1.1 (application/proto): %s gets a clear error", async (_name, body, httpStatus, code) => {
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${t.baseUrl}${getRoomPath}`, {
        method: "POST",
        headers: { "content-type": "application/proto", "connect-protocol-version": "1", ...bearerHeaders(provider.sessionToken) },
      });
      req.on("response", (r) => {
        const chunks: Buffer[] = [];
        r.on("data", (c: Buffer) => chunks.push(c));
        r.on("end", () => resolve({ status: r.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      });
      req.on("error", reject);
      req.end(Buffer.from(body()));
    });
    // Connect errors are JSON with a code name.
    const parsed = JSON.parse(res.body) as { code?: string; message?: string };
    if (code === undefined) {
      expect(["internal", "invalid_argument"]).toContain(parsed.code);
    } else {
      expect({ status: res.status, code: parsed.code }).toEqual({ status: httpStatus, code });
    }
    expect(await healthStatus(t.baseUrl)).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it("random bytes on a bare TCP connection are dropped and the server stays healthy", async () => {
    for (const garbage of [randomBytes(4096), Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\u0000".repeat(64))]) {
      const socket = net.connect(t.port, "127.0.0.1");
      socket.on("error", () => {});
      // Read (and drop) whatever the server answers, so its close reaches us.
      socket.resume();
      socket.write(garbage);
      await new Promise<void>((resolve) => socket.on("close", () => resolve()));
    }
    expect(await healthStatus(t.baseUrl)).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect(await snapshot()).toBe(baseline);
  });
});

describe("many concurrent calls", () => {
  // connect-es links the server's shutdown signal into every call's context.
  it("raise no MaxListenersExceededWarning on the server", async () => {
    await Promise.all(Array.from({ length: 30 }, () => provider.room.getRoom({ roomId: ROOM_A })));
    // Warnings are emitted on a later tick.
    await new Promise((resolve) => setImmediate(resolve));
    expect(processWarnings).not.toContain("MaxListenersExceededWarning");
  });
});

describe("the no-change check itself", () => {
  // Runs last: it changes room B on purpose, to show the snapshot would catch a change.
  it("notices a real change", async () => {
    await stranger.room.setTriggerKeyword({ roomId: ROOM_B, keyword: "agreed" });
    expect(await snapshot()).not.toBe(baseline);
    const invite = await inviteHost.room.getRoom({});
    expect(invite.room?.participants).toHaveLength(1);
  });
});
