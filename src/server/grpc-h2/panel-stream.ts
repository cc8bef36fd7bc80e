import type http2 from "node:http2";
import type http from "node:http";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { PanelEvent } from "../../../gen/handshake/v1/events_pb.js";
import { PanelStreamRequestSchema, PanelStreamResponseSchema, type PanelStreamRequest } from "../../../gen/handshake/v1/room_service_pb.js";
import { PermissionDeniedError } from "../../core/errors.js";
import { SubscriberOverflowError } from "../../events/event-log.js";
import type { ServerDeps } from "../deps.js";
import { createFastPath, grpcFrame, isNativeGrpcCall, RawGrpcCall, type FastPath, type RawCallShared } from "./raw-grpc-call.js";
import type { StreamLimiter } from "../stream-limiter.js";

/**
 * PanelStream for native gRPC clients, served straight on `node:http2` like AudioStream.
 *
 * Why: through connect-node every event of every subscriber passes a chain of async generators
 * (serialize, envelope, compress, write), which allocated ~2 MB per room from join to payment in
 * the bench, most of it for panel events, and made young-generation collections of 7–15 ms. Here
 * an event is encoded once, whoever reads it, and written to each subscriber's stream as it is
 * appended. The call keeps the connect handler's contract (room-routes.ts `panelStream`): one
 * request message, the session's room only, the backlog after `after_seq` then live events, a
 * reader more than PANEL_QUEUE_SIZE events behind ended with RESOURCE_EXHAUSTED and reset if it
 * does not drain within PANEL_SLOW_READER_GRACE_MS, the stream counted against the per-user limit.
 * Browsers (Connect, gRPC-Web) keep the connect-node handler.
 */

/** The one path served here. */
export const PANEL_STREAM_PATH = "/handshake.v1.RoomService/PanelStream";
const METHOD = "handshake.v1.RoomService/PanelStream";

/** True for a native gRPC PanelStream call: the calls this fast path serves. */
export function isPanelFastPathRequest(req: http.IncomingMessage | http2.Http2ServerRequest): req is http2.Http2ServerRequest {
  return isNativeGrpcCall(req, PANEL_STREAM_PATH);
}

/** Creates the PanelStream fast path. */
export function createPanelFastPath(deps: ServerDeps, shutdownSignal: AbortSignal, limiter: StreamLimiter): FastPath {
  return createFastPath(deps, shutdownSignal, limiter, (shared, req, res) => new PanelCall(shared, req, res));
}

/** Each event's response message, encoded once for all its subscribers. */
const encoded = new WeakMap<PanelEvent, Buffer>();

function responseBytes(event: PanelEvent): Buffer {
  let bytes = encoded.get(event);
  if (!bytes) {
    bytes = grpcFrame(toBinary(PanelStreamResponseSchema, create(PanelStreamResponseSchema, { event })));
    encoded.set(event, bytes);
  }
  return bytes;
}

/** One PanelStream call: its request, then the room's events until either side ends it. */
class PanelCall extends RawGrpcCall {
  private request: PanelStreamRequest | undefined;
  private unsubscribe: (() => void) | undefined;
  private releaseSlot: (() => void) | undefined;
  private resetTimer: NodeJS.Timeout | undefined;
  /**
   * Events held while the stream's buffer is full (HTTP/2 flow control pushing back), written on
   * "drain": the reader's queue, which the event log bounds as it bounds connect-node's.
   */
  private held: Buffer[] = [];
  private blocked = false;
  private readonly onDrain = () => {
    this.blocked = false;
    while (!this.blocked && this.held.length > 0) this.blocked = !this.send(this.held.shift()!);
  };

  constructor(shared: RawCallShared, req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) {
    super(shared, req, res, METHOD);
  }

  protected message(buf: Buffer, off: number, end: number): void {
    if (this.request) throw new ConnectError("protocol error: received extra input message for server-streaming method", Code.Unimplemented);
    this.request = this.decode(PanelStreamRequestSchema, buf, off, end);
  }

  protected requestEnded(): void {
    const request = this.request;
    if (!request) return this.finish(new ConnectError("protocol error: missing input message for server-streaming method", Code.Unimplemented));
    try {
      this.subscribe(request);
    } catch (err) {
      this.finish(err);
    }
  }

  private subscribe(request: PanelStreamRequest): void {
    // The rule of sessionOf in auth.ts: an empty room id means the session's room.
    if (request.roomId !== "" && request.roomId !== this.roomId) throw new PermissionDeniedError("your session token does not cover this room");
    const room = this.room!;
    const userId = this.userId!;
    this.releaseSlot = this.shared.limiter.acquire(userId);
    this.shared.deps.rooms.streamOpened(room, userId);
    this.stream.on("drain", this.onDrain);
    this.unsubscribe = room.events.listen(request.afterSeq, userId, {
      queued: () => this.held.length,
      event: (event) => {
        if (this.blocked) this.held.push(responseBytes(event));
        else this.blocked = !this.send(responseBytes(event));
      },
      ended: (reason) => {
        this.unsubscribe = undefined;
        if (reason instanceof SubscriberOverflowError) {
          // The status goes out behind what is queued; a reader that never drains is reset.
          this.resetTimer = setTimeout(() => this.reset(), this.shared.deps.config.rooms.slowReaderGraceMs).unref();
        }
        this.fail(reason);
      },
    });
  }

  protected release(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.stream.off("drain", this.onDrain);
    this.held = [];
    if (this.releaseSlot) {
      this.releaseSlot();
      this.releaseSlot = undefined;
      this.shared.deps.rooms.streamClosed(this.room!, this.userId!);
    }
  }

  protected override closed(): void {
    if (this.resetTimer) clearTimeout(this.resetTimer);
    super.closed();
  }
}
