import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import type { Caller, TokenService } from "../auth/tokens.js";
import { PermissionDeniedError, UnauthenticatedError } from "../core/errors.js";

/** The caller established by the auth interceptor; undefined on unauthenticated methods. */
export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });

/** Methods anyone may call without a token. */
const PUBLIC_METHODS = new Set([
  "handshake.v1.RoomService/JoinRoom",
  "grpc.health.v1.Health/Check",
  "grpc.health.v1.Health/Watch",
  "grpc.health.v1.Health/List",
  "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
]);

/** Verifies `authorization: Bearer …` on every non-public method and stores the caller. */
export function createAuthInterceptor(tokens: TokenService): Interceptor {
  return (next) => async (req) => {
    if (PUBLIC_METHODS.has(`${req.service.typeName}/${req.method.name}`)) return next(req);
    const header = req.header.get("authorization");
    if (!header) throw new ConnectError("missing authorization header (Bearer token)", Code.Unauthenticated);
    const match = /^Bearer ([A-Za-z0-9_\-.=]+)$/.exec(header);
    if (!match?.[1]) throw new ConnectError("authorization header must be \"Bearer <token>\"", Code.Unauthenticated);
    try {
      req.contextValues.set(callerKey, await tokens.verify(match[1]));
    } catch (err) {
      if (err instanceof UnauthenticatedError) throw new ConnectError(err.message, Code.Unauthenticated);
      throw err;
    }
    return next(req);
  };
}

/** The caller of a handler; throws when the method ran without authentication. */
export function callerOf(ctx: HandlerContext): Caller {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw new UnauthenticatedError("not authenticated");
  return caller;
}

/** The caller's user and room for a room method; needs a session token for that room. */
export function sessionOf(ctx: HandlerContext, roomId?: string): { userId: string; roomId: string } {
  const caller = callerOf(ctx);
  if (caller.kind !== "session") throw new PermissionDeniedError("room methods need the session token from JoinRoom");
  if (roomId !== undefined && roomId !== "" && roomId !== caller.roomId) {
    throw new PermissionDeniedError("your session token does not cover this room");
  }
  return { userId: caller.userId, roomId: caller.roomId };
}
