/**
 * The two room-level measurements of the bench, made with connect-node gRPC clients (they are
 * not the audio hot path, so client cost does not matter here):
 * - fan-out: from a device transcript sent on AudioStream to both PanelStream subscribers
 *   having it;
 * - pipeline: from the trigger event to the payments executed, with the offline engines: talk
 *   with a price, "handshake", the offline agents negotiate, the contract is drafted, both sign
 *   with the SHA-256 of its text, the ledger pays.
 */
import { createHash } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AudioEncoding } from "../gen/handshake/v1/audio_pb.js";
import { ContractStatus, NegotiationStatus } from "../gen/handshake/v1/deal_pb.js";
import { ExecutionStepStatus, type PanelEvent } from "../gen/handshake/v1/events_pb.js";
import { AgentProfileSchema, NegotiationStyle, PartyRole } from "../gen/handshake/v1/profile_pb.js";
import { RoomService, type AudioStreamRequestSchema } from "../gen/handshake/v1/room_service_pb.js";
import { percentile, round2 } from "./stats.js";

type RoomClient = Client<typeof RoomService>;
type AudioRequest = MessageInitShape<typeof AudioStreamRequestSchema>;

/** A participant: their client, panel and open AudioStream. */
interface Person {
  userId: string;
  roomId: string;
  room: RoomClient;
  panel: Panel;
  say(text: string): void;
  close(): Promise<void>;
}

/** PanelStream events with the time each arrived (performance.now, ms). */
interface Panel {
  events: { event: PanelEvent; at: number }[];
  /** Resolves with the first event (already seen or future) that matches; rejects after `timeoutMs`. */
  waitFor(match: (e: PanelEvent) => boolean, what: string, timeoutMs: number): Promise<{ event: PanelEvent; at: number }>;
  /** Calls `fn` for every event from now on. */
  onEvent(fn: (e: PanelEvent, at: number) => void): void;
}

/** How often each fan-out room sends a transcript. */
const FANOUT_INTERVAL_MS = 100;

/** Fan-out figures, milliseconds. */
export interface FanoutResult {
  samples: number;
  p50Ms: number | null;
  p99Ms: number | null;
  error?: string;
}

/** Pipeline figures, milliseconds. */
export interface PipelineResult {
  rooms: number;
  completed: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /**
   * p50 of each stage, as seen on the provider's panel: trigger → negotiation agreed → contract
   * drafted → both signatures in → payments executed. Tells where the time goes.
   */
  stagesP50Ms: { negotiate: number; draft: number; sign: number; pay: number } | null;
  /** Why some rooms did not finish (the first few reasons). */
  errors: string[];
}

/**
 * Fan-out: `rooms` rooms in parallel, each sending `messages` final device transcripts, one every
 * FANOUT_INTERVAL_MS, the rooms' clocks spread evenly over the interval (people do not all finish
 * a sentence in the same millisecond); a sample is the time from writing one to both panels having
 * it. Every room is joined before the first transcript, so joins (far dearer than a transcript)
 * are not measured with it.
 */
export async function measureFanout(baseUrl: string, options: { rooms: number; messages: number; runId: string; timeoutMs?: number }): Promise<FanoutResult> {
  const samples: number[] = [];
  const errors: string[] = [];
  const timeoutMs = options.timeoutMs ?? 5000;
  const rooms = await Promise.all(
    Array.from({ length: options.rooms }, async (_, r) => {
      const roomId = `${options.runId}-fan-${r}`;
      const people: Person[] = [];
      try {
        people.push(await join(baseUrl, roomId, { displayName: "Ada" }));
        people.push(await join(baseUrl, roomId, { displayName: "Bo" }));
      } catch (err) {
        errors.push(`${roomId}: ${(err as Error).message}`);
      }
      return { r, roomId, people };
    }),
  );
  const start = performance.now();
  await Promise.all(
    rooms.map(async ({ r, roomId, people }) => {
      const [a, b] = people;
      if (!a || !b) return;
      try {
        for (let i = 0; i < options.messages; i++) {
          const due = start + ((r / options.rooms) + i) * FANOUT_INTERVAL_MS;
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - performance.now())));
          const text = `fan out check ${r} ${i}`;
          const isIt = (e: PanelEvent) => e.event.case === "transcript" && e.event.value.text === text;
          const sentAt = performance.now();
          a.say(text);
          const [seenA, seenB] = await Promise.all([a.panel.waitFor(isIt, "transcript", timeoutMs), b.panel.waitFor(isIt, "transcript", timeoutMs)]);
          samples.push(Math.max(seenA.at, seenB.at) - sentAt);
        }
      } catch (err) {
        errors.push(`${roomId}: ${(err as Error).message}`);
      }
    }),
  );
  await Promise.all(rooms.flatMap(({ people }) => people.map((p) => p.close())));
  return {
    samples: samples.length,
    p50Ms: samples.length ? round2(percentile(samples, 50)) : null,
    p99Ms: samples.length ? round2(percentile(samples, 99)) : null,
    ...(errors.length ? { error: errors.slice(0, 3).join("; ") } : {}),
  };
}

