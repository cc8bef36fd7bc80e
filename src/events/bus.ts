import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { PanelEventSchema } from "../../gen/handshake/v1/events_pb.js";
import type { PanelEventInit } from "./event-log.js";

/**
 * What other nodes must hear about a room: its owner node is the one writer of the room's log, so
 * an event raised elsewhere (a milestone settled through ContractService on another node, a
 * payment finished by another node's recovery) travels here to the owner, which appends it.
 */
export type RoomBusMessage =
  /** An event for the room's log. */
  | { kind: "event"; init: PanelEventInit }
  /** A contract of the room finished its immediate payments and holds. */
  | { kind: "contractExecuted"; contractId: string };

/** The cross-node bus, one channel per room. */
export interface RoomBus {
  /** Sends to whichever node listens on the room (none: nobody hosts it, and the store has the truth). */
  publish(roomId: string, message: RoomBusMessage): Promise<void>;
  /** This node hosts the room: hand its messages to `handler` until `unlisten` (a second listen replaces the handler). */
  listen(roomId: string, handler: (message: RoomBusMessage) => void): Promise<void>;
  unlisten(roomId: string): Promise<void>;
  /** Closes its connections; safe twice. */
  close(): Promise<void>;
}

/** The bus of a single node: a message reaches a handler in this process, if any. */
export function createLocalBus(): RoomBus {
  const handlers = new Map<string, (message: RoomBusMessage) => void>();
  return {
    async publish(roomId, message) {
      handlers.get(roomId)?.(message);
    },
    async listen(roomId, handler) {
      handlers.set(roomId, handler);
    },
    async unlisten(roomId) {
      handlers.delete(roomId);
    },
    async close() {
      handlers.clear();
    },
  };
}

const channelOf = (roomId: string) => `handshake:room:${roomId}:bus`;
const CHANNEL = /^handshake:room:(.+):bus$/;

/** A message as it travels: the event as its proto bytes (base64), so nothing is redefined by hand. */
interface WireMessage {
  kind: RoomBusMessage["kind"];
  event?: string;
  contractId?: string;
}

function encode(message: RoomBusMessage): string {
  if (message.kind === "contractExecuted") return JSON.stringify({ kind: message.kind, contractId: message.contractId } satisfies WireMessage);
  const event = create(PanelEventSchema, { visibleToUserId: message.init.visibleToUserId ?? "", event: message.init.event });
  return JSON.stringify({ kind: message.kind, event: Buffer.from(toBinary(PanelEventSchema, event)).toString("base64") } satisfies WireMessage);
}

function decode(text: string): RoomBusMessage | undefined {
  const wire = JSON.parse(text) as WireMessage;
  if (wire.kind === "contractExecuted" && typeof wire.contractId === "string") return { kind: wire.kind, contractId: wire.contractId };
  if (wire.kind === "event" && typeof wire.event === "string") {
    const event = fromBinary(PanelEventSchema, Buffer.from(wire.event, "base64"));
    return { kind: "event", init: { event: event.event, ...(event.visibleToUserId ? { visibleToUserId: event.visibleToUserId } : {}) } };
  }
  return undefined;
}

/**
 * The bus on Redis pub/sub: `publisher` sends, `subscriber` (a connection of its own, as Redis
 * requires once it subscribes) listens on the channels of the rooms this node hosts.
 */
export function createRedisBus(options: { publisher: Redis; subscriber: Redis; log: Logger }): RoomBus {
  const { publisher, subscriber, log } = options;
  const handlers = new Map<string, (message: RoomBusMessage) => void>();
  subscriber.on("message", (channel: string, text: string) => {
    const roomId = CHANNEL.exec(channel)?.[1];
    const handler = roomId === undefined ? undefined : handlers.get(roomId);
    if (!handler) return;
    try {
      const message = decode(text);
      if (message) handler(message);
      else log.warn({ roomId }, "unknown bus message ignored");
    } catch (err) {
      log.error({ err, roomId }, "bus message not handled");
    }
  });
  return {
    async publish(roomId, message) {
      await publisher.publish(channelOf(roomId), encode(message));
    },
    async listen(roomId, handler) {
      const first = !handlers.has(roomId);
      handlers.set(roomId, handler);
      if (first) await subscriber.subscribe(channelOf(roomId));
    },
    async unlisten(roomId) {
      if (!handlers.delete(roomId)) return;
      await subscriber.unsubscribe(channelOf(roomId));
    },
    async close() {
      handlers.clear();
      for (const redis of [publisher, subscriber]) if (redis.status !== "end") redis.disconnect();
    },
  };
}
