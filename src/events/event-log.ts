import { create } from "@bufbuild/protobuf";
import { PanelErrorSchema, PanelEventSchema, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { createAsyncQueue, type AsyncQueue } from "../core/async-queue.js";

/** What a stage hands the log: everything but the numbering. */
export type PanelEventInit = Pick<PanelEvent, "event"> & { visibleToUserId?: string };

/** A subscriber fell too far behind; it must reconnect and resume from its last seq. */
export class SubscriberOverflowError extends Error {
  override readonly name = "SubscriberOverflowError";
}

/** The log was closed (room destroyed or server shutting down). */
export class EventLogClosedError extends Error {
  override readonly name = "EventLogClosedError";
}

/**
 * A push-style subscriber (the PanelStream fast path): it gets events as they are appended and
 * reports how many it has not handed on yet, which the log bounds as it bounds a queue.
 */
export interface PanelListener {
  /** Events given to it and not yet taken by its transport. */
  queued(): number;
  event(event: PanelEvent): void;
  /** The subscription is over: SubscriberOverflowError, or the reason the log closed. */
  ended(reason: Error): void;
}

interface Subscriber {
  userId: string;
  listener?: PanelListener;
  onOverflow: (() => void) | undefined;
  /** The pull reader's queue (`subscribe`); a push listener has none. */
  queue?: AsyncQueue<PanelEvent>;
  limit: number;
  error: Error | undefined;
}

/** Options of a room's event log. */
export interface EventLogOptions {
  roomId: string;
  /** Events kept in memory for resume. */
  capacity: number;
  /** Live events queued per subscriber before it is ended with SubscriberOverflowError. */
  subscriberQueueSize: number;
  /** Seq of the last event from an earlier life of the room (restored from the store), and those events. */
  restored?: { lastSeq: bigint; events: PanelEvent[] };
  /** Called with each batch of new events, once per tick, to persist them. */
  persist?: (events: PanelEvent[]) => void;
  now?: () => number;
}

/**
 * One room's event log: numbers events from 1, keeps the newest `capacity`, fans them out to
 * subscribers with bounded queues, and lets a subscriber resume after the last seq it saw.
 */
export class RoomEventLog {
  private readonly buffer: PanelEvent[];
  private lastSeq: bigint;
  private readonly subscribers = new Set<Subscriber>();
  private pending: PanelEvent[] = [];
  private closed: Error | undefined;

  constructor(private readonly options: EventLogOptions) {
    this.buffer = options.restored ? options.restored.events.slice(-options.capacity) : [];
    this.lastSeq = options.restored?.lastSeq ?? 0n;
  }

  /** Seq of the newest event, 0n when none. */
  get latestSeq(): bigint {
    return this.lastSeq;
  }

  /** Numbers, stores and fans out one event; returns it. */
  append(init: PanelEventInit): PanelEvent {
    if (this.closed) throw this.closed;
    this.lastSeq += 1n;
    const event = create(PanelEventSchema, {
      seq: this.lastSeq,
      atMs: BigInt((this.options.now ?? Date.now)()),
      roomId: this.options.roomId,
      visibleToUserId: init.visibleToUserId ?? "",
      event: init.event,
    });
    this.buffer.push(event);
    // Trim in batches so appends stay O(1) amortised.
    if (this.buffer.length >= this.options.capacity * 2) this.buffer.splice(0, this.buffer.length - this.options.capacity);
    for (const sub of this.subscribers) this.deliver(sub, event);
    if (this.options.persist) {
      if (this.pending.length === 0) setImmediate(() => this.flushPersist());
      this.pending.push(event);
    }
    return event;
  }

  /** Events after `afterSeq` visible to `userId`, oldest first, from what is still held. */
  since(afterSeq: bigint, userId: string): PanelEvent[] {
    const start = this.buffer.length - this.options.capacity;
    const out: PanelEvent[] = [];
    for (let i = Math.max(0, start); i < this.buffer.length; i++) {
      const event = this.buffer[i]!;
      if (event.seq > afterSeq && visibleTo(event, userId)) out.push(event);
    }
    return out;
  }

  /**
   * Streams the events visible to `userId` after `afterSeq`: first what is held, then live ones.
   * Ends quietly when `signal` aborts; throws SubscriberOverflowError when the reader is too slow.
   * `onOverflow` is told at once, so a transport blocked on a reader that stopped reading can end it.
   */
  async *subscribe(afterSeq: bigint, userId: string, signal: AbortSignal, onOverflow?: () => void): AsyncGenerator<PanelEvent> {
    if (this.closed) throw this.closed;
    const backlog = this.since(afterSeq, userId);
    const queue = createAsyncQueue(backlog);
    const sub: Subscriber = {
      userId,
      onOverflow,
      queue,
      limit: backlog.length + this.options.subscriberQueueSize,
      error: undefined,
    };
    this.subscribers.add(sub);
    try {
      yield* queue.drain(signal);
    } finally {
      this.subscribers.delete(sub);
    }
  }

  /**
   * Push-style `subscribe`: `listener` gets the events visible to `userId` after `afterSeq` at
   * once, then each new one as it is appended, until it falls `subscriberQueueSize` behind or the
   * log closes. Returns the unsubscribe.
   */
  listen(afterSeq: bigint, userId: string, listener: PanelListener): () => void {
    if (this.closed) throw this.closed;
    const backlog = this.since(afterSeq, userId);
    const sub: Subscriber = {
      userId,
      listener,
      onOverflow: undefined,
      limit: backlog.length + this.options.subscriberQueueSize,
      error: undefined,
    };
    this.subscribers.add(sub);
    for (const event of backlog) listener.event(event);
    return () => {
      this.subscribers.delete(sub);
    };
  }

  /** Number of live subscribers. */
  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Ends every subscriber with `reason` and refuses further appends; safe to call twice. */
  close(reason: Error = new EventLogClosedError("room closed")): void {
    if (this.closed) return;
    this.flushPersist();
    this.closed = reason;
    for (const sub of this.subscribers) {
      sub.error = reason;
      sub.queue?.fail(reason);
      if (sub.listener) {
        this.subscribers.delete(sub);
        sub.listener.ended(reason);
      }
    }
  }

  private deliver(sub: Subscriber, event: PanelEvent): void {
    if (sub.error || !visibleTo(event, sub.userId)) return;
    const queued = sub.listener ? sub.listener.queued() : (sub.queue?.size ?? 0);
    if (queued >= sub.limit) {
      sub.error = new SubscriberOverflowError(
        `panel stream fell more than ${this.options.subscriberQueueSize} events behind; resume from seq ${event.seq - 1n}`,
      );
      sub.queue?.fail(sub.error);
      sub.onOverflow?.();
      if (sub.listener) {
        this.subscribers.delete(sub);
        sub.listener.ended(sub.error);
      }
    } else if (sub.listener) {
      sub.listener.event(event);
    } else {
      sub.queue?.push(event);
    }
  }

  private flushPersist(): void {
    if (this.pending.length === 0 || !this.options.persist) return;
    const batch = this.pending;
    this.pending = [];
    this.options.persist(batch);
  }
}

function visibleTo(event: PanelEvent, userId: string): boolean {
  return event.visibleToUserId === "" || event.visibleToUserId === userId;
}

/** A panel error event: what failed, fit to show a person. */
export function panelError(stage: string, code: string, message: string, retryable: boolean): PanelEventInit {
  return { event: { case: "error", value: create(PanelErrorSchema, { stage, code, message, retryable }) } };
}