/**
 * Pipeline: `rooms` rooms, `concurrency` at a time, each from talk to payments. A sample is the
 * time from the trigger event to the payments-executed event on the provider's panel (signing
 * by both clients included, as a person's app would sign at once).
 */
export async function measurePipeline(
  baseUrl: string,
  options: { rooms: number; concurrency: number; runId: string; timeoutMs?: number },
): Promise<PipelineResult> {
  const samples: number[] = [];
  const stages: Stages[] = [];
  const errors: string[] = [];
  const timeoutMs = options.timeoutMs ?? 15_000;
  let next = 0;
  const worker = async () => {
    while (next < options.rooms) {
      const r = next++;
      try {
        const run = await onePipeline(baseUrl, `${options.runId}-deal-${r}`, timeoutMs);
        samples.push(run.totalMs);
        stages.push(run.stages);
      } catch (err) {
        if (errors.length < 3) errors.push((err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency, options.rooms)) }, worker));
  return {
    rooms: options.rooms,
    completed: samples.length,
    p50Ms: samples.length ? round2(percentile(samples, 50)) : null,
    p99Ms: samples.length ? round2(percentile(samples, 99)) : null,
    stagesP50Ms: stages.length
      ? {
          negotiate: round2(percentile(stages.map((s) => s.negotiate), 50)),
          draft: round2(percentile(stages.map((s) => s.draft), 50)),
          sign: round2(percentile(stages.map((s) => s.sign), 50)),
          pay: round2(percentile(stages.map((s) => s.pay), 50)),
        }
      : null,
    errors,
  };
}

interface Stages {
  negotiate: number;
  draft: number;
  sign: number;
  pay: number;
}

async function onePipeline(baseUrl: string, roomId: string, timeoutMs: number): Promise<{ totalMs: number; stages: Stages }> {
  const people: Person[] = [];
  try {
    const provider = await join(baseUrl, roomId, {
      displayName: "Sam the plumber",
      role: PartyRole.PROVIDER,
      trade: "plumber",
      rates: [{ description: "boiler repair", amountMinor: 12_000n }],
      style: NegotiationStyle.BALANCED,
    });
    people.push(provider);
    const client = await join(baseUrl, roomId, { displayName: "Alex", role: PartyRole.CLIENT, maxAutoApproveMinor: 20_000n });
    people.push(client);

    // Sign as soon as the contract is drafted, as each person's app would.
    const signed = new Set<string>();
    let signFailure: Error | undefined;
    provider.panel.onEvent((e) => {
      if (e.event.case !== "contract" || e.event.value.status !== ContractStatus.AWAITING_SIGNATURES) return;
      const contract = e.event.value;
      if (signed.has(contract.id)) return;
      signed.add(contract.id);
      const textSha256 = createHash("sha256").update(contract.text, "utf8").digest("hex");
      for (const person of [provider, client]) {
        person.room.signContract({ contractId: contract.id, textSha256 }).catch((err: unknown) => {
          signFailure = err as Error;
        });
      }
    });

    const lines: [Person, string][] = [
      [provider, "Hi Alex, I can fix your boiler today."],
      [client, "Great, how much will it cost?"],
      [provider, "It will be one hundred and twenty pounds for the repair."],
      [client, "That sounds fair. Handshake."],
    ];
    for (const [person, text] of lines) {
      person.say(text);
      // Each line lands before the next is said, so the conversation keeps its order.
      await provider.panel.waitFor((e) => e.event.case === "transcript" && e.event.value.text === text && e.event.value.isFinal, "transcript", timeoutMs);
    }
    const trigger = await provider.panel.waitFor((e) => e.event.case === "trigger", "the trigger event", timeoutMs);
    const failed = (e: PanelEvent) =>
      (e.event.case === "negotiation" && (e.event.value.status === NegotiationStatus.REJECTED || e.event.value.status === NegotiationStatus.EXPIRED)) ||
      (e.event.case === "contract" && e.event.value.status === ContractStatus.PAYMENT_FAILED) ||
      e.event.case === "error";
    const executed = (e: PanelEvent) =>
      (e.event.case === "executionStep" && e.event.value.step === "completed" && e.event.value.status === ExecutionStepStatus.SUCCEEDED) ||
      (e.event.case === "contract" && (e.event.value.status === ContractStatus.ACTIVE || e.event.value.status === ContractStatus.COMPLETED));
    const done = await provider.panel.waitFor((e) => executed(e) || failed(e), "payments executed", timeoutMs);
    if (signFailure) throw new Error(`${roomId}: signing failed: ${signFailure.message}`);
    if (failed(done.event)) throw new Error(`${roomId}: the deal did not complete: ${describe(done.event)}`);
    const at = (match: (e: PanelEvent) => boolean) => provider.panel.events.find((e) => match(e.event))?.at ?? done.at;
    const agreed = at((e) => e.event.case === "negotiation" && e.event.value.status === NegotiationStatus.AGREED);
    const drafted = at((e) => e.event.case === "contract" && e.event.value.status === ContractStatus.AWAITING_SIGNATURES);
    const signedAt = at((e) => e.event.case === "contract" && e.event.value.status === ContractStatus.EXECUTING);
    return {
      totalMs: done.at - trigger.at,
      stages: { negotiate: agreed - trigger.at, draft: drafted - agreed, sign: signedAt - drafted, pay: done.at - signedAt },
    };
  } catch (err) {
    throw new Error(`${roomId}: ${(err as Error).message}${lastSeen(people[0])}`);
  } finally {
    await Promise.all(people.map((p) => p.close()));
  }
}

