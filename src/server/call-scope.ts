import { createContextKey, type ContextValues } from "@connectrpc/connect";
import type { Caller, TokenService } from "../auth/tokens.js";
import { NotFoundError, PermissionDeniedError, UnauthenticatedError } from "../core/errors.js";
import type { RoomManager } from "../room/room-manager.js";
import type { Room } from "../room/room.js";
import { StreamLimiter } from "./stream-limiter.js";

/**
 * The one place a call's scope is worked out: bearer token → caller → session room → member →
 * stream slot. The connect-node routes (through the auth interceptor and `ctx.values`) and the
 * gRPC fast path (through its authorize hook and its own context values) both call these, so a
 * rule changed here holds on both paths.
 */

/** The caller a call authenticated as; undefined until `authenticate` ran (public methods). */
export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });

const BEARER = /^Bearer ([A-Za-z0-9_\-.=]+)$/;

/** The caller of a room method: a session token's user and room. */
export interface SessionScope {
  userId: string;
  roomId: string;
}

/** A member of a live room, as a room method sees them. */
export interface MemberScope extends SessionScope {
  room: Room;
}

/** What the scope rules need from the rest of the server. */
export interface CallScopeDeps {
  tokens: TokenService;
  rooms: RoomManager;
  maxStreamsPerUser: number;
}

/** The scope rules of one server; its stream limit counts every path's streams. */
export interface CallScopes {
  /**
   * Verifies an `authorization: Bearer …` header and stores the caller in `values`; throws
   * UnauthenticatedError for a missing, malformed or invalid token.
   */
  authenticate(values: ContextValues, authorization: string | null | undefined): Promise<Caller>;
  /** The authenticated caller; throws UnauthenticatedError when the call ran without one. */
  caller(values: ContextValues): Caller;
  /** The caller's session; needs a session token, for `roomId` when given (empty: the session's room). */
  session(values: ContextValues, roomId?: string): SessionScope;
  /** The caller as a member of their session's live room; NotFound when it is gone, PermissionDenied when they left. */
  member(values: ContextValues, roomId?: string): MemberScope;
  /**
   * `member`, after making sure the session's room is served by this node: rebuilt here from the
   * store when no node hosts it (failover, restart), or UNAVAILABLE naming the node that does.
   * Every room-scoped call takes its scope through this, on both paths.
   */
  placedMember(values: ContextValues, roomId?: string): Promise<MemberScope>;
  /** Takes one of the member's stream slots (per-user limit, presence); the returned close is for a `finally`, safe twice. */
  openStream(member: MemberScope): () => void;
}

/** Creates the scope rules for one server. */
export function createCallScopes(deps: CallScopeDeps): CallScopes {
  const limiter = new StreamLimiter(deps.maxStreamsPerUser);
  const scopes: CallScopes = {
    async authenticate(values, authorization) {
      if (!authorization) throw new UnauthenticatedError("missing authorization header (Bearer token)");
      const match = BEARER.exec(authorization);
      if (!match?.[1]) throw new UnauthenticatedError('authorization header must be "Bearer <token>"');
      const caller = await deps.tokens.verify(match[1]);
      values.set(callerKey, caller);
      return caller;
    },

    caller(values) {
      const caller = values.get(callerKey);
      if (!caller) throw new UnauthenticatedError("not authenticated");
      return caller;
    },

    session(values, roomId) {
      const caller = scopes.caller(values);
      if (caller.kind !== "session") throw new PermissionDeniedError("room methods need the session token from JoinRoom");
      if (roomId !== undefined && roomId !== "" && roomId !== caller.roomId) {
        throw new PermissionDeniedError("your session token does not cover this room");
      }
      return { userId: caller.userId, roomId: caller.roomId };
    },

    member(values, roomId) {
      const session = scopes.session(values, roomId);
      const room = deps.rooms.get(session.roomId);
      if (!room) throw new NotFoundError("room not found; join it again");
      if (!room.has(session.userId)) throw new PermissionDeniedError("you are not a member of this room; join it again");
      return { ...session, room };
    },

    async placedMember(values, roomId) {
      const session = scopes.session(values, roomId);
      await deps.rooms.host(session.roomId, session.userId);
      return scopes.member(values, roomId);
    },

    openStream({ room, userId }) {
      const release = limiter.acquire(userId);
      deps.rooms.streamOpened(room, userId);
      let closed = false;
      return () => {
        if (closed) return;
        closed = true;
        release();
        deps.rooms.streamClosed(room, userId);
      };
    },
  };
  return scopes;
}
