import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { roomRouting } from "../shared/room-routing.js";
import { AudioControl, AudioEncoding, AudioFormatSchema, DeviceTranscriptSchema } from "../../gen/handshake/v1/audio_pb.js";
import { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import {
  ContractStatus,
  EscrowHoldStatus,
  LineItemKind,
  NegotiationStatus,
  PaymentStatus,
  type Contract,
  type EscrowHold,
  type Milestone,
  type Payment,
} from "../../gen/handshake/v1/deal_pb.js";
import { ApprovalStatus, type ApprovalRequest, type PanelEvent, type RoomStatus } from "../../gen/handshake/v1/events_pb.js";
import { PartyRole, type AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import { AudioStreamRequestSchema, RoomService, type JoinRoomResponse } from "../../gen/handshake/v1/room_service_pb.js";
import type { DialogueLine, Speaker } from "./dialogue.js";
import { pcm16Bytes } from "../shared/wav.js";
import { FRAME_MS, STREAM_RATE_HZ, readPcm16Wav, splitFrames, toMono } from "./wav.js";

/*
 * A native participant: joins a room over gRPC (HTTP/2), follows the room's panel with resume,
 * speaks through AudioStream (PCM frames or on-device transcripts), signs contracts over the text
 * it hashed itself, and tells when the deal is done.
 */

/** How a participant is set up. */
export interface ParticipantOptions {
  /** Server base URL, e.g. "http://127.0.0.1:8080". */
  serverUrl: string;
  roomId: string;
  profile: AgentProfile;
  /** User token from an earlier join, to come back as the same user. */
  userToken?: string;
  inviteCode?: string;
  /** Sign each contract as soon as it arrives, after checking its hash. */
  autoSign?: boolean;
  /**
   * Answer the agent's approval requests (terms above the max auto-approve) at once: "approve"
   * or "decline". Unset: they wait for `answerApproval` (the CLI asks on the terminal).
   */
  autoApproval?: "approve" | "decline";
  /** Every room event, in seq order, after the participant has taken it in. */
  onEvent?: (event: PanelEvent, participant: Participant) => void;
  /** What the participant did or noticed itself: reconnects, signatures, failures. */
  onNotice?: (message: string, participant: Participant) => void;
  /** Wait between panel reconnects: doubles from min to max. */
  reconnectDelayMs?: { min: number; max: number };
}

/** Thrown when a deal cannot complete: a negotiation ended without agreement, a payment failed. */
export class DealFailedError extends Error {
  override readonly name = "DealFailedError";
}

/** Thrown when a contract's text does not hash to the hash the server sent with it. */
export class ContractTextMismatchError extends Error {
  override readonly name = "ContractTextMismatchError";
}

/** Thrown by waits when the participant is closed or the caller's signal aborts. */
export class ParticipantClosedError extends Error {
  override readonly name = "ParticipantClosedError";
}

/** A finished deal: the contract as last seen, and its payments, holds and milestones. */
export interface DealOutcome {
  contract: Contract;
  payments: Payment[];
  holds: EscrowHold[];
  milestones: Milestone[];
}

/** Where a room's deal stands, judged from the panel events seen so far. */
export type DealProgress =
  | { state: "pending" }
  | { state: "complete"; outcome: DealOutcome }
  | { state: "failed"; reason: string };

/** Lower-case hex SHA-256 of a contract text as UTF-8: what a signer signs. */
export function contractTextHash(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/**
 * Judges the room's latest deal from panel events: complete when its contract is ACTIVE or
 * COMPLETED and every immediate item's payment succeeded and every escrow or conditional item's
 * hold was placed; failed on a failed payment, a contract that could not be drafted, or (when
 * `negotiationEndFails`) a negotiation that ended without agreement or a declined contract.
 */
export function dealProgress(events: readonly PanelEvent[], negotiationEndFails = true): DealProgress {
  let contract: Contract | undefined;
  let failure: string | undefined;
  const payments = new Map<string, Payment>();
  const holds = new Map<string, EscrowHold>();
  const milestones = new Map<string, Milestone>();
  for (const { event } of events) {
    switch (event.case) {
      case "negotiation":
        if (event.value.status === NegotiationStatus.OPEN) failure = undefined;
        else if (negotiationEndFails && (event.value.status === NegotiationStatus.REJECTED || event.value.status === NegotiationStatus.EXPIRED)) {
          failure = `negotiation ${event.value.status === NegotiationStatus.REJECTED ? "rejected" : "expired"}${event.value.endReason ? `: ${event.value.endReason}` : ""}`;
        }
        break;
      case "contract":
        if (contract?.id !== event.value.id) {
          payments.clear();
          holds.clear();
          milestones.clear();
        }
        contract = event.value;
        for (const p of contract.payments) payments.set(p.id, p);
        for (const h of contract.holds) holds.set(h.id, h);
        for (const m of contract.milestones) milestones.set(m.id, m);
        break;
      case "payment":
        if (event.value.contractId === contract?.id) payments.set(event.value.id, event.value);
        break;
      case "escrowHold":
        if (event.value.contractId === contract?.id) holds.set(event.value.id, event.value);
        break;
      case "milestone":
        if (event.value.contractId === contract?.id) milestones.set(event.value.id, event.value);
        break;
      case "error":
        if (event.value.stage === "contract" && !event.value.retryable) failure = `contract: ${event.value.message}`;
        break;
      default:
        break;
    }
  }
  if (contract?.status === ContractStatus.DECLINED && negotiationEndFails) {
    return { state: "failed", reason: `contract declined${contract.declinedReason ? `: ${contract.declinedReason}` : ""}` };
  }
  if (contract?.status === ContractStatus.PAYMENT_FAILED) {
    const failed = [...payments.values()].find((p) => p.status === PaymentStatus.FAILED);
    return { state: "failed", reason: `payment failed${failed?.failureReason ? `: ${failed.failureReason}` : ""}` };
  }
  if (failure && (!contract || contract.status === ContractStatus.AWAITING_SIGNATURES)) return { state: "failed", reason: failure };
  if (!contract || (contract.status !== ContractStatus.ACTIVE && contract.status !== ContractStatus.COMPLETED)) return { state: "pending" };
  const items = contract.terms?.lineItems ?? [];
  const paid = (lineItemId: string) =>
    [...payments.values()].some((p) => p.lineItemId === lineItemId && p.status === PaymentStatus.SUCCEEDED);
  const held = (lineItemId: string) =>
    [...holds.values()].some(
      (h) =>
        h.lineItemId === lineItemId &&
        (h.status === EscrowHoldStatus.HELD || h.status === EscrowHoldStatus.CAPTURED || h.status === EscrowHoldStatus.RELEASED),
    );
  const settled = items.every((item) => (item.kind === LineItemKind.IMMEDIATE ? paid(item.id) : held(item.id)));
  if (!settled) return { state: "pending" };
  return {
    state: "complete",
    outcome: { contract, payments: [...payments.values()], holds: [...holds.values()], milestones: [...milestones.values()] },
  };
}

/** A queue fed by `push`, ended by `end`, read by `take`: the request side of a bidi stream. */
class RequestQueue<T> {
  private readonly items: T[] = [];
  private waiting: ((item: T | undefined) => void) | undefined;
  private ended = false;

  push(item: T): void {
    if (this.ended) throw new ParticipantClosedError("the audio stream is closed");
    const waiting = this.waiting;
    if (waiting) {
      this.waiting = undefined;
      waiting(item);
    } else this.items.push(item);
  }

  end(): void {
    this.ended = true;
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.(undefined);
  }

  get closed(): boolean {
    return this.ended;
  }

  /** The next item, or undefined once ended and drained. */
  take(): Promise<T | undefined> {
    const item = this.items.shift();
    if (item !== undefined || this.ended) return Promise.resolve(item);
    return new Promise((resolve) => (this.waiting = resolve));
  }

  /** The queue as an async generator (connect-es calls `throw`/`return` on request iterators). */
  async *drain(): AsyncGenerator<T> {
    try {
      for (;;) {
        const item = await this.take();
        if (item === undefined) return;
        yield item;
      }
    } finally {
      this.ended = true;
    }
  }
}

type AudioRequest = MessageInitShape<typeof AudioStreamRequestSchema>;

/** Codes after which the session is gone and only a new JoinRoom helps. */
const REJOIN_CODES = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.NotFound]);

/** A participant in one room. Create with `createParticipant`, then `join()`. */
export class Participant {
  /** RoomService over gRPC, authenticated with the session token. */
  readonly room: Client<typeof RoomService>;
  /** ContractService over gRPC, authenticated with the user token. */
  readonly contracts: Client<typeof ContractService>;
  /** Every panel event seen, in seq order. */
  readonly history: PanelEvent[] = [];
  /** The highest seq seen: the resume point of the panel stream. */
  lastSeq = 0n;
  /** Frames of the peer's audio received on AudioStream. */
  peerFramesReceived = 0;
  userId = "";
  userToken: string;
  sessionToken = "";
  /** The room as last reported. */
  status: RoomStatus | undefined;

  private readonly names = new Map<string, string>();
  private readonly listeners = new Set<(event: PanelEvent) => void>();
  /** Waits re-check on every panel event and every peer audio frame (which has no event). */
  private readonly watchers = new Set<(event: PanelEvent | undefined) => void>();
  private readonly closers = new Set<(err: Error) => void>();
  private readonly signing = new Set<string>();
  private readonly lifetime = new AbortController();
  private panelTask: Promise<void> | undefined;
  private audio: { queue: RequestQueue<AudioRequest>; startedAtMs: number; task: Promise<void> } | undefined;
  private frameSeq = 0n;

  constructor(private readonly options: ParticipantOptions) {
    this.userToken = options.userToken ?? "";
    const auth: Interceptor = (next) => (req) => {
      const token = req.service.typeName === ContractService.typeName ? this.userToken || this.sessionToken : this.sessionToken;
      if (token) req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };
    // The room header (gRPC metadata) keeps this room's calls on its node behind a router.
    const transport = createGrpcTransport({ baseUrl: options.serverUrl, interceptors: [auth, roomRouting(() => options.roomId)] });
    this.room = createClient(RoomService, transport);
    this.contracts = createClient(ContractService, transport);
  }

  /** The room id. */
  get roomId(): string {
    return this.options.roomId;
  }

  /** The profile the participant joined with. */
  get profile(): AgentProfile {
    return this.options.profile;
  }

  /** The participant's side: "provider" or "client" from the profile, else undefined. */
  get speaker(): Speaker | undefined {
    const role = this.options.profile.role;
    return role === PartyRole.PROVIDER ? "provider" : role === PartyRole.CLIENT ? "client" : undefined;
  }

  /** Aborts when the participant is closed. */
  get signal(): AbortSignal {
    return this.lifetime.signal;
  }

  /** Joins the room and starts following its panel. */
  async join(): Promise<JoinRoomResponse> {
    const joined = await this.joinOnce();
    this.panelTask ??= this.followPanel();
    return joined;
  }

  /** A display name for a user id, from the room's participants and contracts. */
  nameOf(userId: string): string {
    return this.names.get(userId) ?? (userId === this.userId ? this.options.profile.displayName : userId);
  }

  /** Subscribes to room events as they arrive; returns the unsubscribe function. */
  subscribe(listener: (event: PanelEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Resolves with the first value `select` returns for an event, looking at events already seen
   * first (unless `pastToo` is false). Rejects when the participant closes or `signal` aborts.
   */
  waitFor<T>(select: (event: PanelEvent) => T | undefined, options: { signal?: AbortSignal; pastToo?: boolean } = {}): Promise<T> {
    if (options.pastToo !== false) {
      for (const event of this.history) {
        const found = select(event);
        if (found !== undefined) return Promise.resolve(found);
      }
    }
    return this.waitUntil((event) => (event ? select(event) : undefined), options.signal);
  }

  /** Resolves when `check` (run now, after each event, and after each peer audio frame) returns a value. */
  waitUntil<T>(check: (event: PanelEvent | undefined) => T | undefined, signal?: AbortSignal): Promise<T> {
    const now = check(undefined);
    if (now !== undefined) return Promise.resolve(now);
    return new Promise<T>((resolve, reject) => {
      const finish = () => {
        this.watchers.delete(watcher);
        this.closers.delete(onClose);
        signal?.removeEventListener("abort", onAbort);
      };
      const onClose = (err: Error) => {
        finish();
        reject(err);
      };
      const onAbort = () => onClose(new ParticipantClosedError(signal?.reason instanceof Error ? signal.reason.message : "aborted"));
      const watcher = (event: PanelEvent | undefined) => {
        let found: T | undefined;
        try {
          found = check(event);
        } catch (err) {
          onClose(err as Error);
          return;
        }
        if (found !== undefined) {
          finish();
          resolve(found);
        }
      };
      this.watchers.add(watcher);
      this.closers.add(onClose);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort, { once: true });
      if (this.lifetime.signal.aborted) onClose(new ParticipantClosedError("participant closed"));
    });
  }

  /** Final, non-empty transcripts seen from this participant ("self") or anyone else ("peer"), from seq `fromSeq` on. */
  finalTranscripts(who: "self" | "peer", fromSeq = 0n): number {
    let count = 0;
    for (const { seq, event } of this.history) {
      if (seq < fromSeq || event.case !== "transcript" || !event.value.isFinal || event.value.text.trim() === "") continue;
      if ((event.value.speakerUserId === this.userId) === (who === "self")) count++;
    }
    return count;
  }

  /** Says `text` as a final on-device transcript over AudioStream. */
  say(text: string): void {
    const audio = this.openAudio();
    const startMs = Math.max(0, Date.now() - audio.startedAtMs);
    // A rough speaking time keeps end_ms after start_ms; the server only orders by it.
    const endMs = startMs + 350 * Math.max(1, text.trim().split(/\s+/).length);
    audio.queue.push({
      message: { case: "transcript", value: create(DeviceTranscriptSchema, { text, isFinal: true, startMs, endMs }) },
    });
  }

  /**
   * Streams a WAV file as 20 ms frames of 16 kHz PCM16 over AudioStream, in real time unless
   * `realtime` is false, then asks the server to commit the utterance (FLUSH).
   */
  async streamWav(wav: Uint8Array, options: { realtime?: boolean; signal?: AbortSignal } = {}): Promise<number> {
    const pcm = pcm16Bytes(toMono(readPcm16Wav(wav), STREAM_RATE_HZ));
    const frames = splitFrames(pcm);
    const audio = this.openAudio();
    const signal = options.signal ? AbortSignal.any([options.signal, this.lifetime.signal]) : this.lifetime.signal;
    const started = performance.now();
    for (let i = 0; i < frames.length; i++) {
      if (options.realtime !== false) {
        const due = started + i * FRAME_MS - performance.now();
        if (due > 0) await sleep(due, undefined, { signal });
      }
      signal.throwIfAborted();
      audio.queue.push({
        message: { case: "frame", value: { seq: this.frameSeq++, pcm: frames[i], capturedAtUs: BigInt(Date.now()) * 1000n } },
      });
    }
    audio.queue.push({ message: { case: "control", value: AudioControl.FLUSH } });
    return frames.length;
  }

  /**
   * Plays this participant's part of a scripted dialogue: before each of its lines it waits
   * until the other side's earlier lines are on its panel, and after each line until its own
   * transcript is, so the conversation interleaves as written. With `audioFor`, a line with a
   * WAV is streamed as audio (the server's speech engine transcribes it) instead of sent as text.
   * Nothing is said until the other person is in the room, and only what was said since the two
   * of them were last paired counts, so it does not matter which side starts first.
   */
  async runDialogue(
    lines: readonly DialogueLine[],
    options: { as?: Speaker; signal?: AbortSignal; audioFor?: (line: DialogueLine, index: number) => Promise<Uint8Array | undefined> } = {},
  ): Promise<void> {
    const me = options.as ?? this.speaker;
    if (!me) throw new Error("the participant's role is not provider or client: pass `as`");
    const signal = options.signal ? AbortSignal.any([options.signal, this.lifetime.signal]) : this.lifetime.signal;
    let mine = 0;
    let theirs = 0;
    // Counting from when both got here (not from when this call began) keeps a line the peer said
    // while we were still starting up, and leaves out an earlier conversation in a resumed room.
    const since = await this.waitUntil(() => this.pairedSinceSeq(), signal);
    for (const [index, line] of lines.entries()) {
      if (line.speaker !== me) {
        theirs++;
        continue;
      }
      const peerNeeded = theirs;
      await this.waitUntil(() => (this.finalTranscripts("peer", since) >= peerNeeded ? true : undefined), signal);
      if (line.delayMs) await sleep(line.delayMs, undefined, { signal });
      const wav = options.audioFor ? await options.audioFor(line, index) : undefined;
      if (wav) await this.streamWav(wav, { signal });
      else this.say(line.text);
      mine++;
      const selfNeeded = mine;
      await this.waitUntil(() => (this.finalTranscripts("self", since) >= selfNeeded ? true : undefined), signal);
    }
  }

  /**
   * The seq of the room status that began the current pairing of this participant with another
   * (both listed, after a status that did not list both), or undefined while they are not both in.
   */
  private pairedSinceSeq(): bigint | undefined {
    let since: bigint | undefined;
    for (const { seq, event } of this.history) {
      if (event.case !== "roomStatus") continue;
      const { participants } = event.value;
      const both = participants.length === 2 && participants.some((p) => p.userId === this.userId);
      if (!both) since = undefined;
      else since ??= seq;
    }
    return since;
  }

  /** Signs a contract after checking that its text hashes to the hash it came with. */
  async sign(contract: Contract): Promise<Contract> {
    const hash = contractTextHash(contract.text);
    if (hash !== contract.textSha256) {
      throw new ContractTextMismatchError(`contract ${contract.id}: text hashes to ${hash}, not ${contract.textSha256}; not signing`);
    }
    const res = await this.room.signContract({ contractId: contract.id, textSha256: hash }, { signal: this.lifetime.signal });
    if (!res.contract) throw new Error("SignContract returned no contract");
    return res.contract;
  }

  /** Approval requests addressed to this participant that are still waiting, oldest first. */
  pendingApprovals(): ApprovalRequest[] {
    const latest = new Map<string, ApprovalRequest>();
    for (const e of this.history) if (e.event.case === "approvalRequest") latest.set(e.event.value.id, e.event.value);
    return [...latest.values()].filter((a) => a.status === ApprovalStatus.PENDING && a.userId === this.userId);
  }

  /** Answers an approval request the participant's agent raised; returns it with its outcome. */
  async answerApproval(approvalId: string, approve: boolean): Promise<ApprovalRequest> {
    const res = await this.room.answerApproval({ approvalId, approve }, { signal: this.lifetime.signal });
    if (!res.approval) throw new Error("AnswerApproval returned no approval");
    return res.approval;
  }

  /** The room's latest contract still awaiting signatures, if any. */
  openContract(): Contract | undefined {
    const last = [...this.history].reverse().find((e) => e.event.case === "contract");
    return last?.event.case === "contract" && last.event.value.status === ContractStatus.AWAITING_SIGNATURES ? last.event.value : undefined;
  }

  /** Declines a drafted contract with a reason (1–500 characters) instead of signing it. */
  async declineContract(contractId: string, reason: string): Promise<Contract> {
    const res = await this.room.declineContract({ contractId, reason }, { signal: this.lifetime.signal });
    if (!res.contract) throw new Error("DeclineContract returned no contract");
    return res.contract;
  }

  /** Where the room's deal stands now. */
  progress(negotiationEndFails = true): DealProgress {
    return dealProgress(this.history, negotiationEndFails);
  }

  /** Resolves when the deal completes; rejects with DealFailedError when it cannot. */
  waitForDeal(options: { signal?: AbortSignal; negotiationEndFails?: boolean } = {}): Promise<DealOutcome> {
    return this.waitUntil((): DealOutcome | undefined => {
      const progress = this.progress(options.negotiationEndFails ?? true);
      if (progress.state === "failed") throw new DealFailedError(progress.reason);
      return progress.state === "complete" ? progress.outcome : undefined;
    }, options.signal);
  }

  /** Closes the streams, then leaves the room (best effort). */
  async leave(): Promise<void> {
    // Streams first, so the room closing behind us is not taken for a connection to resume.
    await this.close();
    try {
      if (this.sessionToken) await this.room.leaveRoom({ roomId: this.roomId });
    } catch (err) {
      this.notice(`leaving failed: ${ConnectError.from(err).rawMessage}`);
    }
  }

  /** Stops the panel and audio streams; pending waits reject. Safe to call twice. */
  async close(): Promise<void> {
    if (!this.lifetime.signal.aborted) {
      this.audio?.queue.end();
      this.lifetime.abort(new ParticipantClosedError("participant closed"));
      for (const close of [...this.closers]) close(new ParticipantClosedError("participant closed"));
    }
    await Promise.allSettled([this.panelTask, this.audio?.task]);
  }

  private async joinOnce(): Promise<JoinRoomResponse> {
    const joined = await this.room.joinRoom(
      {
        roomId: this.options.roomId,
        profile: this.options.profile,
        userToken: this.userToken,
        inviteCode: this.options.inviteCode ?? "",
      },
      { signal: this.lifetime.signal },
    );
    this.userId = joined.userId;
    this.userToken = joined.userToken;
    this.sessionToken = joined.sessionToken;
    if (joined.room) this.takeStatus(joined.room);
    return joined;
  }

  /** Reads PanelStream forever, resuming after `lastSeq` whenever the stream breaks. */
  private async followPanel(): Promise<void> {
    const { min, max } = this.options.reconnectDelayMs ?? { min: 200, max: 5_000 };
    let delay = min;
    const signal = this.lifetime.signal;
    while (!signal.aborted) {
      let reason = "the stream ended";
      try {
        const stream = this.room.panelStream({ roomId: this.roomId, afterSeq: this.lastSeq }, { signal });
        for await (const res of stream) {
          delay = min;
          if (res.event) this.take(res.event);
        }
      } catch (err) {
        if (signal.aborted) return;
        const error = ConnectError.from(err);
        reason = `${Code[error.code] ?? error.code}: ${error.rawMessage}`;
        if (REJOIN_CODES.has(error.code)) {
          try {
            await this.joinOnce();
            this.notice(`rejoined room ${this.roomId} after ${reason}`);
            continue;
          } catch (joinErr) {
            reason = `rejoin failed: ${ConnectError.from(joinErr).rawMessage}`;
          }
        }
      }
      if (signal.aborted) return;
      this.notice(`panel stream interrupted (${reason}); resuming after seq ${this.lastSeq} in ${delay} ms`);
      try {
        await sleep(delay, undefined, { signal });
      } catch {
        return;
      }
      delay = Math.min(max, delay * 2);
    }
  }

  private take(event: PanelEvent): void {
    if (event.seq <= this.lastSeq) return; // a resumed stream may repeat what we saw
    this.lastSeq = event.seq;
    this.history.push(event);
    const e = event.event;
    if (e.case === "roomStatus") this.takeStatus(e.value);
    if (e.case === "contract") {
      for (const party of e.value.parties) if (party.displayName) this.names.set(party.userId, party.displayName);
      if (this.options.autoSign) this.autoSign(e.value);
    }
    if (e.case === "approvalRequest" && this.options.autoApproval) this.autoAnswer(e.value, this.options.autoApproval);
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (err) {
        this.notice(`event listener failed: ${(err as Error).message}`);
      }
    }
    this.options.onEvent?.(event, this);
    for (const watcher of [...this.watchers]) watcher(event);
  }

  private takeStatus(status: RoomStatus): void {
    this.status = status;
    for (const p of status.participants) this.names.set(p.userId, p.displayName);
  }

  private autoSign(contract: Contract): void {
    if (contract.status !== ContractStatus.AWAITING_SIGNATURES) return;
    if (contract.signatures.some((s) => s.userId === this.userId) || this.signing.has(contract.id)) return;
    if (!contract.parties.some((p) => p.userId === this.userId)) return;
    this.signing.add(contract.id);
    this.sign(contract).then(
      () => this.notice(`signed contract ${contract.id} (sha256 ${contract.textSha256})`),
      (err: unknown) => {
        if (this.lifetime.signal.aborted) return;
        this.notice(`signing contract ${contract.id} failed: ${err instanceof ConnectError ? err.rawMessage : (err as Error).message}`);
      },
    );
  }

  private autoAnswer(request: ApprovalRequest, answer: "approve" | "decline"): void {
    if (request.status !== ApprovalStatus.PENDING || request.userId !== this.userId) return;
    this.answerApproval(request.id, answer === "approve").then(
      () => this.notice(`${answer === "approve" ? "approved" : "declined"}: ${request.summary}`),
      (err: unknown) => {
        if (!this.lifetime.signal.aborted) this.notice(`answering approval ${request.id} failed: ${ConnectError.from(err).rawMessage}`);
      },
    );
  }

  /** Opens AudioStream on first use: the format header first, then whatever is pushed. */
  private openAudio(): NonNullable<Participant["audio"]> {
    if (this.audio && !this.audio.queue.closed) return this.audio;
    if (this.lifetime.signal.aborted) throw new ParticipantClosedError("participant closed");
    const queue = new RequestQueue<AudioRequest>();
    queue.push({
      message: {
        case: "format",
        value: create(AudioFormatSchema, { encoding: AudioEncoding.PCM16LE, sampleRateHz: STREAM_RATE_HZ, channels: 1 }),
      },
    });
    const responses = this.room.audioStream(queue.drain(), { signal: this.lifetime.signal });
    const task = (async () => {
      try {
        for await (const res of responses) {
          if (res.message.case !== "peerFrame") continue;
          this.peerFramesReceived++;
          for (const watcher of [...this.watchers]) watcher(undefined);
        }
      } catch (err) {
        if (!this.lifetime.signal.aborted) this.notice(`audio stream ended: ${ConnectError.from(err).rawMessage}`);
      } finally {
        queue.end();
      }
    })();
    this.audio = { queue, startedAtMs: Date.now(), task };
    return this.audio;
  }

  private notice(message: string): void {
    this.options.onNotice?.(message, this);
  }
}

/** Creates a participant; nothing happens on the network until `join()`. */
export function createParticipant(options: ParticipantOptions): Participant {
  return new Participant(options);
}
