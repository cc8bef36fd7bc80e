import type http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { PanelEvent } from "../../../gen/handshake/v1/events_pb.js";
import { PanelStreamRequestSchema, PanelStreamResponseSchema, type PanelStreamRequest } from "../../../gen/handshake/v1/room_service_pb.js";
import { SubscriberOverflowError } from "../../events/event-log.js";
import type { CallScopes, MemberScope } from "../call-scope.js";
import { createFastPath, RawGrpcCall, type FastPath, type FastPathOptions, type RawCallShared } from "./raw-grpc-call.js";
import { grpcMessage } from "./wire.js";

/**
 * PanelStream for native gRPC clients, served straight on `node:http2` like AudioStream (why:
 * routing.ts; through connect-node every event of every subscriber passed a chain of async
 * generators, ~2 MB per room from join to payment in the bench). Here an event is encoded once,
 * whoever reads it, and written to each subscriber's stream as it is appended. The call keeps the
 * connect handler's contract (room-routes.ts `panelStream`): one request message, the session's
 * room only, the backlog after `after_seq` then live events, a reader more than the subscriber
 * queue behind ended with RESOURCE_EXHAUSTED and reset if it does not drain within the slow-reader
 * grace, the stream counted against the per-user limit (call-scope.ts).
 */

const METHOD = "handshake.v1.RoomService/PanelStream";

/** What a PanelStream call needs besides the hooks. */
export interface PanelStreamDeps {
  scopes: CallScopes;
  /** How long a reader ended for falling behind has to drain before its stream is reset. */
  slowReaderGraceMs: number;
}

/** Creates the PanelStream fast path; `options.authorize` must return the caller's member scope. */
export function createPanelFastPath(options: FastPathOptions<MemberScope>, deps: PanelStreamDeps): FastPath {
  return createFastPath(METHOD, options, (shared, stream) => new PanelCall(shared, stream, deps));
}

/** Each event's response message, encoded once for all its subscribers. */
const encoded = new WeakMap<PanelEvent, Buffer>();

function responseBytes(event: PanelEvent): Buffer {
  let bytes = encoded.get(event);
  if (!bytes) {
    bytes = grpcMessage(toBinary(PanelStreamResponseSchema, create(PanelStreamResponseSchema, { event })));
    encoded.set(event, bytes);
  }
  return bytes;
}

/** One PanelStream call: its request, then the room's events until either side ends it. */
class PanelCall extends RawGrpcCall<MemberScope> {
  private request: PanelStreamRequest | undefined;
  private unsubscribe: (() => void) | undefined;
  private closeStream: (() => void) | undefined;
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

  constructor(
    shared: RawCallShared<MemberScope>,
    stream: http2.ServerHttp2Stream,
    private readonly deps: PanelStreamDeps,
  ) {
    super(shared, stream);
  }

  protected message(buf: Buffer, start: number, end: number, flags: number): void {
    if (this.request) throw new ConnectError("protocol error: received extra input message for server-streaming method", Code.Unimplemented);
    this.request = this.decode(PanelStreamRequestSchema, buf, start, end, flags);
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
    // The request names its room: the same scope rule as connect-node's handler, now with it.
    const scope = this.deps.scopes.member(this.values, request.roomId);
    const { room, userId } = scope;
    this.closeStream = this.deps.scopes.openStream(scope);
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
          this.resetTimer = setTimeout(() => this.reset(), this.deps.slowReaderGraceMs).unref();
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
    this.closeStream?.();
    this.closeStream = undefined;
  }

  protected override closed(): void {
    if (this.resetTimer) clearTimeout(this.resetTimer);
    super.closed();
  }
}
