import { create } from "@bufbuild/protobuf";
import { EventGapSchema, PanelErrorSchema, PanelEventSchema, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { createAsyncQueue, type AsyncQueue } from "../core/async-queue.js";
import { deliveryKillPoint } from "./kill-point.js";

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
  /** The room's earlier life (restored from the store): its seq mark, its kept events, and where trimming ended. */
  restored?: RestoredLog;
  /** Stores one event before anyone sees it; see PersistEvent. */
  persist?: PersistEvent;
  /** Told after an event was handed to its readers (the crash tests' kill point; see kill-point.ts). */
  delivered?: (event: PanelEvent, readers: number) => void;
  now?: () => number;
}

/** What a room's log starts from after a restart. */
export interface RestoredLog {
  /** Highest seq given out before; numbering goes on after it. */
  lastSeq: bigint;
  /** The kept events, oldest first. */
  events: PanelEvent[];
  /** Events up to this seq are gone (trimmed or deleted): a resume from before it gets an EventGap. */
  trimmedThroughSeq?: bigint;
}

/**
 * Stores one numbered event: the log calls it before the event is held or delivered, so nothing a
 * reader saw is lost in a crash and no seq is given out twice. `kept` is false for partial
 * transcripts: only their seq is recorded. Returning undefined means committed (a throw refuses
 * the event); returning a promise means committed once it resolves: the log holds the event, and
 * every later one, back from readers until then, and a rejection closes the log with its error.
 */
export type PersistEvent = ((event: PanelEvent, kept: boolean) => void) | ((event: PanelEvent, kept: boolean) => Promise<void>);

/** Events numbered but not yet committed that a log holds before it refuses more (a stalled store). */
export const MAX_UNCOMMITTED_EVENTS = 1024;

/**
 * One room's event log: numbers events from 1, stores each before anyone sees it, keeps the
 * newest `capacity` (partial transcripts are delivered live but never kept), fans them out to
 * subscribers with bounded queues, and lets a subscriber resume after the last seq it saw.
 */
export class RoomEventLog {
  private readonly buffer: PanelEvent[];
  private lastSeq: bigint;
  /** Seq of the newest event dropped from `buffer` (or gone before a restart); 0n when none. */
  private droppedThrough: bigint;
  private readonly subscribers = new Set<Subscriber>();
  /** Per user, the seq their history starts after (see startHistoryAt); absent: the whole log. */
  private readonly historyFloors = new Map<string, bigint>();
  private readonly delivered: ((event: PanelEvent, readers: number) => void) | undefined;
  private closed: Error | undefined;
  /** While an asynchronous write is committing: the events numbered after it, in order, not yet written. */
  private uncommitted: { event: PanelEvent; kept: boolean }[] | undefined;

  constructor(private readonly options: EventLogOptions) {
    const restored = options.restored;
    const events = restored ? restored.events.filter(isKept) : [];
    const kept = events.slice(-options.capacity);
    this.buffer = kept;
    this.lastSeq = restored?.lastSeq ?? 0n;
    const cut = events.length > kept.length ? events[events.length - kept.length - 1]!.seq : 0n;
    const trimmed = restored?.trimmedThroughSeq ?? 0n;
    this.droppedThrough = cut > trimmed ? cut : trimmed;
    this.delivered = options.delivered ?? deliveryKillPoint();
  }

  /** Seq of the newest event, 0n when none. */
  get latestSeq(): bigint {
    return this.lastSeq;
  }

  /**
   * Numbers, stores and fans out one event; returns it. The event is stored (`persist`) before
   * anyone sees it; when storing throws, nothing changed (the seq is not used) and this throws too.
   * With an asynchronous store the event is numbered now and fanned out once it and every event
   * before it are committed; a failed write closes the log (its seq is never given out again).
   */
  append(init: PanelEventInit): PanelEvent {
    if (this.closed) throw this.closed;
    if (this.uncommitted && this.uncommitted.length >= MAX_UNCOMMITTED_EVENTS) {
      throw new Error(`room ${this.options.roomId}: ${MAX_UNCOMMITTED_EVENTS} events are waiting for the store; refusing more`);
    }
    const event = create(PanelEventSchema, {
      seq: this.lastSeq + 1n,
      atMs: BigInt((this.options.now ?? Date.now)()),
      roomId: this.options.roomId,
      visibleToUserId: init.visibleToUserId ?? "",
      event: init.event,
    });
    const kept = isKept(event);
    if (this.uncommitted) {
      // An earlier event is still committing: this one is written after it, to keep the order.
      this.lastSeq = event.seq;
      this.uncommitted.push({ event, kept });
      return event;
    }
    const written: unknown = this.options.persist?.(event, kept);
    this.lastSeq = event.seq;
    if (written instanceof Promise) {
      this.uncommitted = [];
      void this.commitInOrder(event, kept, written as Promise<void>);
      return event;
    }
    this.publish(event, kept);
    return event;
  }

