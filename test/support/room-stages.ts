import { create } from "@bufbuild/protobuf";
import { ContractSchema, ContractStatus, LineItemKind, ProposalSchema, type Contract, type Negotiation, type Proposal } from "../../gen/handshake/v1/deal_pb.js";
import { PartyRole, type AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import { TriggerEventSchema, TriggerKind, type TranscriptEntry, type TriggerEvent } from "../../gen/handshake/v1/transcript_pb.js";
import type { Agent, AgentDeps } from "../../src/agents/agent.js";
import type { ContractDesk, DraftRequest } from "../../src/deal/contracts.js";
import { createNegotiationSession } from "../../src/deal/negotiation.js";
import type { RoomSettings, RoomStages } from "../../src/room/room.js";
import { createFakeSpeechFactory, type FakeSpeechFactory } from "../../src/speech/testing/fake-speech-engine.js";
import type { TriggerDetector } from "../../src/trigger/trigger-detector.js";
import { testProfile } from "./app.js";

/** A trigger detector a test fires by hand; it keeps the arm state the room sets. */
export interface FakeTrigger extends TriggerDetector {
  /** Final entries the room fed it. */
  readonly fed: TranscriptEntry[];
  /** How often the room said a contract was drafted (`dealMade`) or declined (`dealUndone`). */
  readonly dealsMade: number;
  readonly dealsUndone: number;
  readonly closed: boolean;
  /** Fires as the real detector would: only while armed, disarming itself first. Returns whether it fired. */
  fire(speakerUserId: string): boolean;
}

/** An agent that records what the room tells it and moves only when the test makes it. */
export interface FakeAgent extends Agent {
  /** What the room gave the agent: its person, the open negotiation, the way to its user. */
  readonly deps: AgentDeps;
  readonly transcripts: { entry: TranscriptEntry; speaker: "self" | "peer" }[];
  readonly started: TriggerEvent[];
  readonly peerMoves: Negotiation[];
  readonly stopped: boolean;
}

/** The fakes behind `stages`, newest last, for a test to drive and inspect. */
export interface FakeRoomStages {
  stages: RoomStages;
  triggers: FakeTrigger[];
  agents: FakeAgent[];
  speech: FakeSpeechFactory;
  /** Contracts the fake desk drafted. */
  drafted: Contract[];
  /** Contracts the room handed on for payment. */
  executed: Contract[];
  /** The newest agent made for `userId` (an agent is made again on each pairing). */
  agentOf(userId: string): FakeAgent;
}

/** Timeouts the real negotiation session runs with (fake timers drive them). */
export interface FakeStageOptions {
  roundTimeoutMs?: number;
  totalTimeoutMs?: number;
}

/**
 * Room stages for tests of `Room` and `RoomManager`: a hand-fired trigger, recording agents, fake
 * speech engines, a desk that drafts without a store, and the real negotiation session (pure, its
 * timeouts on whatever timers the test uses).
 */
export function createFakeRoomStages(options: FakeStageOptions = {}): FakeRoomStages {
  const triggers: FakeTrigger[] = [];
  const agents: FakeAgent[] = [];
  const drafted: Contract[] = [];
  const executed: Contract[] = [];
  const speech = createFakeSpeechFactory();
  const unused = (what: string) => () => Promise.reject(new Error(`the fake desk does not ${what}`));
  const desk: ContractDesk = {
    draft(request: DraftRequest) {
      const contract = create(ContractSchema, {
        id: `ctr_${drafted.length + 1}`,
        roomId: request.roomId,
        negotiationId: request.negotiation.id,
        title: "Test contract",
        text: `Contract for ${request.negotiation.id}`,
        status: ContractStatus.AWAITING_SIGNATURES,
      });
      drafted.push(contract);
      return Promise.resolve(contract);
    },
    sign: unused("sign"),
    decline: unused("decline"),
    get: unused("read contracts"),
    list: unused("list contracts"),
  };
  const stages: RoomStages = {
    createTrigger(trigger) {
      const fake = createFakeTrigger(trigger.onTrigger);
      triggers.push(fake);
      return fake;
    },
    createNegotiation(negotiation) {
      return createNegotiationSession({
        ...negotiation,
        roundTimeoutMs: options.roundTimeoutMs ?? 20_000,
        totalTimeoutMs: options.totalTimeoutMs ?? 60_000,
      });
    },
    agentFactory(deps) {
      const agent = createFakeAgent(deps);
      agents.push(agent);
      return agent;
    },
    speechFactory: speech.factory,
    toSpeechPcm: () => (pcm) => Buffer.from(pcm),
    desk,
    executeContract(contract) {
      executed.push(contract);
      return Promise.resolve();
    },
    bankFor: () => undefined,
  };
  return {
    stages,
    triggers,
    agents,
    speech,
    drafted,
    executed,
    agentOf(userId) {
      const agent = agents.findLast((a) => a.deps.userId === userId);
      if (!agent) throw new Error(`no agent was made for ${userId}`);
      return agent;
    },
  };
}

/** Room settings for tests: small logs, the keyword "handshake". */
export function testRoomSettings(init: Partial<RoomSettings> = {}): RoomSettings {
  return { eventLogSize: 100, subscriberQueueSize: 100, triggerKeyword: "handshake", triggerRequireBoth: false, ...init };
}

/** A provider's profile and a client's, for the two members of a test room. */
export function providerProfile(): AgentProfile {
  return testProfile({ displayName: "Sam", role: PartyRole.PROVIDER, trade: "plumber" });
}

/** The client's profile (see `providerProfile`). */
export function clientProfile(): AgentProfile {
  return testProfile({ displayName: "Alex", role: PartyRole.CLIENT });
}

/** A valid one-item proposal of `amountMinor` pence from `providerUserId` to `clientUserId`. */
export function oneItemProposal(providerUserId: string, clientUserId: string, amountMinor = 12_000n): Proposal {
  return create(ProposalSchema, {
    currency: "GBP",
    providerUserId,
    clientUserId,
    totalMinor: amountMinor,
    lineItems: [{ id: "li_1", description: "Boiler repair", kind: LineItemKind.IMMEDIATE, amountMinor, quantity: 1 }],
  });
}

function createFakeTrigger(onTrigger: (event: TriggerEvent) => void): FakeTrigger {
  let armed = true;
  let closed = false;
  let dealsMade = 0;
  let dealsUndone = 0;
  const fed: TranscriptEntry[] = [];
  return {
    fed,
    get dealsMade() {
      return dealsMade;
    },
    get dealsUndone() {
      return dealsUndone;
    },
    get closed() {
      return closed;
    },
    feed: (entry) => void fed.push(entry),
    setKeyword: () => {},
    arm: () => void (armed = true),
    disarm: () => void (armed = false),
    isArmed: () => armed,
    dealMade: () => void dealsMade++,
    dealUndone: () => void dealsUndone++,
    close: () => void (closed = true),
    fire(speakerUserId) {
      if (!armed || closed) return false;
      armed = false;
      onTrigger(create(TriggerEventSchema, { kind: TriggerKind.KEYWORD, speakerUserId, keyword: "handshake", atMs: BigInt(Date.now()) }));
      return true;
    },
  };
}

function createFakeAgent(deps: AgentDeps): FakeAgent {
  const transcripts: FakeAgent["transcripts"] = [];
  const started: TriggerEvent[] = [];
  const peerMoves: Negotiation[] = [];
  let stopped = false;
  return {
    deps,
    transcripts,
    started,
    peerMoves,
    get stopped() {
      return stopped;
    },
    pushTranscript: (entry, speaker) => void transcripts.push({ entry, speaker }),
    startNegotiation: (trigger) => void started.push(trigger),
    onPeerMove: (negotiation) => void peerMoves.push(negotiation),
    stop() {
      stopped = true;
      return Promise.resolve();
    },
  };
}
