import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { AudioControl, type AudioFormat, type AudioFrame } from "../../gen/handshake/v1/audio_pb.js";
import {
  ContractStatus,
  NegotiationStatus,
  RoundAction,
  type Contract,
  type Negotiation,
} from "../../gen/handshake/v1/deal_pb.js";
import {
  AgentMessageSchema,
  ApprovalRequestSchema,
  ApprovalStatus,
  ExecutionStepSchema,
  ExecutionStepStatus,
  ParticipantSchema,
  RoomStatusSchema,
  SameSideWarningSchema,
  type AgentMessage,
  type ApprovalRequest,
  type PanelEvent,
  type RoomStatus,
} from "../../gen/handshake/v1/events_pb.js";
import { PartyRole, type AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import {
  TranscriptEntrySchema,
  TranscriptSource,
  TriggerKind,
  type TranscriptEntry,
  type TriggerEvent,
} from "../../gen/handshake/v1/transcript_pb.js";
import type { Agent, AgentFactory } from "../agents/agent.js";
import type { ContractDesk } from "../deal/contracts.js";
import { ResourceExhaustedError } from "../core/errors.js";
import { audioFrameCounts, type StageMetrics } from "../core/metrics.js";
import { activeLink, startStage, type StageSpan, type TraceLink } from "../core/tracing.js";
import { pcmDurationMs } from "../audio/audio-format.js";
import { createApprovalBook, type ApprovalBook } from "../deal/approvals.js";
import type { NegotiationSession, NegotiationTransition } from "../deal/negotiation.js";
import { panelError, RoomEventLog, type PanelEventInit, type PersistEvent, type RestoredLog } from "../events/event-log.js";
import type { BankAccount } from "../payments/bank.js";
import type { RecognisedSpeech, SpeechEngine, SpeechEngineFactory } from "../speech/speech-engine.js";
import type { TriggerDetector, TriggerRefusal } from "../trigger/trigger-detector.js";
import { toSessionStatus, transitionSession, type SessionEvent, type SessionState } from "./session.js";

/** A recognised utterance as the room takes it (from a speech engine or a device transcript). */
export type { RecognisedSpeech };

/** Participants per room. */
export const MAX_PARTICIPANTS = 2;
/** Final transcript entries kept per participant for agents and contracts. */
const TRANSCRIPT_KEEP = 200;

/** Something that receives the peer's audio (an AudioStream or ReceiveAudio call). */
export interface AudioSink {
  /** Delivers a frame; the format is given before the first frame and when it changes. */
  push(frame: AudioFrame, format: AudioFormat | undefined): void;
}

/** Converts a participant's audio to 16 kHz PCM16 for speech; one per participant stream. */
export type SpeechPcmConverter = (format: AudioFormat) => (pcm: Uint8Array) => Buffer;

/** The stages and services a room wires together; made once per process in main.ts. */
export interface RoomStages {
  createTrigger(options: {
    keyword: string;
    requireBoth: boolean;
    onTrigger: (event: TriggerEvent) => void;
    /** A keyword heard but not turned into a trigger (nothing new priced, a deal under way). */
    onRefused?: (refusal: TriggerRefusal) => void;
  }): TriggerDetector;
  createNegotiation(options: {
    id: string;
    roomId: string;
    initiatorUserId: string;
    participants: [string, string];
    onChange: (negotiation: Negotiation, transition: NegotiationTransition | undefined) => void;
    /** The stored open negotiation to go on with (a room rebuilt on another node or after a restart). */
    restored?: Negotiation;
  }): NegotiationSession;
  /** Stores a negotiation as it stands, after each round, so a rebuilt room can go on with it; not stored when absent. */
  saveNegotiation?(negotiation: Negotiation): Promise<void>;
  agentFactory: AgentFactory;
  /** Undefined when the server has no speech engine (device transcripts only). */
  speechFactory: SpeechEngineFactory | undefined;
  toSpeechPcm: SpeechPcmConverter;
  desk: ContractDesk;
  /** Runs a fully signed contract's payments; reports through the room manager. */
  executeContract(contract: Contract): Promise<void>;
  bankFor(profile: AgentProfile): BankAccount | undefined;
  /** Where stage timings go (trigger → proposal); none recorded when absent. */
  metrics?: StageMetrics;
}

/** Settings a room takes from the configuration. */
export interface RoomSettings {
  eventLogSize: number;
  subscriberQueueSize: number;
  triggerKeyword: string;
  triggerRequireBoth: boolean;
}

interface Member {
  userId: string;
  profile: AgentProfile;
  session: SessionState;
  agent: Agent | undefined;
  speech: SpeechEngine | undefined;
  speechFormat: AudioFormat | undefined;
  toSpeech: ((pcm: Uint8Array) => Buffer) | undefined;
  transcript: TranscriptEntry[];
  sinks: Set<AudioSink>;
  /**
   * The other members' sinks: where this member's frames go. Rebuilt (a new array, so a sink
   * that unregisters while a frame is being relayed does not disturb that loop) whenever a member
   * or a sink comes or goes, so the relay of a frame is one loop over an array.
   */
  relayTo: readonly AudioSink[];
  /** Set when the member leaves or the room closes: an `audioInput` holding it looks again. */
  left: boolean;
  /** Format of this member's audio; sent to the peer's sinks before frames. */
  format: AudioFormat | undefined;
  muted: boolean;
  openStreams: number;
  partialId: string | undefined;
  /** Audio written to the member's speech engine so far (ms), and when the latest of it arrived (performance.now). */
  heardMs: number;
  heardAtMs: number;
  /** The audio call whose sound this member's speech engine hears, for the deal's trace to link to. */
  audioCallLink: TraceLink | undefined;
}

/**
 * One live room: up to two members, their audio, speech, agents, the trigger, the negotiation
 * and the contract, wired together. Every event goes to the room's log, which PanelStream reads.
 */
export class Room {
  readonly events: RoomEventLog;
  private readonly members = new Map<string, Member>();
  private readonly trigger: TriggerDetector;
  private negotiation: NegotiationSession | undefined;
  /** When the running negotiation's trigger fired (performance.now), until its first proposal. */
  private triggeredAtMs: number | undefined;
  private lastNegotiation: Negotiation | undefined;
  /** The latest trigger in a restored log: what a resumed negotiation without an offer yet opens from. */
  private restoredTrigger: TriggerEvent | undefined;
  /** The negotiation the restored log's latest status named as running ("" when none): it may have no round yet. */
  private restoredActiveNegotiationId = "";
  /** Negotiation saves, one after another, so the store never goes back to an older round. */
  private negotiationSaves: Promise<void> = Promise.resolve();
  /** The trace of the deal under way, from its trigger to its payments (or its end); one per deal. */
  private dealSpan: StageSpan | undefined;
  private negotiationSpan: StageSpan | undefined;
  private contract: Contract | undefined;
  private readonly executing = new Set<string>();
  /** Agents' requests for their person's approval above the max auto-approve. */
  private readonly approvals: ApprovalBook;
  /** Signing and declining run one at a time, so a decline never races the last signature. */
  private contractWork: Promise<unknown> = Promise.resolve();
  private triggerKeyword: string;
  private destroyed = false;
  /** The final transcripts of the room's earlier life (restored from its log): each member who joins gets them. */
  private readonly restoredConversation: TranscriptEntry[] = [];
  /** Parties of contracts an earlier pair on this room made, by contract id (see startNewPair). */
  private readonly earlierPairContracts = new Map<string, string[]>();
  /** True while the room replays its restored log into the trigger: nothing it hears there is news. */
  private restoring = false;
  /** Last time anyone did anything here, for idle eviction. */
  lastActivityMs: number;
  /** True while the two members are told they are on the same side (see warnSameSide). */
  private sameSide = false;

  constructor(
    readonly id: string,
    readonly inviteCode: string | undefined,
    private readonly stages: RoomStages,
    settings: RoomSettings,
    private readonly log: Logger,
    restored: RestoredLog | undefined,
    persist: PersistEvent,
    private readonly now: () => number = Date.now,
  ) {
    this.lastActivityMs = now();
    this.events = new RoomEventLog({
      roomId: id,
      capacity: settings.eventLogSize,
      subscriberQueueSize: settings.subscriberQueueSize,
      ...(restored ? { restored } : {}),
      persist,
      now,
    });
    this.trigger = stages.createTrigger({
      keyword: settings.triggerKeyword,
      requireBoth: settings.triggerRequireBoth,
      onTrigger: (event) => this.guard("trigger", () => this.onTrigger(event)),
      onRefused: (refusal) => {
        if (!this.restoring) this.guard("trigger", () => this.onTriggerRefused(refusal));
      },
    });
    this.approvals = createApprovalBook({
      newId: () => `apr_${randomUUID()}`,
      now,
      onChange: (request) => this.emit({ visibleToUserId: request.userId, event: { case: "approvalRequest", value: request } }),
    });
    this.trigger.disarm();
    if (restored) {
      this.restoreConversation(restored.events);
      this.expireRestoredApprovals(restored.events);
    }
    this.triggerKeyword = settings.triggerKeyword;
  }

  /** Number of members. */
  get size(): number {
    return this.members.size;
  }

  has(userId: string): boolean {
    return this.members.has(userId);
  }

  /** Adds a member (a repeated join is a no-op); pairs when the second arrives. */
  join(userId: string, profile: AgentProfile): void {
    this.touch();
    const existing = this.members.get(userId);
    if (existing) {
      existing.profile = profile;
      this.warnSameSide();
      return;
    }
    if (this.members.size >= MAX_PARTICIPANTS) throw new ResourceExhaustedError("room is full");
    this.members.set(userId, {
      userId,
      profile,
      session: "discovering",
      agent: undefined,
      speech: undefined,
      speechFormat: undefined,
      toSpeech: undefined,
      // After a restart the conversation so far comes back from the log, for their agent and contract.
      transcript: [...this.restoredConversation],
      sinks: new Set(),
      relayTo: [],
      left: false,
      format: undefined,
      muted: false,
      openStreams: 0,
      partialId: undefined,
      heardMs: 0,
      heardAtMs: 0,
      audioCallLink: undefined,
    });
    this.refreshRelays();
    if (this.members.size === MAX_PARTICIPANTS) this.pair();
    this.broadcastStatus();
    this.warnSameSide();
  }

  /**
   * A new pair starts on this room while one of the earlier pair stays: `newcomerUserId` sees
   * nothing from before, and no agent carries the earlier pair's talk into the new deal.
   */
  startNewPair(newcomerUserId: string): void {
    this.events.startHistoryAt(newcomerUserId, this.events.latestSeq);
    this.restoredConversation.length = 0;
    for (const member of this.members.values()) member.transcript = [];
    // The earlier pair's deal stays in the store for its parties (ContractService), not in GetRoom;
    // its later money events (a milestone settled) reach only its parties.
    if (!this.negotiation) {
      if (this.contract) this.earlierPairContracts.set(this.contract.id, this.contract.parties.map((p) => p.userId));
      this.lastNegotiation = undefined;
      this.contract = undefined;
    }
  }

  /** Removes a member and stops their services; the room is unpaired. */
  async leave(userId: string): Promise<void> {
    const member = this.members.get(userId);
    if (!member) return;
    this.touch();
    this.members.delete(userId);
    member.left = true;
    this.refreshRelays();
    // An agent waiting on its person's answer would hold up its own stop: the deal is over for both.
    this.approvals.expire();
    await this.stopMember(member);
    this.unpair();
    this.broadcastStatus();
    this.warnSameSide();
  }

  /** Replaces a member's profile; their agent uses it from its next decision. */
  setProfile(userId: string, profile: AgentProfile): void {
    const member = this.members.get(userId);
    if (member) member.profile = profile;
    this.touch();
    this.broadcastStatus();
    this.warnSameSide();
  }

  /**
   * Tells both members, before any deal fails on it, when their profiles put them on the same
   * side (a contract needs a payer and a payee), and again when one of them switches.
   */
  private warnSameSide(): void {
    const [a, b] = [...this.members.values()];
    if (!a || !b) {
      // One left: nothing to warn about, and nobody to tell it is over.
      this.sameSide = false;
      return;
    }
    const role = a.profile.role;
    const clash = role !== PartyRole.UNSPECIFIED && role === b.profile.role;
    if (clash === this.sameSide) return;
    this.sameSide = clash;
    this.emit({
      event: { case: "sameSide", value: create(SameSideWarningSchema, { userIds: [a.userId, b.userId], role: clash ? role : PartyRole.UNSPECIFIED, cleared: !clash }) },
    });
  }

  setTriggerKeyword(keyword: string, requireBoth: boolean): void {
    this.trigger.setKeyword(keyword, requireBoth);
    this.triggerKeyword = keyword;
    this.touch();
    this.broadcastStatus();
  }

  /** A snapshot of the room. */
  status(): RoomStatus {
    return create(RoomStatusSchema, {
      roomId: this.id,
      participants: [...this.members.values()].map((m) =>
        create(ParticipantSchema, {
          userId: m.userId,
          displayName: m.profile.displayName,
          sessionStatus: toSessionStatus(m.session),
          connected: m.openStreams > 0,
          muted: m.muted,
          role: m.profile.role,
        }),
      ),
      paired: this.members.size === MAX_PARTICIPANTS,
      triggerKeyword: this.triggerKeyword,
      triggerArmed: this.trigger.isArmed(),
      activeNegotiationId: this.negotiation?.id ?? "",
      contractId: this.contract?.id ?? "",
      inviteOnly: this.inviteCode !== undefined,
    });
  }

  /** The open or latest negotiation and the latest contract. */
  deal(): { negotiation: Negotiation | undefined; contract: Contract | undefined } {
    return { negotiation: this.negotiation?.snapshot() ?? this.lastNegotiation, contract: this.contract };
  }

  /** How many streams a member has open. */
  openStreams(userId: string): number {
    return this.members.get(userId)?.openStreams ?? 0;
  }

  /** A member opened (+1) or closed (-1) a stream; returns how many they have open. */
  streamOpened(userId: string, delta: 1 | -1): number {
    const member = this.members.get(userId);
    if (!member) return 0;
    const before = member.openStreams;
    member.openStreams = Math.max(0, before + delta);
    if ((before === 0) !== (member.openStreams === 0)) this.broadcastStatus();
    return member.openStreams;
  }

  /** Registers a sink for the peer's audio of `userId`; returns the unregister function. */
  addAudioSink(userId: string, sink: AudioSink): () => void {
    const member = this.members.get(userId);
    if (!member) return () => {};
    member.sinks.add(sink);
    this.refreshRelays();
    return () => {
      if (member.sinks.delete(sink)) this.refreshRelays();
    };
  }

  private refreshRelays(): void {
    for (const member of this.members.values()) {
      const relayTo: AudioSink[] = [];
      for (const peer of this.members.values()) if (peer !== member) relayTo.push(...peer.sinks);
      member.relayTo = relayTo;
    }
  }

  /**
   * Sets the format of a member's audio (the AudioStream header or a SendAudio format). The one
   * check of a format: the speech converter throws AudioFormatError before anything changes.
   */
  setAudioFormat(userId: string, format: AudioFormat): void {
    const member = this.members.get(userId);
    if (!member) return;
    const toSpeech = this.stages.toSpeechPcm(format);
    member.format = format;
    member.toSpeech = toSpeech;
    member.speechFormat = format;
    member.audioCallLink = activeLink();
  }

  /**
   * A frame from a member: relayed unchanged to the peer at once, then fed to their speech
   * engine. The relay never waits on speech. Mute is applied once for each listener: here for
   * the peer, and by the speech engine itself (`setMuted`), which hears nothing while muted yet
   * keeps the muted audio on the participant's clock, so later words keep their true times.
   */
  audioFrame(userId: string, frame: AudioFrame): void {
    const member = this.members.get(userId);
    if (member) this.memberFrame(member, frame);
  }

  /**
   * `audioFrame` for the frames of one audio call: the member is looked up once rather than per
   * frame, and again only once they have left (a rejoin makes a new member).
   */
  audioInput(userId: string): (frame: AudioFrame) => void {
    let member = this.members.get(userId);
    return (frame) => {
      if (!member || member.left) member = this.members.get(userId);
      if (member) this.memberFrame(member, frame);
    };
  }

  private memberFrame(member: Member, frame: AudioFrame): void {
    if (!member.muted) {
      const relayTo = member.relayTo;
      for (let i = 0; i < relayTo.length; i++) relayTo[i]!.push(frame, member.format);
      audioFrameCounts.relayed += relayTo.length;
    }
    if (member.speech && member.toSpeech) {
      member.speech.write(member.toSpeech(frame.pcm));
      // Where the audio stands on the member's clock, for the speech latency of the next final.
      if (this.stages.metrics?.speechFinal && member.format) {
        member.heardMs += pcmDurationMs(frame.pcm.byteLength, member.format.sampleRateHz);
        member.heardAtMs = performance.now();
      }
    }
  }

  /** Mute, unmute or flush from a member. */
  control(userId: string, action: AudioControl): void {
    const member = this.members.get(userId);
    if (!member) return;
    this.touch();
    if (action === AudioControl.FLUSH) {
      member.speech?.flush();
      return;
    }
    const muted = action === AudioControl.MUTE;
    if (member.muted === muted) return;
    member.muted = muted;
    member.speech?.setMuted(muted);
    this.broadcastStatus();
  }

  /** A transcript segment, from the server's engine or the member's device. */
  transcript(userId: string, speech: RecognisedSpeech, source: TranscriptSource): void {
    const member = this.members.get(userId);
    if (!member) return;
    this.touch();
    const id = member.partialId ?? `tr_${randomUUID()}`;
    member.partialId = speech.isFinal ? undefined : id;
    const entry = create(TranscriptEntrySchema, {
      id,
      speakerUserId: userId,
      text: speech.text,
      isFinal: speech.isFinal,
      startMs: Math.max(0, Math.round(speech.startMs)),
      endMs: Math.max(0, Math.round(speech.endMs)),
      words: speech.words,
      confidence: speech.confidence,
      source,
      receivedAtMs: BigInt(this.now()),
    });
    this.emit({ event: { case: "transcript", value: entry } });
    if (!speech.isFinal || speech.text.trim() === "") return;
    keep(member.transcript, entry);
    member.agent?.pushTranscript(entry, "self");
    for (const peer of this.members.values()) {
      if (peer === member) continue;
      keep(peer.transcript, entry);
      peer.agent?.pushTranscript(entry, "peer");
    }
    this.trigger.feed(entry);
  }

  /** Signs the room's contract as `userId`; runs payments once both have signed. */
  sign(userId: string, contractId: string, textSha256: string): Promise<Contract> {
    return this.serialContractWork(() => this.signNow(userId, contractId, textSha256));
  }

  /**
   * Declines the room's drafted contract as `userId` (a party) before both signed: it becomes
   * DECLINED with the reason, both see it, nothing is paid, and the room can trigger again. The
   * declined terms may be agreed again (nothing was paid for them), so the trigger drops the
   * "new terms after a contract" requirement this contract added.
   */
  decline(userId: string, contractId: string, reason: string): Promise<Contract> {
    return this.serialContractWork(async () => {
      this.touch();
      const contract = await this.stages.desk.decline(userId, contractId, reason, this.id);
      const isCurrent = this.contract?.id === contractId;
      if (isCurrent) this.contract = contract;
      const who = this.members.get(userId)?.profile.displayName ?? userId;
      this.emit({
        event: {
          case: "executionStep",
          value: create(ExecutionStepSchema, { contractId, step: "decline", userId, status: ExecutionStepStatus.FAILED, detail: `${who} declined: ${contract.declinedReason}` }),
        },
      });
      this.emit({ event: { case: "contract", value: contract } });
      if (isCurrent) {
        this.endDeal("declined");
        this.moveSessions("declined");
        this.trigger.dealUndone();
        if (this.members.size === MAX_PARTICIPANTS && !this.negotiation) this.trigger.arm();
      }
      this.broadcastStatus();
      return contract;
    });
  }

  /**
   * The person's answer to their agent's approval request. Only the addressed member may
   * answer, once; an unknown id is NotFoundError.
   */
  answerApproval(userId: string, approvalId: string, approve: boolean): ApprovalRequest {
    this.touch();
    return this.approvals.answer(userId, approvalId, approve);
  }

  private serialContractWork<T>(work: () => Promise<T>): Promise<T> {
    const run = this.contractWork.then(work, work);
    this.contractWork = run.catch(() => undefined);
    return run;
  }

  private async signNow(userId: string, contractId: string, textSha256: string): Promise<Contract> {
    this.touch();
    // A child of the deal, linked to the SignContract call that carried it.
    const span = startStage("contract.signature", { parent: this.dealSpan, linkActive: true });
    const signing = await this.stages.desk.sign(userId, contractId, textSha256, this.id).then(
      (signed) => {
        span.set({ "handshake.contract.fully_signed": signed.fullySigned });
        span.end();
        return signed;
      },
      (err: unknown) => {
        span.end(err);
        throw err;
      },
    );
    const { contract, fullySigned } = signing;
    this.contract = contract;
    const signer = this.members.get(userId)?.profile.displayName ?? userId;
    this.emit({
      event: {
        case: "executionStep",
        value: create(ExecutionStepSchema, { contractId, step: "signature", userId, status: ExecutionStepStatus.SUCCEEDED, detail: `${signer} signed` }),
      },
    });
    this.emit({ event: { case: "contract", value: contract } });
    if (fullySigned) this.startExecution(contract);
    return contract;
  }

  /** Publishes an event from outside the room's own stages (payments, milestones). */
  publish(init: PanelEventInit): void {
    if (init.event.case === "contract") {
      if (this.contract?.id === init.event.value.id) this.contract = init.event.value;
    }
    const parties = this.earlierPairContracts.get(contractIdOf(init) ?? "");
    if (parties && !init.visibleToUserId) {
      for (const userId of parties) if (this.members.has(userId)) this.emit({ ...init, visibleToUserId: userId });
      return;
    }
    this.emit(init);
  }

  /** The id of the negotiation the restored log left open, while none runs here; undefined otherwise. */
  openRestoredNegotiationId(): string | undefined {
    if (this.negotiation) return undefined;
    if (this.lastNegotiation?.status === NegotiationStatus.OPEN) return this.lastNegotiation.id;
    const running = this.restoredActiveNegotiationId;
    return running !== "" && running !== this.lastNegotiation?.id ? running : undefined;
  }

  /**
   * Goes on with a negotiation an earlier life of this room left open (`stored`, as saved after
   * its last round), once its pair is back: the same rounds, turn and clocks, and the agent whose
   * move it is asked for it again. A negotiation whose time ran out meanwhile expires at once.
   */
  resumeNegotiation(stored: Negotiation): void {
    if (this.negotiation || stored.status !== NegotiationStatus.OPEN || this.members.size < MAX_PARTICIPANTS) return;
    const [a, b] = [...this.members.keys()] as [string, string];
    if (![a, b].includes(stored.initiatorUserId)) return;
    this.trigger.disarm();
    this.lastNegotiation = stored;
    this.negotiation = this.stages.createNegotiation({
      id: stored.id,
      roomId: this.id,
      initiatorUserId: stored.initiatorUserId,
      participants: [a, b],
      restored: stored,
      onChange: (negotiation, transition) => this.guard("negotiation", () => this.onNegotiationChange(negotiation, transition)),
    });
    this.moveSessions("triggered");
    this.broadcastStatus();
    this.log.info({ negotiationId: stored.id, rounds: stored.rounds.length }, "negotiation resumed");
    const snapshot = this.negotiation.snapshot();
    const onTable = snapshot.currentProposal;
    if (onTable) {
      for (const member of this.members.values()) if (member.userId !== onTable.proposedByUserId) member.agent?.onPeerMove(snapshot);
      return;
    }
    const initiator = this.members.get(stored.initiatorUserId);
    if (initiator?.agent && this.restoredTrigger) initiator.agent.startNegotiation(this.restoredTrigger, [...initiator.transcript]);
  }

  /**
   * Runs again the payments of the room's contract that an earlier life of the room left
   * executing (its node died mid-way): execution is idempotent, so what was paid stays paid once.
   */
  resumeExecution(contract: Contract): void {
    if (this.contract?.id !== contract.id || contract.status !== ContractStatus.EXECUTING) return;
    this.contract = contract;
    this.startExecution(contract);
  }

  private saveNegotiation(negotiation: Negotiation): void {
    const save = this.stages.saveNegotiation;
    if (!save) return;
    this.negotiationSaves = this.negotiationSaves
      .then(() => save(negotiation))
      .catch((err: unknown) => this.log.error({ err, negotiationId: negotiation.id }, "negotiation not stored"));
  }

  /** Marks sessions completed after a contract's immediate payments and holds ran. */
  contractExecuted(contractId: string): void {
    if (this.contract?.id !== contractId) return;
    this.moveSessions("executed");
    this.trigger.arm();
    this.broadcastStatus();
  }

  /** Stops everything; safe to call twice. */
  async destroy(reason?: Error): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.negotiationSpan?.end();
    this.endDeal("room_closed");
    this.negotiation?.close();
    this.approvals.expire();
    this.trigger.close();
    const members = [...this.members.values()];
    this.members.clear();
    for (const member of members) member.left = true;
    await Promise.allSettled(members.map((m) => this.stopMember(m)));
    this.events.close(reason);
  }

  private pair(): void {
    const [a, b] = [...this.members.values()];
    if (!a || !b) return;
    for (const [self, peer] of [
      [a, b],
      [b, a],
    ] as const) {
      self.agent = this.stages.agentFactory({
        roomId: this.id,
        userId: self.userId,
        profile: () => self.profile,
        peer: {
          userId: peer.userId,
          displayName: peer.profile.displayName,
          role: peer.profile.role,
          trade: peer.profile.trade,
          currency: peer.profile.currency,
        },
        negotiation: () => this.negotiation,
        notifyUser: (message) => this.toUser(self.userId, message),
        requestApproval: (ask) => {
          // Only for the negotiation that is open now; anything else has already ended.
          if (this.negotiation?.id !== ask.negotiationId || this.negotiation.state() !== "open") return Promise.resolve("expired");
          return this.approvals.ask(self.userId, ask);
        },
        ...(this.bankOf(self.profile) ? { bank: this.bankOf(self.profile)! } : {}),
        log: this.log.child({ userId: self.userId, stage: "agent" }),
      });
      for (const entry of self.transcript) self.agent.pushTranscript(entry, entry.speakerUserId === self.userId ? "self" : "peer");
      this.startSpeech(self);
    }
    this.moveSessions("paired");
    if (!this.negotiation) this.trigger.arm();
  }

  private unpair(): void {
    this.trigger.disarm();
    if (this.negotiation) {
      this.negotiation.close();
      this.lastNegotiation = this.negotiation.snapshot();
      this.negotiation = undefined;
      this.negotiationSpan?.end();
      this.endDeal("unpaired");
    }
    // Nobody is left to negotiate with: what the agents were waiting on has expired.
    this.approvals.expire();
    for (const member of this.members.values()) {
      const agent = member.agent;
      member.agent = undefined;
      void agent?.stop();
      member.session = "discovering";
    }
  }

  private bankOf(profile: AgentProfile): BankAccount | undefined {
    return this.stages.bankFor(profile);
  }

  private startSpeech(member: Member): void {
    if (member.speech || !this.stages.speechFactory) return;
    // A new engine hears from now on: its clock starts at zero.
    member.heardMs = 0;
    member.heardAtMs = 0;
    try {
      member.speech = this.stages.speechFactory(
        { roomId: this.id, userId: member.userId },
        {
          onPartial: (speech) => this.guard("speech", () => this.transcript(member.userId, speech, TranscriptSource.SERVER)),
          onFinal: (speech) => {
            this.observeSpeechFinal(member, speech);
            this.guard("speech", () => this.transcript(member.userId, speech, TranscriptSource.SERVER));
          },
          onError: (error) => {
            this.stages.metrics?.speechError?.(member.speech?.name ?? "unknown", error.code);
            this.emit(panelError("speech", error.code, error.message, error.retryable));
          },
        },
      );
    } catch (err) {
      this.log.warn({ err, userId: member.userId }, "speech engine unavailable");
      this.emit(panelError("speech", "speech_unavailable", (err as Error).message, false));
    }
  }

  /**
   * End of utterance → final: the time since the audio at the final's end arrived, which is the
   * time since the latest frame plus the audio heard after the utterance ended.
   */
  private observeSpeechFinal(member: Member, speech: RecognisedSpeech): void {
    const record = this.stages.metrics?.speechFinal;
    if (!record || !member.speech || member.heardAtMs === 0) return;
    const latencyMs = performance.now() - member.heardAtMs + (member.heardMs - speech.endMs);
    // A final whose end lies outside the audio this engine heard (a clock it does not share) says nothing.
    if (latencyMs >= 0 && speech.endMs <= member.heardMs) record(member.speech.name, latencyMs / 1000);
  }

  private async stopMember(member: Member): Promise<void> {
    member.sinks.clear();
    this.refreshRelays();
    const work: Promise<void>[] = [];
    if (member.agent) work.push(member.agent.stop());
    if (member.speech) work.push(member.speech.stop());
    member.agent = undefined;
    member.speech = undefined;
    await Promise.allSettled(work);
  }

  private onTrigger(event: TriggerEvent): void {
    if (this.negotiation || this.members.size < MAX_PARTICIPANTS) return;
    const initiator = this.members.get(event.speakerUserId);
    if (!initiator?.agent) return;
    this.trigger.disarm();
    this.triggeredAtMs = performance.now();
    // A new trace per deal, linked to the call whose words triggered it: the one being served (a
    // transcript sent from the device), else the audio stream the speech engine heard them on.
    this.endDeal("superseded");
    this.dealSpan = startStage("deal", { root: true, links: [activeLink() ?? initiator.audioCallLink], attributes: { "handshake.trigger.kind": TriggerKind[event.kind] ?? "unknown" } });
    this.negotiationSpan = startStage("negotiation", { parent: this.dealSpan });
    this.emit({ event: { case: "trigger", value: event } });
    const [a, b] = [...this.members.keys()] as [string, string];
    this.negotiation = this.stages.createNegotiation({
      id: `neg_${randomUUID()}`,
      roomId: this.id,
      initiatorUserId: initiator.userId,
      participants: [a, b],
      onChange: (negotiation, transition) => this.guard("negotiation", () => this.onNegotiationChange(negotiation, transition)),
    });
    // Stored before its first round: an agent may wait on its person before it offers anything.
    this.saveNegotiation(this.negotiation.snapshot());
    this.moveSessions("triggered");
    this.broadcastStatus();
    initiator.agent.startNegotiation(event, [...initiator.transcript]);
  }

  /**
   * A rebuilt room (after a restart) gets its conversation back from its log without emitting it
   * again: the final transcripts for the agents (given to each member who joins), the trigger's
   * view of what was priced and which agreements already became contracts, and the latest
   * negotiation and contract. The trigger is disarmed meanwhile, so nothing replayed fires.
   */
  private restoreConversation(events: readonly PanelEvent[]): void {
    const drafted = new Set<string>();
    const declined = new Set<string>();
    this.restoring = true;
    try {
      for (const e of events) {
        switch (e.event.case) {
          case "transcript": {
            const entry = e.event.value;
            if (!entry.isFinal || entry.text.trim() === "") break;
            keep(this.restoredConversation, entry);
            this.trigger.feed(entry);
            break;
          }
          case "negotiation":
            this.lastNegotiation = e.event.value;
            break;
          case "trigger":
            this.restoredTrigger = e.event.value;
            break;
          case "roomStatus":
            this.restoredActiveNegotiationId = e.event.value.activeNegotiationId;
            break;
          case "contract": {
            const contract = e.event.value;
            this.contract = contract;
            // Replayed in order, so the trigger's one-agreement boundaries fall where they fell.
            if (!drafted.has(contract.id)) {
              drafted.add(contract.id);
              this.trigger.dealMade();
            }
            if (contract.status === ContractStatus.DECLINED && !declined.has(contract.id)) {
              declined.add(contract.id);
              this.trigger.dealUndone();
            }
            break;
          }
          default:
            break;
        }
      }
    } finally {
      this.restoring = false;
    }
  }

  /**
   * A rebuilt room (after a restart) has no negotiation: requests its log still shows as pending
   * can no longer be answered, so they are shown as expired.
   */
  private expireRestoredApprovals(events: readonly PanelEvent[]): void {
    const latest = new Map<string, ApprovalRequest>();
    for (const e of events) if (e.event.case === "approvalRequest") latest.set(e.event.value.id, e.event.value);
    for (const request of latest.values()) {
      if (request.status !== ApprovalStatus.PENDING) continue;
      const expired = create(ApprovalRequestSchema, { ...request, status: ApprovalStatus.EXPIRED });
      this.emit({ visibleToUserId: request.userId, event: { case: "approvalRequest", value: expired } });
    }
  }

  /** Says on the panel why a keyword started nothing, when the people could not tell otherwise. */
  private onTriggerRefused(refusal: TriggerRefusal): void {
    if (refusal.code === "no_new_terms") {
      this.emit(
        panelError(
          "trigger",
          "no_new_terms",
          "Nothing new has been priced since the last contract, so no new negotiation was started. Say the new terms, then the keyword.",
          false,
        ),
      );
      return;
    }
    if (this.contract?.status === ContractStatus.AWAITING_SIGNATURES && !this.negotiation) {
      this.emit(
        panelError("trigger", "contract_pending", "A contract is waiting to be signed or declined; sign or decline it before starting another deal.", false),
      );
    }
  }

  private onNegotiationChange(negotiation: Negotiation, transition: NegotiationTransition | undefined): void {
    this.touch();
    this.emit({ event: { case: "negotiation", value: negotiation } });
    this.saveNegotiation(negotiation);
    const last = negotiation.rounds.at(-1);
    if (last) this.negotiationSpan?.event("round", { "handshake.round": negotiation.rounds.length, "handshake.round.action": RoundAction[last.action] ?? "unknown" });
    if (negotiation.status === NegotiationStatus.OPEN) {
      if (last && (last.action === RoundAction.PROPOSE || last.action === RoundAction.COUNTER)) {
        if (this.triggeredAtMs !== undefined) {
          this.stages.metrics?.triggerToProposal((performance.now() - this.triggeredAtMs) / 1000);
          this.triggeredAtMs = undefined;
        }
        for (const member of this.members.values()) {
          if (member.userId !== last.fromUserId) member.agent?.onPeerMove(negotiation);
        }
      }
      return;
    }
    if (!transition) return;
    const session = this.negotiation;
    this.negotiation = undefined;
    this.triggeredAtMs = undefined;
    this.lastNegotiation = negotiation;
    session?.close();
    // A negotiation that ended (expired, rejected, agreed) answers nothing more.
    this.approvals.expire(negotiation.id);
    const outcome = NegotiationStatus[negotiation.status]?.toLowerCase() ?? "unknown";
    this.negotiationSpan?.set({ "handshake.negotiation.outcome": outcome, "handshake.negotiation.rounds": negotiation.rounds.length });
    this.negotiationSpan?.end();
    this.negotiationSpan = undefined;
    this.stages.metrics?.negotiationEnded?.(outcome, negotiation.rounds.length, Math.max(0, this.now() - Number(negotiation.startedAtMs)) / 1000);
    if (negotiation.status !== NegotiationStatus.AGREED) this.endDeal(outcome);
    if (negotiation.status === NegotiationStatus.AGREED) {
      this.moveSessions("agreed");
      this.broadcastStatus();
      void this.draftContract(negotiation);
    } else {
      this.moveSessions("negotiation_ended");
      this.trigger.arm();
      this.broadcastStatus();
    }
  }

  private async draftContract(negotiation: Negotiation): Promise<void> {
    try {
      const profiles = new Map([...this.members.values()].map((m) => [m.userId, m.profile] as const));
      const conversation = mergeConversation([...this.members.values()].map((m) => m.transcript));
      const drafting = startStage("contract.draft", { parent: this.dealSpan, attributes: { "handshake.contract.line_items": negotiation.rounds.at(-1)?.proposal?.lineItems.length ?? 0 } });
      const contract = await drafting.run(() => this.stages.desk.draft({ roomId: this.id, negotiation, profiles, conversation })).then(
        (drafted) => {
          drafting.end();
          return drafted;
        },
        (err: unknown) => {
          drafting.end(err);
          throw err;
        },
      );
      if (this.destroyed) return;
      this.contract = contract;
      // One spoken agreement, one contract: the next trigger needs priced words said after this.
      this.trigger.dealMade();
      this.emit({ event: { case: "contract", value: contract } });
      this.broadcastStatus();
    } catch (err) {
      this.log.error({ err }, "contract drafting failed");
      this.endDeal("draft_failed");
      this.emit(panelError("contract", "draft_failed", "The contract could not be drafted.", false));
      this.moveSessions("negotiation_ended");
      this.trigger.arm();
      this.broadcastStatus();
    }
  }

  private startExecution(contract: Contract): void {
    if (this.executing.has(contract.id)) return;
    this.executing.add(contract.id);
    // Rail calls inside are its children; the deal's trace ends with its payments.
    const execution = startStage("payment.execution", { parent: this.dealSpan, linkActive: true });
    execution
      .run(() => this.stages.executeContract(contract))
      .then(
        () => {
          execution.end();
          this.endDeal("executed");
        },
        (err: unknown) => {
          execution.end(err);
          this.endDeal("execution_failed");
          this.log.error({ err, contractId: contract.id }, "contract execution failed");
          this.emit(panelError("payment", "execution_failed", "Payments could not be completed; they will be retried.", true));
        },
      )
      .finally(() => this.executing.delete(contract.id));
  }

  /** Ends the deal's trace with how it ended (a fixed word); safe when there is none. */
  private endDeal(outcome: string): void {
    this.dealSpan?.set({ "handshake.deal.outcome": outcome });
    this.dealSpan?.end();
    this.dealSpan = undefined;
  }

  private moveSessions(event: SessionEvent): void {
    for (const member of this.members.values()) {
      try {
        const transition = transitionSession(member.session, event, this.now());
        if (transition) member.session = transition.to;
      } catch (err) {
        this.log.warn({ err, userId: member.userId, event }, "session move refused");
      }
    }
  }

  private toUser(userId: string, message: AgentMessage): void {
    this.emit({ visibleToUserId: userId, event: { case: "agentMessage", value: create(AgentMessageSchema, { ...message, userId }) } });
  }

  private broadcastStatus(): void {
    this.emit({ event: { case: "roomStatus", value: this.status() } });
  }

  private emit(init: PanelEventInit): void {
    if (this.destroyed) return;
    try {
      this.events.append(init);
    } catch (err) {
      // The log stores an event before anyone sees it; one it could not store is shown to nobody.
      // Stages emit from timers and engine callbacks, so this must not throw into them.
      this.log.error({ err, event: init.event.case }, "room event not stored");
    }
  }

  private touch(): void {
    this.lastActivityMs = this.now();
  }

  /** Contains a stage's failure to this room: logged and shown, never thrown into another room. */
  private guard(stage: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err, stage }, "room stage failed");
      this.emit(panelError(stage, "internal", `The ${stage} stage failed.`, false));
    }
  }
}

function keep(list: TranscriptEntry[], entry: TranscriptEntry): void {
  list.push(entry);
  if (list.length > TRANSCRIPT_KEEP) list.splice(0, list.length - TRANSCRIPT_KEEP);
}

function mergeConversation(lists: TranscriptEntry[][]): TranscriptEntry[] {
  const byId = new Map<string, TranscriptEntry>();
  for (const list of lists) for (const e of list) byId.set(e.id, e);
  return [...byId.values()].sort((x, y) => Number(x.receivedAtMs - y.receivedAtMs));
}

/** The contract a published money event is about, if any. */
function contractIdOf(init: PanelEventInit): string | undefined {
  const e = init.event;
  switch (e.case) {
    case "contract":
      return e.value.id;
    case "payment":
    case "escrowHold":
    case "milestone":
    case "executionStep":
      return e.value.contractId;
    default:
      return undefined;
  }
}