  /**
   * Waits for each asynchronous write in turn, publishing its event once committed and only then
   * writing the next, so readers see events in seq order and only committed ones.
   */
  private async commitInOrder(first: PanelEvent, firstKept: boolean, firstWrite: Promise<void>): Promise<void> {
    let next = { event: first, kept: firstKept, written: firstWrite };
    for (;;) {
      try {
        await next.written;
      } catch (err) {
        this.uncommitted = undefined;
        this.close(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if (this.closed) return;
      this.publish(next.event, next.kept);
      const following = this.uncommitted?.shift();
      if (!following) {
        this.uncommitted = undefined;
        return;
      }
      let written: Promise<void>;
      try {
        const result: unknown = this.options.persist?.(following.event, following.kept);
        written = result instanceof Promise ? (result as Promise<void>) : Promise.resolve();
      } catch (err) {
        written = Promise.reject(err);
      }
      next = { ...following, written };
    }
  }

  /** Holds a committed event for resume and hands it to every subscriber. */
  private publish(event: PanelEvent, kept: boolean): void {
    if (kept) {
      this.buffer.push(event);
      // Trim in batches so appends stay O(1) amortised.
      if (this.buffer.length >= this.options.capacity * 2) {
        const drop = this.buffer.length - this.options.capacity;
        this.droppedThrough = this.buffer[drop - 1]!.seq;
        this.buffer.splice(0, drop);
      }
    }
    let readers = 0;
    for (const sub of this.subscribers) if (this.deliver(sub, event)) readers += 1;
    this.delivered?.(event, readers);
  }

  /** Seq of the newest event that is no longer held (trimmed, or gone before a restart); 0n when none. */
  get trimmedThroughSeq(): bigint {
    const start = this.buffer.length - this.options.capacity;
    return start > 0 ? this.buffer[start - 1]!.seq : this.droppedThrough;
  }

  /**
   * From now on `userId` sees only events after `afterSeq`: someone who joins a reused room code
   * while one of the earlier pair stays gets none of that pair's history.
   */
  startHistoryAt(userId: string, afterSeq: bigint): void {
    this.historyFloors.set(userId, afterSeq);
  }

  /** Events after `afterSeq` visible to `userId`, oldest first, from what is still held. */
  since(requestedAfterSeq: bigint, userId: string): PanelEvent[] {
    const afterSeq = this.historyFloorFor(userId, requestedAfterSeq);
    const start = this.buffer.length - this.options.capacity;
    const out: PanelEvent[] = [];
    for (let i = Math.max(0, start); i < this.buffer.length; i++) {
      const event = this.buffer[i]!;
      if (event.seq > afterSeq && visibleTo(event, userId)) out.push(event);
    }
    return out;
  }

  /**
   * What a reader resuming after `afterSeq` gets first: an EventGap when events after it are no
   * longer held, then the held events it may see. A reader starting from 0 asked only for what
   * is held, so it gets no gap.
   */
  private backlog(requestedAfterSeq: bigint, userId: string): PanelEvent[] {
    const afterSeq = this.historyFloorFor(userId, requestedAfterSeq);
    const held = this.since(afterSeq, userId);
    const missing = this.trimmedThroughSeq;
    if (afterSeq === 0n || afterSeq >= missing) return held;
    const gap = create(PanelEventSchema, {
      seq: missing,
      atMs: BigInt((this.options.now ?? Date.now)()),
      roomId: this.options.roomId,
      event: { case: "gap", value: create(EventGapSchema, { afterSeq, lastMissingSeq: missing }) },
    });
    return [gap, ...held];
  }

  /**
   * Streams the events visible to `userId` after `afterSeq`: first what is held, then live ones.
   * Ends quietly when `signal` aborts; throws SubscriberOverflowError when the reader is too slow.
   * `onOverflow` is told at once, so a transport blocked on a reader that stopped reading can end it.
   */
  async *subscribe(afterSeq: bigint, userId: string, signal: AbortSignal, onOverflow?: () => void): AsyncGenerator<PanelEvent> {
    if (this.closed) throw this.closed;
    const backlog = this.backlog(afterSeq, userId);
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
    const backlog = this.backlog(afterSeq, userId);
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

  /** `afterSeq`, raised to where `userId`'s history starts. */
  private historyFloorFor(userId: string, afterSeq: bigint): bigint {
    const floor = this.historyFloors.get(userId) ?? 0n;
    return afterSeq > floor ? afterSeq : floor;
  }

  /** Number of live subscribers. */
  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Events queued for the subscriber furthest behind (0 with none), for the metrics. */
  get deepestQueue(): number {
    let deepest = 0;
    for (const sub of this.subscribers) deepest = Math.max(deepest, sub.listener ? sub.listener.queued() : (sub.queue?.size ?? 0));
    return deepest;
  }

  /** Ends every subscriber with `reason` and refuses further appends; safe to call twice. */
  close(reason: Error = new EventLogClosedError("room closed")): void {
    if (this.closed) return;
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

  /** Hands `event` to one subscriber; true when it was given (not invisible to them, not overflowed). */
  private deliver(sub: Subscriber, event: PanelEvent): boolean {
    if (sub.error || !visibleTo(event, sub.userId)) return false;
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
      return false;
    }
    if (sub.listener) sub.listener.event(event);
    else sub.queue?.push(event);
    return true;
  }
}

/** Whether the log keeps an event for resume: everything but partial transcripts, which their final replaces. */
export function isKept(event: PanelEvent): boolean {
  return event.event.case !== "transcript" || event.event.value.isFinal;
}

function visibleTo(event: PanelEvent, userId: string): boolean {
  return event.visibleToUserId === "" || event.visibleToUserId === userId;
}

/** A panel error event: what failed, fit to show a person. */
export function panelError(stage: string, code: string, message: string, retryable: boolean): PanelEventInit {
  return { event: { case: "error", value: create(PanelErrorSchema, { stage, code, message, retryable }) } };
}