function describe(e: PanelEvent): string {
  switch (e.event.case) {
    case "negotiation":
      return `negotiation ${NegotiationStatus[e.event.value.status]}`;
    case "contract":
      return `contract ${ContractStatus[e.event.value.status]}`;
    case "error":
      return `error ${e.event.value.stage}/${e.event.value.code}: ${e.event.value.message}`;
    default:
      return e.event.case ?? "empty event";
  }
}

function lastSeen(person: Person | undefined): string {
  const last = person?.panel.events.at(-1);
  return last ? ` (last event: ${describe(last.event)})` : "";
}

/**
 * Joins `roomId`, opens PanelStream and an AudioStream (format sent), all on one HTTP/2
 * connection, as a person's app holds one.
 */
export async function join(baseUrl: string, roomId: string, profile: MessageInitShape<typeof AgentProfileSchema>): Promise<Person> {
  let sessionToken: string | undefined;
  const connection = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager: connection,
    interceptors: [
      (next) => (req) => {
        if (sessionToken) req.header.set("authorization", `Bearer ${sessionToken}`);
        return next(req);
      },
    ],
  });
  const room = createClient(RoomService, transport);
  const joined = await room.joinRoom({
    roomId,
    profile: create(AgentProfileSchema, { role: PartyRole.CLIENT, currency: "GBP", ...profile }),
  });
  sessionToken = joined.sessionToken;
  const controller = new AbortController();
  const panel = openPanel(room, roomId, controller.signal);
  const outbox = createOutbox<AudioRequest>();
  outbox.push({ message: { case: "format", value: { encoding: AudioEncoding.PCM16LE, sampleRateHz: 16000, channels: 1 } } });
  const audio = (async () => {
    try {
      for await (const _ of room.audioStream(outbox.iterable, { signal: controller.signal })) {
        // Peer audio is not used here.
      }
    } catch {
      // Ended by close().
    }
  })();
  let clock = 0;
  return {
    userId: joined.userId,
    roomId,
    room,
    panel,
    say(text) {
      const end = clock + text.length * 60;
      outbox.push({ message: { case: "transcript", value: { text, isFinal: true, startMs: clock, endMs: end, confidence: 0.95 } } });
      clock = end + 500;
    },
    async close() {
      outbox.end();
      controller.abort();
      await audio;
      await room.leaveRoom({ roomId }).catch(() => undefined);
      // The person's app is gone: its connection too, not left idle on the server.
      connection.abort();
    },
  };
}

function openPanel(room: RoomClient, roomId: string, signal: AbortSignal): Panel {
  const events: { event: PanelEvent; at: number }[] = [];
  const listeners: ((e: PanelEvent, at: number) => void)[] = [];
  let failure: Error | undefined;
  void (async () => {
    try {
      for await (const res of room.panelStream({ roomId, afterSeq: 0n }, { signal })) {
        if (!res.event) continue;
        const at = performance.now();
        events.push({ event: res.event, at });
        for (const fn of [...listeners]) fn(res.event, at);
      }
    } catch (err) {
      if (!signal.aborted) failure = err as Error;
    }
  })();
  return {
    events,
    onEvent(fn) {
      listeners.push(fn);
    },
    waitFor(match, what, timeoutMs) {
      const seen = events.find((e) => match(e.event));
      if (seen) return Promise.resolve(seen);
      if (failure) return Promise.reject(failure);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.splice(listeners.indexOf(listener), 1);
          reject(new Error(failure ? `panel failed waiting for ${what}: ${failure.message}` : `no ${what} within ${timeoutMs} ms`));
        }, timeoutMs);
        const listener = (event: PanelEvent, at: number) => {
          if (!match(event)) return;
          clearTimeout(timer);
          listeners.splice(listeners.indexOf(listener), 1);
          resolve({ event, at });
        };
        listeners.push(listener);
      });
    },
  };
}

/** An async iterable fed by `push`; what a bidi client call reads its requests from. */
function createOutbox<T>(): { iterable: AsyncIterable<T>; push(item: T): void; end(): void } {
  const queue: T[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  return {
    push(item) {
      queue.push(item);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
    iterable: {
      async *[Symbol.asyncIterator]() {
        for (;;) {
          const item = queue.shift();
          if (item !== undefined) {
            yield item;
            continue;
          }
          if (ended) return;
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      },
    },
  };
}
