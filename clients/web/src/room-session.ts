import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { roomRouting } from "../../shared/room-routing.js";
import { AudioControl, AudioEncoding, AudioFormatSchema, DeviceTranscriptSchema, type AudioFormat, type AudioFrame } from "../../../gen/handshake/v1/audio_pb.js";
import { ContractService } from "../../../gen/handshake/v1/contract_service_pb.js";
import type { Contract } from "../../../gen/handshake/v1/deal_pb.js";
import type { ApprovalRequest, PanelEvent } from "../../../gen/handshake/v1/events_pb.js";
import type { AgentProfile } from "../../../gen/handshake/v1/profile_pb.js";
import { RoomService, type JoinRoomResponse } from "../../../gen/handshake/v1/room_service_pb.js";

/*
 * The browser's side of a room, free of DOM: Connect over HTTP/1.1 (fetch), the panel followed
 * with resume from the last seq, audio up in numbered batches through SendAudio, the peer's audio
 * down through ReceiveAudio, and signing over a hash computed here.
 */

/** Where the page talks to; "" (same origin) by default. */
export interface Endpoint {
  baseUrl: string;
}

/** Lower-case hex SHA-256 of a text as UTF-8, with the browser's Web Crypto. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** ContractService with a user token: saved contracts and milestone actions outside a room. */
export function contractClient(endpoint: Endpoint, token: () => string): Client<typeof ContractService> {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token()}`);
    return next(req);
  };
  return createClient(ContractService, createConnectTransport({ baseUrl: endpoint.baseUrl || location.origin, useBinaryFormat: true, interceptors: [auth] }));
}

/** Connection state of the panel stream, for the page to show. */
export type LinkState = { state: "connecting" } | { state: "live" } | { state: "reconnecting"; reason: string; inMs: number } | { state: "closed" };

/** What a room session tells the page. */
export interface RoomSessionHandlers {
  onEvent(event: PanelEvent): void;
  onLink(state: LinkState): void;
  onPeerFormat?(format: AudioFormat): void;
  onPeerFrame?(frame: AudioFrame): void;
}

/** Frames sent per SendAudio call (the server takes up to 50). */
const FRAMES_PER_SEND = 5;
/** Frames kept while the network is slow; older ones are dropped (5 s of 20 ms frames). */
const MAX_QUEUED_FRAMES = 250;

/** Codes after which only a new JoinRoom helps. */
const REJOIN_CODES = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.NotFound]);

/** One browser participant in one room. */
export class RoomSession {
  readonly room: Client<typeof RoomService>;
  readonly contracts: Client<typeof ContractService>;
  userId = "";
  /** The room's code; empty until the server picks one when the page asked for a new room. */
  roomId: string;
  userToken: string;
  sessionToken = "";
  /** Highest seq seen; the panel resumes after it. */
  lastSeq = 0n;
  /** Frames of the peer's audio received. */
  peerFrames = 0;
  /** Frames the server accepted from us. */
  framesSent = 0;

  private readonly lifetime = new AbortController();
  private readonly queue: { seq: bigint; pcm: Uint8Array; capturedAtUs: bigint }[] = [];
  private nextFrameSeq = 0n;
  private formatSent = false;
  private sending: Promise<void> | undefined;
  private readonly inviteCode: string;

  constructor(
    endpoint: Endpoint,
    roomId: string,
    private profile: AgentProfile,
    private readonly handlers: RoomSessionHandlers,
    options: { userToken?: string; inviteCode?: string } = {},
  ) {
    this.roomId = roomId;
    this.userToken = options.userToken ?? "";
    this.inviteCode = options.inviteCode ?? "";
    const auth: Interceptor = (next) => (req) => {
      const token = req.service.typeName === ContractService.typeName ? this.userToken : this.sessionToken;
      if (token) req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };
    // The room header keeps this room's calls on its node behind a router.
    const transport = createConnectTransport({ baseUrl: endpoint.baseUrl || location.origin, useBinaryFormat: true, interceptors: [auth, roomRouting(() => this.roomId)] });
    this.room = createClient(RoomService, transport);
    this.contracts = createClient(ContractService, transport);
  }

  /** Joins, then follows the panel and the peer's audio until `close`. */
  async join(): Promise<JoinRoomResponse> {
    const joined = await this.joinOnce();
    void this.followPanel();
    void this.followPeerAudio();
    return joined;
  }

  /** The profile this room's agent works from, as last set. */
  get currentProfile(): AgentProfile {
    return this.profile;
  }

  /** Replaces the profile for this room's agent. */
  async setProfile(profile: AgentProfile): Promise<void> {
    await this.room.setProfile({ profile });
    this.profile = profile;
  }

  /** Sends a line as a final transcript recognised on this device. */
  async say(text: string): Promise<void> {
    await this.room.sendAudio({ transcript: create(DeviceTranscriptSchema, { text, isFinal: true }) });
  }

  /** Mutes or unmutes this participant's audio on the server. */
  async setMuted(muted: boolean): Promise<void> {
    await this.room.sendAudio({ control: muted ? AudioControl.MUTE : AudioControl.UNMUTE });
  }

  /**
   * Queues one 20 ms frame of 16 kHz PCM16 mono; frames go up in numbered batches, one call at
   * a time, so a retry after a failure repeats seqs the server then drops as duplicates.
   */
  pushFrame(samples: Int16Array): void {
    const pcm = new Uint8Array(samples.buffer.slice(samples.byteOffset, samples.byteOffset + samples.byteLength));
    this.queue.push({ seq: this.nextFrameSeq++, pcm, capturedAtUs: BigInt(Date.now()) * 1000n });
    if (this.queue.length > MAX_QUEUED_FRAMES) this.queue.splice(0, this.queue.length - MAX_QUEUED_FRAMES);
    if (this.queue.length >= FRAMES_PER_SEND) this.sending ??= this.drain().finally(() => (this.sending = undefined));
  }

  /** Commits the current utterance (end of turn). */
  async flush(): Promise<void> {
    await this.room.sendAudio({ control: AudioControl.FLUSH });
  }

  /** Signs a contract over the hash of the text this page shows. */
  async sign(contract: Contract): Promise<Contract> {
    const hash = await sha256Hex(contract.text);
    if (hash !== contract.textSha256) throw new Error("the contract text does not match its hash; not signing");
    const res = await this.room.signContract({ contractId: contract.id, textSha256: hash });
    if (!res.contract) throw new Error("the server returned no contract");
    return res.contract;
  }

  /** Answers an approval request from this person's agent (terms above their max auto-approve). */
  async answerApproval(approvalId: string, approve: boolean): Promise<ApprovalRequest> {
    const res = await this.room.answerApproval({ approvalId, approve });
    if (!res.approval) throw new Error("the server returned no approval");
    return res.approval;
  }

  /** Declines a drafted contract with a reason the other party sees, instead of signing it. */
  async declineContract(contract: Contract, reason: string): Promise<Contract> {
    const res = await this.room.declineContract({ contractId: contract.id, reason });
    if (!res.contract) throw new Error("the server returned no contract");
    return res.contract;
  }

  /** Stops every stream, then leaves the room. */
  async leave(): Promise<void> {
    // Streams first, so the room closing behind us is not taken for a connection to resume.
    this.close();
    await this.room.leaveRoom({ roomId: this.roomId });
  }

  /** Stops every stream. Safe twice. */
  close(): void {
    if (this.lifetime.signal.aborted) return;
    this.lifetime.abort();
    this.handlers.onLink({ state: "closed" });
  }

  private async joinOnce(): Promise<JoinRoomResponse> {
    const joined = await this.room.joinRoom({ roomId: this.roomId, profile: this.profile, userToken: this.userToken, inviteCode: this.inviteCode });
    this.userId = joined.userId;
    // An empty room id asked the server for a new room; later calls and rejoins use its code.
    if (this.roomId === "" && joined.room?.roomId) this.roomId = joined.room.roomId;
    this.userToken = joined.userToken;
    this.sessionToken = joined.sessionToken;
    this.formatSent = false;
    return joined;
  }

  private async drain(): Promise<void> {
    while (this.queue.length >= 1 && !this.lifetime.signal.aborted) {
      const batch = this.queue.slice(0, FRAMES_PER_SEND);
      try {
        const res = await this.room.sendAudio({
          ...(this.formatSent ? {} : { format: create(AudioFormatSchema, { encoding: AudioEncoding.PCM16LE, sampleRateHz: 16_000, channels: 1 }) }),
          frames: batch,
        });
        this.formatSent = true;
        this.framesSent += res.framesAccepted;
        this.queue.splice(0, batch.length);
      } catch (err) {
        // Keep the frames and let the next pushFrame try again; the queue is bounded.
        if (ConnectError.from(err).code === Code.InvalidArgument) this.formatSent = false;
        return;
      }
      if (this.queue.length < FRAMES_PER_SEND) return;
    }
  }

  private async followPanel(): Promise<void> {
    const signal = this.lifetime.signal;
    let delay = 250;
    while (!signal.aborted) {
      let reason = "the stream ended";
      this.handlers.onLink({ state: "connecting" });
      try {
        for await (const res of this.room.panelStream({ roomId: this.roomId, afterSeq: this.lastSeq }, { signal })) {
          if (delay !== 250) delay = 250;
          this.handlers.onLink({ state: "live" });
          const event = res.event;
          if (!event || event.seq <= this.lastSeq) continue;
          this.lastSeq = event.seq;
          this.handlers.onEvent(event);
        }
      } catch (err) {
        if (signal.aborted) return;
        const error = ConnectError.from(err);
        reason = error.rawMessage || Code[error.code] || "error";
        if (REJOIN_CODES.has(error.code)) {
          try {
            await this.joinOnce();
            continue;
          } catch (joinErr) {
            reason = `rejoin failed: ${ConnectError.from(joinErr).rawMessage}`;
          }
        }
      }
      if (signal.aborted) return;
      this.handlers.onLink({ state: "reconnecting", reason, inMs: delay });
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(5_000, delay * 2);
    }
  }

  private async followPeerAudio(): Promise<void> {
    const signal = this.lifetime.signal;
    let delay = 500;
    while (!signal.aborted) {
      try {
        for await (const res of this.room.receiveAudio({ roomId: this.roomId }, { signal })) {
          delay = 500;
          if (res.message.case === "peerFormat") this.handlers.onPeerFormat?.(res.message.value);
          else if (res.message.case === "peerFrame") {
            this.peerFrames++;
            this.handlers.onPeerFrame?.(res.message.value);
          }
        }
      } catch {
        if (signal.aborted) return;
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(10_000, delay * 2);
    }
  }
}
