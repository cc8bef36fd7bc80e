import type { Interceptor } from "@connectrpc/connect";

/*
 * How a client keeps a room's calls on the node that hosts it: every room-scoped call carries the
 * room code in one header, and the router in front of the nodes (deploy/haproxy) routes by it.
 * Calls outside a room (ContractService, health) go without it, to any node.
 */

/** The request header naming the room a call is about. */
export const ROOM_HEADER = "handshake-room";

/**
 * Adds `handshake-room` to every RoomService call, from `roomId` at call time (empty, e.g. a
 * JoinRoom that asks the server for a new room: no header, and the router picks any node).
 */
export function roomRouting(roomId: () => string): Interceptor {
  return (next) => (req) => {
    const room = roomId();
    if (room !== "" && req.service.typeName === "handshake.v1.RoomService") req.header.set(ROOM_HEADER, room);
    return next(req);
  };
}
