import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { AudioStreamResponseSchema, RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { TranscriptSource } from "../../gen/handshake/v1/transcript_pb.js";
import { InvalidArgumentError, UnauthenticatedError } from "../core/errors.js";
import { PEER_AUDIO_QUEUE_FRAMES, QueuedAudioSink } from "./audio-sink.js";
import { applyAudioMessage } from "./audio-messages.js";
import { createBrowserAudio } from "./browser-audio.js";
import type { CallScopes, MemberScope, SessionScope } from "./call-scope.js";
import { rawStreamKey } from "./raw-stream.js";
import { peerAddressKey } from "./connection-guard.js";
import type { ServerDeps } from "./deps.js";
import { checkContractId, checkControl, checkInviteCode, checkKeyword, checkProfile, checkRoomId, newRoomId, withServerStripeIds } from "./validate.js";

/** The header naming a call's room, which a router routes by (clients/shared/room-routing.ts sends it). */
const ROOM_HEADER = "handshake-room";

/** Frames per SendAudio call. */
const MAX_FRAMES_PER_SEND = 50;

/**
 * Streams end quietly when their context aborts; a deadline or a shutdown must still reach the
 * client as its status (a client's own cancel needs none).
 */
function throwIfEndedByServer(signal: AbortSignal): void {
  if (!signal.aborted) return;
  const reason: unknown = signal.reason;
  if (reason instanceof ConnectError && reason.code !== Code.Canceled) throw reason;
}

/**
 * Registers RoomService. Handlers take their scope from call-scope.ts (`memberRoom`,
 * `sessionOf`), call one domain method and return.
 */
export function registerRoomRoutes(router: ConnectRouter, deps: ServerDeps, scopes: CallScopes): void {
  const { rooms, store, tokens, config, audio } = deps;
  const browserAudio = createBrowserAudio(config.limits.sendAudioPerSecond);
  /** The caller's session, for `roomId` when given. */
  const sessionOf = (ctx: HandlerContext, roomId?: string): SessionScope => scopes.session(ctx.values, roomId);
  /** The caller as a member of their live room, for `roomId` when given. */
  const memberRoom = (ctx: HandlerContext, roomId?: string): Promise<MemberScope> => scopes.placedMember(ctx.values, roomId);

  router.service(RoomService, {
    async joinRoom(req, ctx) {
      // An empty room_id asks for a new room under an unguessable id (in the response's room).
      const roomId = req.roomId === "" ? newRoomId() : checkRoomId(req.roomId);
      const inviteCode = checkInviteCode(req.inviteCode);
      const profile = checkProfile(req.profile, config.limits.maxAmountMinor);
      let userId: string;
      if (req.userToken !== "") {
        const caller = await tokens.verify(req.userToken);
        if (caller.kind !== "user") throw new UnauthenticatedError("user_token must be the user token from JoinRoom");
        userId = caller.userId;
      } else {
        userId = `usr_${randomUUID()}`;
      }
      // Every refusal comes before the first write: a refused join stores nothing.
      await rooms.checkJoin(roomId, userId, inviteCode, { address: ctx.values.get(peerAddressKey) });
      // One transaction, so a full disk leaves no user without a profile behind.
      if (req.userToken === "" || !(await store.getUser(userId))) await store.createUserWithProfile({ id: userId, createdAtMs: Date.now() }, profile);
      else await store.saveProfile(userId, withServerStripeIds(profile, await store.getProfile(userId)));
      const room = await rooms.join(roomId, userId, profile, inviteCode);
      // A join (a new member, or a reloaded page joining again) starts its browser audio afresh.
      browserAudio.forget(room, userId);
      const session = await tokens.issueSessionToken(userId, roomId);
      // Names the room a new-room join was given, so a router can keep its later calls on this node.
      ctx.responseHeader.set(ROOM_HEADER, roomId);
      return {
        userId,
        userToken: await tokens.issueUserToken(userId),
        sessionToken: session.token,
        sessionExpiresAtMs: BigInt(session.expiresAtMs),
        room: room.status(),
      };
    },

    async leaveRoom(req, ctx) {
      const { roomId, userId } = sessionOf(ctx, req.roomId);
      const room = rooms.get(roomId);
      if (room) browserAudio.forget(room, userId);
      await rooms.leave(roomId, userId);
      return {};
    },

    async getRoom(req, ctx) {
      const { room } = await memberRoom(ctx, req.roomId);
      const { negotiation, contract } = room.deal();
      return { room: room.status(), ...(negotiation ? { negotiation } : {}), ...(contract ? { contract } : {}) };
    },

    async setProfile(req, ctx) {
      const { room, userId } = await memberRoom(ctx);
      const profile = checkProfile(req.profile, config.limits.maxAmountMinor);
      await store.saveProfile(userId, withServerStripeIds(profile, await store.getProfile(userId)));
      room.setProfile(userId, profile);
      return { profile: { ...profile, monzoAccessToken: "" } };
    },

    async setTriggerKeyword(req, ctx) {
      const { room } = await memberRoom(ctx, req.roomId);
      room.setTriggerKeyword(checkKeyword(req.keyword), req.requireBoth);
      return { room: room.status() };
    },

    async *audioStream(requests, ctx) {
      const member = await memberRoom(ctx);
      const { room, userId } = member;
      // The slot is taken at open: a call that never sends its format header still counts.
      const close = scopes.openStream(member);
      let unregister = () => {};
      try {
        const iterator = requests[Symbol.asyncIterator]();
        const first = await iterator.next();
        if (first.done) return;
        if (first.value.message.case !== "format") {
          throw new InvalidArgumentError("the first AudioStream message must be the format header");
        }
        room.setAudioFormat(userId, first.value.message.value);
        const sink = new QueuedAudioSink(PEER_AUDIO_QUEUE_FRAMES);
        unregister = room.addAudioSink(userId, sink);
        // Requests are read concurrently with the peer audio we send back.
        void (async () => {
          try {
            for (;;) {
              const next = await iterator.next();
              if (next.done) break;
              applyAudioMessage(room, userId, next.value.message, audio);
            }
            sink.end();
          } catch (err) {
            sink.fail(err instanceof Error ? err : new Error(String(err)));
          }
        })();
        for await (const message of sink.drain(ctx.signal)) yield create(AudioStreamResponseSchema, { message });
        throwIfEndedByServer(ctx.signal);
      } finally {
        unregister();
        close();
      }
    },

    async sendAudio(req, ctx) {
      const { room, userId } = await memberRoom(ctx);
      const state = browserAudio.of(room, userId);
      browserAudio.admit(state);
      if (req.frames.length > MAX_FRAMES_PER_SEND) throw new InvalidArgumentError(`frames may hold at most ${MAX_FRAMES_PER_SEND} frames per call`);
      if (req.frames.length > 0 && !(req.format ?? state.format)) throw new InvalidArgumentError("format is required on the first SendAudio call");
      for (const frame of req.frames) audio.checkFrame(frame);
      const transcript = req.transcript ? audio.deviceTranscript(req.transcript) : undefined;
      const control = req.control === 0 ? undefined : checkControl(req.control);
      // The first change: the room checks the format (once) before it takes it.
      if (req.format) room.setAudioFormat(userId, req.format);
      browserAudio.charge(state);
      if (req.format) browserAudio.restart(state, req.format);
      let accepted = 0;
      for (const frame of req.frames) {
        if (frame.seq < state.nextSeq) continue;
        state.nextSeq = frame.seq + 1n;
        room.audioFrame(userId, frame);
        accepted++;
      }
      if (transcript) room.transcript(userId, transcript, TranscriptSource.DEVICE);
      if (control !== undefined) room.control(userId, control);
      return { nextSeq: state.nextSeq, framesAccepted: accepted };
    },

    async *receiveAudio(req, ctx) {
      const member = await memberRoom(ctx, req.roomId);
      const { room, userId } = member;
      const close = scopes.openStream(member);
      const sink = new QueuedAudioSink(PEER_AUDIO_QUEUE_FRAMES);
      const unregister = room.addAudioSink(userId, sink);
      try {
        for await (const message of sink.drain(ctx.signal)) yield { message };
        throwIfEndedByServer(ctx.signal);
      } finally {
        unregister();
        close();
      }
    },

    async *panelStream(req, ctx) {
      const member = await memberRoom(ctx, req.roomId);
      const { room, userId } = member;
      const close = scopes.openStream(member);
      // A reader that stopped reading keeps the handler blocked on a write that never drains; the
      // overflow status reaches a reader that drains within the grace, else the stream is reset.
      let resetTimer: NodeJS.Timeout | undefined;
      const onOverflow = () => {
        resetTimer ??= setTimeout(() => ctx.values.get(rawStreamKey).reset(), config.rooms.slowReaderGraceMs).unref();
      };
      try {
        for await (const event of room.events.subscribe(req.afterSeq, userId, ctx.signal, onOverflow)) yield { event };
        throwIfEndedByServer(ctx.signal);
      } finally {
        clearTimeout(resetTimer);
        close();
      }
    },

    async signContract(req, ctx) {
      const contractId = checkContractId(req.contractId);
      const { room, userId } = await memberRoom(ctx);
      return { contract: await room.sign(userId, contractId, req.textSha256) };
    },

    async answerApproval(req, ctx) {
      if (req.approvalId === "" || req.approvalId.length > 64) throw new InvalidArgumentError("approval_id must be 1–64 characters");
      const { room, userId } = await memberRoom(ctx);
      return { approval: room.answerApproval(userId, req.approvalId, req.approve) };
    },

    async declineContract(req, ctx) {
      const contractId = checkContractId(req.contractId);
      const { room, userId } = await memberRoom(ctx);
      return { contract: await room.decline(userId, contractId, req.reason) };
    },
  });
}
