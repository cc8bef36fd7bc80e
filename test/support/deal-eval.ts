import { createHash, randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { create, fromJson, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Client } from "@connectrpc/connect";
import { AudioEncoding, AudioFormatSchema, DeviceTranscriptSchema } from "../../gen/handshake/v1/audio_pb.js";
import { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import { ContractStatus, LineItemKind, NegotiationStatus, type Contract, type LineItem, type Negotiation } from "../../gen/handshake/v1/deal_pb.js";
import { ApprovalStatus, type ApprovalRequest, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import type { Balance } from "../../gen/handshake/v1/money_pb.js";
import { AgentProfileSchema, type AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import { RoomService, type AudioStreamRequestSchema } from "../../gen/handshake/v1/room_service_pb.js";
import { formatMoney } from "../../src/core/money.js";
import { grpcTransport, startTestApp, type TestApp } from "./app.js";
import { recordPanel, type PanelRecorder } from "./panel.js";

// ---------------------------------------------------------------------------------------------
// The case format (test/fixtures/deals/*.json). Amounts are strings of minor units.
// ---------------------------------------------------------------------------------------------

/** One person in a case: their agent profile (proto JSON) and how they behave at prompts. */
export interface CasePerson {
  /** AgentProfile in proto JSON (camelCase fields, enum names, int64 as strings). */
  profile: JsonValue;
  /** How the person answers their agent's approval prompt; "approve" when unset. */
  approval?: "approve" | "decline";
  /** When set, the person declines the first drafted contract with this reason instead of signing it. */
  declineContract?: string;
}

/** One spoken line. */
export interface CaseLine {
  /** Key of the speaker in `people`. */
  who: string;
  /** What they say (sent as a final on-device transcript). */
  say: string;
  /** Wait before saying it: until a contract was signed by both and paid, or declined and the room re-armed. */
  after?: "signed" | "declined";
  /** Extra pause before the line, milliseconds (a hesitation, someone thinking). */
  pauseMs?: number;
}

/** One expected line item of the contract. */
export interface ExpectedItem {
  /** Key nouns; the item's description must contain one of them (case-insensitive). */
  about: string[];
  /** Exact amount in minor units (for a range, its maximum may be omitted here). */
  amountMinor?: string;
  /** Exact price range [min, max] in minor units. */
  range?: [string, string];
  /** How its money moves. */
  kind: "immediate" | "escrow";
}

/** What the case must end with. */
export interface CaseExpect {
  /** True when exactly one (non-declined) contract must come out of the talk. */
  deal: boolean;
  /** Key of the person who pays. */
  payer?: string;
  /** Key of the person who is paid. */
  payee?: string;
  /** ISO 4217 code of the contract. */
  currency?: string;
  /** Every line item, nothing else. */
  items?: ExpectedItem[];
  /** Instead of `items`, when only the total is fixed (a stated total that wins over the parts): every item is about this and of this kind. */
  lump?: { about: string[]; kind: "immediate" | "escrow" };
  /** Exact total in minor units; defaults to the sum of the items' amounts (range maxima). */
  totalMinor?: string;
  /** Words no item description may contain (dropped items). */
  absent?: string[];
  /** The payer's agent must ask them (approvalRequest on their panel); the answer is in `people`. */
  approvalAsked?: boolean;
  /** Contracts a person declined before the final one. */
  declinedContracts?: number;
  /** Exact number of trigger events in the room. */
  triggers?: number;
  /** Exact number of negotiations in the room; defaults to 1 + declinedContracts when a deal is expected. */
  negotiations?: number;
  /** Words the contract's title and heading must not contain (a sale of goods is no "service agreement"). */
  titleExcludes?: string[];
  /** After this line (0-based index), the panel must say something (agent message or error), e.g. why nothing new was negotiated. */
  panelExplainsAfterLine?: number;
}

/** One conversation with its expected outcome. */
export interface DealCase {
  /** File name without ".json". */
  id: string;
  /** What the case is, in words. */
  name: string;
  /** Which phenomena of issue 14 it covers. */
  phenomena: string[];
  /** Room trigger setting; the server's default keyword ("handshake", single) when unset. */
  trigger?: { keyword?: string; requireBoth?: boolean };
  /** Exactly two people, by key. */
  people: Record<string, CasePerson>;
  /** The conversation, in order. */
  lines: CaseLine[];
  /** The expected outcome. */
  expect: CaseExpect;
}

/** The result of one case. */
export interface CaseResult {
  id: string;
  pass: boolean;
  /** What differed from the expectation, one phrase each. */
  diffs: string[];
  /** What actually came out, in one line. */
  actual: string;
  durationMs: number;
}

/** The folder holding the cases. */
export const DEALS_DIR = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../fixtures/deals");

/** Reads and checks every case file in `dir`, sorted by name. Throws on a malformed case. */
export function loadDealCases(dir = DEALS_DIR): DealCase[] {
  const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
  return files.map((file) => {
    const raw = JSON.parse(readFileSync(path.join(dir, file), "utf8")) as Omit<DealCase, "id">;
    const c: DealCase = { ...raw, id: file.replace(/\.json$/, "") };
    const keys = Object.keys(c.people ?? {});
    if (keys.length !== 2) throw new Error(`${file}: needs exactly two people`);
    for (const key of keys) fromJson(AgentProfileSchema, c.people[key]!.profile);
    if (!Array.isArray(c.lines) || c.lines.length === 0) throw new Error(`${file}: no lines`);
    for (const line of c.lines) if (!keys.includes(line.who)) throw new Error(`${file}: unknown speaker ${line.who}`);
    for (const k of [c.expect.payer, c.expect.payee]) if (k !== undefined && !keys.includes(k)) throw new Error(`${file}: unknown party ${k}`);
    if (c.expect.deal && (!c.expect.payer || !c.expect.payee || !c.expect.currency || !(c.expect.items || (c.expect.lump && c.expect.totalMinor)))) {
      throw new Error(`${file}: a deal needs payer, payee, currency and items (or lump and totalMinor)`);
    }
    return c;
  });
}

// ---------------------------------------------------------------------------------------------
// Running a case against the real server.
// ---------------------------------------------------------------------------------------------

type AudioRequest = MessageInitShape<typeof AudioStreamRequestSchema>;

/** The request side of one AudioStream: pushed lines, ended once. */
class LineQueue {
  private readonly items: AudioRequest[] = [];
  private waiting: ((item: AudioRequest | undefined) => void) | undefined;
  private ended = false;

  push(item: AudioRequest): void {
    if (this.ended) throw new Error("audio stream closed");
    const w = this.waiting;
    this.waiting = undefined;
    if (w) w(item);
    else this.items.push(item);
  }

  end(): void {
    this.ended = true;
    const w = this.waiting;
    this.waiting = undefined;
    w?.(undefined);
  }

  async *drain(): AsyncGenerator<AudioRequest> {
    try {
      for (;;) {
        const item = this.items.shift() ?? (this.ended ? undefined : await new Promise<AudioRequest | undefined>((r) => (this.waiting = r)));
        if (item === undefined) return;
        yield item;
      }
    } finally {
      this.ended = true;
    }
  }
}

interface Person {
  key: string;
  userId: string;
  profile: AgentProfile;
  spec: CasePerson;
  room: Client<typeof RoomService>;
  contracts: Client<typeof ContractService>;
  panel: PanelRecorder;
  audio: LineQueue;
  audioDone: Promise<void>;
  startedAt: number;
  /** Contract ids this person acted on (signed or declined). */
  handled: Set<string>;
  approvalsAnswered: Map<string, boolean>;
  declined: boolean;
  notes: string[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Time a person takes to say a line of this length, at least 300 ms between lines. */
function speakingGapMs(text: string): number {
  return Math.min(650, 300 + text.length * 3);
}

async function until(cond: () => boolean, timeoutMs: number, stepMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(stepMs);
  }
  return cond();
}

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");
const errText = (err: unknown) => (err instanceof ConnectError ? `${err.code}:${err.rawMessage}` : String(err));

/** Latest state of each contract seen on a panel, by id, in order of first appearance. */
function contractsOn(events: readonly PanelEvent[]): Map<string, Contract> {
  const byId = new Map<string, Contract>();
  for (const e of events) if (e.event.case === "contract") byId.set(e.event.value.id, e.event.value);
  return byId;
}

function approvalsOn(events: readonly PanelEvent[]): Map<string, ApprovalRequest> {
  const byId = new Map<string, ApprovalRequest>();
  for (const e of events) if (e.event.case === "approvalRequest") byId.set(e.event.value.id, e.event.value);
  return byId;
}

/** Acts for a person on their panel as a person would: signs drafts, answers prompts. */
async function actFor(p: Person, stop: { done: boolean }): Promise<void> {
  while (!stop.done) {
    for (const contract of contractsOn(p.panel.events).values()) {
      if (contract.status !== ContractStatus.AWAITING_SIGNATURES || p.handled.has(contract.id)) continue;
      if (contract.signatures.some((s) => s.userId === p.userId)) continue;
      p.handled.add(contract.id);
      const decline = p.spec.declineContract !== undefined && !p.declined;
      await sleep(decline ? 300 : 600); // reading the contract
      const now = contractsOn(p.panel.events).get(contract.id);
      if (now && now.status !== ContractStatus.AWAITING_SIGNATURES) continue; // the other person declined it meanwhile
      try {
        if (decline) {
          p.declined = true;
          await p.room.declineContract({ contractId: contract.id, reason: p.spec.declineContract! });
        } else {
          await p.room.signContract({ contractId: contract.id, textSha256: sha256(contract.text) });
        }
      } catch (err) {
        await sleep(200);
        const later = contractsOn(p.panel.events).get(contract.id);
        if (later?.status === ContractStatus.DECLINED && !decline) continue; // declined by the other person while signing
        p.notes.push(`${p.key} could not ${decline ? "decline" : "sign"}: ${errText(err)}`);
      }
    }
    for (const approval of approvalsOn(p.panel.events).values()) {
      if (approval.status !== ApprovalStatus.PENDING || approval.userId !== p.userId || p.approvalsAnswered.has(approval.id)) continue;
      const approve = (p.spec.approval ?? "approve") === "approve";
      p.approvalsAnswered.set(approval.id, approve);
      await sleep(700); // thinking it over
      try {
        await p.room.answerApproval({ approvalId: approval.id, approve });
      } catch (err) {
        p.notes.push(`${p.key} could not answer approval: ${errText(err)}`);
      }
    }
    await sleep(100);
  }
}

async function join(baseUrl: string, roomId: string, key: string, spec: CasePerson): Promise<Person> {
  const profile = fromJson(AgentProfileSchema, spec.profile);
  const anonymous = createClient(RoomService, grpcTransport(baseUrl));
  const joined = await anonymous.joinRoom({ roomId, profile });
  const transport = grpcTransport(baseUrl, joined.sessionToken);
  const room = createClient(RoomService, transport);
  const audio = new LineQueue();
  audio.push({ message: { case: "format", value: create(AudioFormatSchema, { encoding: AudioEncoding.PCM16LE, sampleRateHz: 16000, channels: 1 }) } });
  const controller = new AbortController();
  const responses = room.audioStream(audio.drain(), { signal: controller.signal });
  const audioDone = (async () => {
    try {
      for await (const _ of responses) void _;
    } catch {
      // the stream ends when the case ends
    }
  })();
  return {
    key,
    userId: joined.userId,
    profile,
    spec,
    room,
    contracts: createClient(ContractService, transport),
    panel: recordPanel(room, roomId),
    audio,
    audioDone,
    startedAt: Date.now(),
    handled: new Set(),
    approvalsAnswered: new Map(),
    declined: false,
    notes: [],
  };
}

/** What the room produced, read back after the talk. */
interface Outcome {
  contracts: Contract[];
  events: PanelEvent[];
  approvals: ApprovalRequest[];
  balances: Map<string, Balance[]>;
  /** Panel seq of each line's transcript, 0n when it never showed. */
  lineSeqs: bigint[];
}

function settled(c: Contract): boolean {
  return [ContractStatus.ACTIVE, ContractStatus.COMPLETED, ContractStatus.DECLINED, ContractStatus.PAYMENT_FAILED].includes(c.status);
}

/** Runs one case in its own room on the server at `baseUrl`. */
export async function runDealCase(baseUrl: string, c: DealCase, roomPrefix = "eval"): Promise<CaseResult> {
  const started = Date.now();
  // A fresh code per run: a room's history belongs to its pair, and case ids may share a long prefix.
  const roomId = `${roomPrefix}-${randomUUID().slice(0, 8)}-${c.id}`.slice(0, 64).replace(/[^A-Za-z0-9_-]/g, "-");
  const keys = Object.keys(c.people) as [string, string];
  const people: Person[] = [];
  const stop = { done: false };
  const acting: Promise<void>[] = [];
  const notes: string[] = [];
  try {
    for (const key of keys) people.push(await join(baseUrl, roomId, key, c.people[key]!));
    const byKey = new Map(people.map((p) => [p.key, p]));
    const [first] = people as [Person, Person];
    if (c.trigger) {
      await first.room.setTriggerKeyword({ roomId, keyword: c.trigger.keyword ?? "handshake", requireBoth: c.trigger.requireBoth ?? false });
    }
    const paired = await until(
      () => first.panel.events.some((e) => e.event.case === "roomStatus" && e.event.value.paired && e.event.value.triggerArmed),
      5000,
    );
    if (!paired) notes.push("room never paired and armed");
    for (const p of people) acting.push(actFor(p, stop));

    const lineSeqs: bigint[] = [];
    for (const line of c.lines) {
      const speaker = byKey.get(line.who)!;
      if (line.after === "signed") {
        const ok = await until(() => [...contractsOn(first.panel.events).values()].some((k) => k.status === ContractStatus.ACTIVE || k.status === ContractStatus.COMPLETED), 12_000);
        if (!ok) notes.push(`waited 12 s for a signed and paid contract before "${line.say.slice(0, 30)}…"; none`);
      } else if (line.after === "declined") {
        const ok = await until(() => {
          const ev = first.panel.events;
          const at = ev.findIndex((e) => e.event.case === "contract" && e.event.value.status === ContractStatus.DECLINED);
          return at >= 0 && ev.slice(at).some((e) => e.event.case === "roomStatus" && e.event.value.triggerArmed);
        }, 12_000);
        if (!ok) notes.push(`waited 12 s for a declined contract and a re-armed room before "${line.say.slice(0, 30)}…"; none`);
      }
      if (line.pauseMs) await sleep(line.pauseMs);
      const startMs = Date.now() - speaker.startedAt;
      const endMs = startMs + 60 * line.say.length;
      speaker.audio.push({ message: { case: "transcript", value: create(DeviceTranscriptSchema, { text: line.say, isFinal: true, startMs, endMs, confidence: 0.95 }) } });
      const echoed = await until(
        () => speaker.panel.events.some((e) => e.event.case === "transcript" && e.event.value.isFinal && e.event.value.speakerUserId === speaker.userId && e.event.value.text === line.say),
        5000,
        20,
      );
      if (!echoed) notes.push(`line not echoed on the panel: "${line.say.slice(0, 30)}…"`);
      const echo = speaker.panel.events.findLast((e) => e.event.case === "transcript" && e.event.value.text === line.say);
      lineSeqs.push(echo?.seq ?? 0n);
      await sleep(speakingGapMs(line.say));
    }

    // Let any stray negotiation, draft or payment show itself, then wait for quiet.
    let lastCount = -1;
    let quietSince = Date.now();
    const deadline = Date.now() + 25_000;
    const minEnd = Date.now() + 3000;
    while (Date.now() < deadline) {
      const count = people.reduce((n, p) => n + p.panel.events.filter((e) => e.event.case !== "transcript").length, 0);
      if (count !== lastCount) {
        lastCount = count;
        quietSince = Date.now();
      }
      const ev = first.panel.events;
      const negotiations = new Map<string, NegotiationStatus>();
      for (const e of ev) if (e.event.case === "negotiation") negotiations.set(e.event.value.id, e.event.value.status);
      const open = [...negotiations.values()].some((s) => s === NegotiationStatus.OPEN);
      const unsettled = [...contractsOn(ev).values()].some((k) => !settled(k));
      if (!open && !unsettled && Date.now() >= minEnd && Date.now() - quietSince >= 2500) break;
      await sleep(100);
    }
    if (Date.now() >= deadline) notes.push("still busy 25 s after the last line (open negotiation, unsigned contract or events)");

    // Read the outcome back from the contract service as well as the panel.
    const contracts = new Map<string, Contract>();
    for (const p of people) {
      for (const k of (await p.contracts.listContracts({ pageSize: 100 })).contracts) {
        const full = (await p.contracts.getContract({ contractId: k.id })).contract;
        if (full) contracts.set(k.id, full);
      }
    }
    const balances = new Map<string, Balance[]>();
    for (const p of people) balances.set(p.key, (await p.contracts.getBalances({})).balances);
    const approvals = people.flatMap((p) => [...approvalsOn(p.panel.events).values()]);
    const events = people.flatMap((p) => p.panel.events);
    notes.push(...people.flatMap((p) => p.notes));
    const outcome: Outcome = { contracts: [...contracts.values()].sort((a, b) => Number(a.createdAtMs - b.createdAtMs)), events, approvals, balances, lineSeqs };
    const { diffs, actual } = judge(c, people, outcome);
    diffs.push(...notes);
    return { id: c.id, pass: diffs.length === 0, diffs, actual, durationMs: Date.now() - started };
  } catch (err) {
    return { id: c.id, pass: false, diffs: [`error: ${errText(err)}`, ...notes], actual: "", durationMs: Date.now() - started };
  } finally {
    stop.done = true;
    await Promise.allSettled(acting);
    for (const p of people) p.audio.end();
    await Promise.allSettled(people.map((p) => p.audioDone));
    await Promise.allSettled(people.map((p) => p.room.leaveRoom({ roomId })));
    await Promise.allSettled(people.map((p) => p.panel.stop()));
  }
}

// ---------------------------------------------------------------------------------------------
// Judging.
// ---------------------------------------------------------------------------------------------

const KIND_NAME: Record<number, string> = {
  [LineItemKind.IMMEDIATE]: "immediate",
  [LineItemKind.ESCROW]: "escrow",
  [LineItemKind.CONDITIONAL]: "escrow",
};

function describeItem(item: LineItem, currency: string): string {
  const money = (m: bigint) => formatMoney(m, currency);
  const price = item.range && item.range.maxMinor > 0n ? `${money(item.range.minMinor)}–${money(item.range.maxMinor)}` : money(item.amountMinor);
  return `"${item.description}" ${price} ${KIND_NAME[item.kind] ?? "?"}`;
}

function describeContract(k: Contract, nameOf: (id: string) => string): string {
  const t = k.terms;
  if (!t) return `contract ${ContractStatus[k.status]} without terms`;
  const items = t.lineItems.map((i) => describeItem(i, t.currency)).join(", ");
  return `${ContractStatus[k.status]} ${nameOf(t.clientUserId)}→${nameOf(t.providerUserId)} ${t.currency} ${formatMoney(t.totalMinor, t.currency)} [${items}]`;
}

function expectedItemText(e: ExpectedItem, currency: string): string {
  const price = e.range ? `${formatMoney(BigInt(e.range[0]), currency)}–${formatMoney(BigInt(e.range[1]), currency)}` : formatMoney(BigInt(e.amountMinor ?? "0"), currency);
  return `${e.about[0]} ${price} ${e.kind}`;
}

function matchesAbout(item: LineItem, e: Pick<ExpectedItem, "about">): boolean {
  const d = item.description.toLowerCase();
  return e.about.some((w) => d.includes(w.toLowerCase()));
}

function amountMatches(item: LineItem, e: ExpectedItem): boolean {
  if (e.amountMinor !== undefined && item.amountMinor !== BigInt(e.amountMinor)) return false;
  if (e.range) {
    if (!item.range || item.range.minMinor !== BigInt(e.range[0]) || item.range.maxMinor !== BigInt(e.range[1])) return false;
  }
  return true;
}

/** Compares what the room produced with what the case expects. */
function judge(c: DealCase, people: Person[], o: Outcome): { diffs: string[]; actual: string } {
  const diffs: string[] = [];
  const ex = c.expect;
  const idOf = (key: string) => people.find((p) => p.key === key)!.userId;
  const nameOf = (id: string) => people.find((p) => p.userId === id)?.key ?? id;
  const live = o.contracts.filter((k) => k.status !== ContractStatus.DECLINED);
  const declined = o.contracts.filter((k) => k.status === ContractStatus.DECLINED);
  const viewer = people[0]!.panel.events;
  const triggers = viewer.filter((e) => e.event.case === "trigger").length;
  const negotiationIds = new Set(viewer.flatMap((e) => (e.event.case === "negotiation" ? [e.event.value.id] : [])));
  const lastNegotiation = new Map<string, Negotiation>();
  for (const e of viewer) if (e.event.case === "negotiation") lastNegotiation.set(e.event.value.id, e.event.value);
  const negotiationText = [...lastNegotiation.values()].map((n) => {
    const offer = n.currentProposal;
    const offered = offer ? ` last offer ${formatMoney(offer.totalMinor, offer.currency)}` : "";
    return `${NegotiationStatus[n.status]} after ${n.rounds.length} rounds${offered}${n.endReason ? ` ("${n.endReason}")` : ""}`;
  });
  const actualParts = [
    live.length === 0 ? "no contract" : live.map((k) => describeContract(k, nameOf)).join(" | "),
    `triggers=${triggers}`,
    `negotiations=${negotiationIds.size}${negotiationText.length ? `: ${negotiationText.join(", ")}` : ""}`,
  ];
  if (declined.length) actualParts.push(`declined=${declined.length}`);
  const errors = [...new Set(o.events.flatMap((e) => (e.event.case === "error" ? [`${e.event.value.stage}/${e.event.value.code}: ${e.event.value.message}`] : [])))];
  if (errors.length) actualParts.push(`panel errors: ${errors.join(" | ")}`);
  if (o.approvals.length) actualParts.push(`approvals=${[...new Set(o.approvals.map((a) => `${nameOf(a.userId)}:${ApprovalStatus[a.status]}`))].join(",")}`);
  const actual = actualParts.join("; ");

  const wantContracts = ex.deal ? 1 : 0;
  if (live.length !== wantContracts) diffs.push(`contracts: expected ${wantContracts}, got ${live.length}`);
  const wantDeclined = ex.declinedContracts ?? 0;
  if (declined.length !== wantDeclined) diffs.push(`declined contracts: expected ${wantDeclined}, got ${declined.length}`);
  if (ex.triggers !== undefined && triggers !== ex.triggers) diffs.push(`triggers: expected ${ex.triggers}, got ${triggers}`);
  const wantNegotiations = ex.negotiations ?? (ex.deal ? 1 + wantDeclined : undefined);
  if (wantNegotiations !== undefined && negotiationIds.size !== wantNegotiations) {
    diffs.push(`negotiations: expected ${wantNegotiations}, got ${negotiationIds.size}`);
  }

  // The payer's approval prompt.
  const payerKey = ex.payer ?? Object.entries(c.people).find(([, p]) => p.approval !== undefined)?.[0];
  if (ex.approvalAsked !== undefined && payerKey) {
    const asked = o.approvals.some((a) => a.userId === idOf(payerKey));
    if (asked !== ex.approvalAsked) diffs.push(`approval prompt to ${payerKey}: expected ${ex.approvalAsked ? "one" : "none"}, got ${asked ? "one" : "none"}`);
  }

  // Nothing above a mandate, for every contract that was not declined.
  for (const k of live) {
    const t = k.terms;
    if (!t) continue;
    const payer = people.find((p) => p.userId === t.clientUserId);
    if (!payer) continue;
    const limit = payer.profile.maxAutoApproveMinor;
    // A limit in another currency cannot be compared without a rate; the agent asking is then the product's call.
    if (t.currency === payer.profile.currency && t.totalMinor > limit) {
      const approved = o.approvals.some((a) => a.userId === payer.userId && a.status === ApprovalStatus.APPROVED && a.amountMinor >= t.totalMinor);
      if (!approved) diffs.push(`total ${formatMoney(t.totalMinor, t.currency)} above ${payer.key}'s max auto-approve ${formatMoney(limit, t.currency)} without their approval`);
    }
  }

  // Money moved only as the contracts say: payee received the immediate items, payer holds the escrow.
  const moved = new Map<string, { received: bigint; held: bigint }>();
  for (const k of live) {
    const t = k.terms;
    if (!t || (k.status !== ContractStatus.ACTIVE && k.status !== ContractStatus.COMPLETED)) continue;
    for (const item of t.lineItems) {
      const payee = moved.get(`${t.providerUserId}/${t.currency}`) ?? { received: 0n, held: 0n };
      const payer = moved.get(`${t.clientUserId}/${t.currency}`) ?? { received: 0n, held: 0n };
      if (item.kind === LineItemKind.IMMEDIATE) payee.received += item.amountMinor;
      else payer.held += item.amountMinor;
      moved.set(`${t.providerUserId}/${t.currency}`, payee);
      moved.set(`${t.clientUserId}/${t.currency}`, payer);
    }
  }
  for (const p of people) {
    for (const b of o.balances.get(p.key) ?? []) {
      const want = moved.get(`${p.userId}/${b.currency}`) ?? { received: 0n, held: 0n };
      if (b.receivedMinor !== want.received || b.heldMinor !== want.held) {
        diffs.push(
          `${p.key}'s balance ${b.currency}: received ${formatMoney(b.receivedMinor, b.currency)} held ${formatMoney(b.heldMinor, b.currency)}, ` +
            `the contract accounts for received ${formatMoney(want.received, b.currency)} held ${formatMoney(want.held, b.currency)}`,
        );
      }
    }
  }

  if (ex.panelExplainsAfterLine !== undefined) {
    const after = o.lineSeqs[ex.panelExplainsAfterLine] ?? 0n;
    const said = o.events.some((e) => e.seq > after && (e.event.case === "agentMessage" || e.event.case === "error"));
    const line = c.lines[ex.panelExplainsAfterLine]?.say ?? "?";
    if (!said) diffs.push(`the panel said nothing after "${line}" (expected a reason why nothing new was negotiated)`);
  }

  const k = live.length === 1 ? live[0] : undefined;
  if (ex.deal && k?.terms) {
    const t = k.terms;
    if (t.clientUserId !== idOf(ex.payer!)) diffs.push(`payer: expected ${ex.payer}, got ${nameOf(t.clientUserId)}`);
    if (t.providerUserId !== idOf(ex.payee!)) diffs.push(`payee: expected ${ex.payee}, got ${nameOf(t.providerUserId)}`);
    if (t.currency !== ex.currency) diffs.push(`currency: expected ${ex.currency}, got ${t.currency}`);
    const cur = ex.currency!;
    const items = ex.items ?? [];
    if (ex.lump) {
      const lump = { ...ex.lump };
      for (const got of t.lineItems) {
        if (!matchesAbout(got, lump)) diffs.push(`item ${describeItem(got, t.currency)} is not about ${lump.about.map((w) => `"${w}"`).join("/")}`);
        if (KIND_NAME[got.kind] !== lump.kind) diffs.push(`item ${describeItem(got, t.currency)}: expected ${lump.kind}`);
      }
    }
    const left = [...t.lineItems];
    const missing: string[] = [];
    for (const e of items) {
      let at = left.findIndex((i) => matchesAbout(i, e) && amountMatches(i, e) && KIND_NAME[i.kind] === e.kind);
      if (at < 0) at = left.findIndex((i) => matchesAbout(i, e) && amountMatches(i, e));
      if (at < 0) at = left.findIndex((i) => matchesAbout(i, e));
      if (at < 0 && items.length === 1 && left.length === 1) at = 0;
      if (at < 0) {
        missing.push(expectedItemText(e, cur));
        continue;
      }
      const got = left.splice(at, 1)[0]!;
      const problems: string[] = [];
      if (!matchesAbout(got, e)) problems.push(`description lacks ${e.about.map((w) => `"${w}"`).join("/")}`);
      if (!amountMatches(got, e)) problems.push("amount");
      if (KIND_NAME[got.kind] !== e.kind) problems.push("kind");
      if (problems.length) diffs.push(`item: expected ${expectedItemText(e, cur)}, got ${describeItem(got, t.currency)} (${problems.join(", ")})`);
    }
    for (const m of missing) diffs.push(`item missing: ${m}`);
    if (!ex.lump) for (const extra of left) diffs.push(`unexpected item: ${describeItem(extra, t.currency)}`);
    const total = ex.totalMinor !== undefined ? BigInt(ex.totalMinor) : items.reduce((s, e) => s + BigInt(e.amountMinor ?? e.range?.[1] ?? "0"), 0n);
    if (t.totalMinor !== total) diffs.push(`total: expected ${formatMoney(total, cur)}, got ${formatMoney(t.totalMinor, t.currency)}`);
    for (const word of ex.absent ?? []) {
      const hit = t.lineItems.find((i) => i.description.toLowerCase().includes(word.toLowerCase()));
      if (hit) diffs.push(`dropped "${word}" is still in the contract: ${describeItem(hit, t.currency)}`);
    }
    const heading = `${k.title}\n${k.text.split("\n")[0] ?? ""}`.toLowerCase();
    for (const word of ex.titleExcludes ?? []) {
      if (heading.includes(word.toLowerCase())) diffs.push(`title says "${word}": "${k.title}" / "${k.text.split("\n")[0]}"`);
    }
    for (const pay of k.payments) {
      if (pay.payerUserId !== t.clientUserId || pay.payeeUserId !== t.providerUserId) diffs.push(`payment ${pay.id} between the wrong people`);
    }
  }
  return { diffs, actual };
}

// ---------------------------------------------------------------------------------------------
// The whole eval.
// ---------------------------------------------------------------------------------------------

/** Options of a whole run. */
export interface EvalOptions {
  /** Cases run at once, each in its own room; 6 by default. */
  concurrency?: number;
  /** Only cases whose id contains one of these. */
  only?: string[];
  /** Receives one line per finished case, and the summary. */
  print?: (line: string) => void;
  /** Folder of cases. */
  dir?: string;
  /** Print what passing cases produced as well. */
  verbose?: boolean;
}

/** The outcome of a whole run. */
export interface EvalReport {
  results: CaseResult[];
  passed: number;
  total: number;
  /** Passed / total, 0–1. */
  rate: number;
}

/** Formats one case result as the eval's output line; `verbose` shows what a passing case produced too. */
export function formatResult(r: CaseResult, verbose = false): string {
  const head = `${r.pass ? "PASS" : "FAIL"} ${r.id} (${(r.durationMs / 1000).toFixed(1)} s)`;
  if (r.pass) return verbose ? `${head}\n     actual:  ${r.actual}` : head;
  return `${head}\n     differs: ${r.diffs.join("; ")}\n     actual:  ${r.actual || "-"}`;
}

/** Starts a server with the embedded engines, runs every case through it over gRPC and reports. */
export async function runDealEval(options: EvalOptions = {}): Promise<EvalReport> {
  const print = options.print ?? (() => {});
  let cases = loadDealCases(options.dir);
  if (options.only?.length) cases = cases.filter((c) => options.only!.some((o) => c.id.includes(o)));
  const app: TestApp = await startTestApp({ AGENT_ENGINE: "offline", SPEECH_ENGINE: "device", TRIGGER_SMART: "false" });
  const results: CaseResult[] = [];
  try {
    const queue = [...cases];
    const worker = async () => {
      for (let c = queue.shift(); c; c = queue.shift()) {
        const r = await runDealCase(app.baseUrl, c);
        results.push(r);
        print(formatResult(r, options.verbose));
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 6) }, worker));
  } finally {
    await app.close();
  }
  results.sort((a, b) => a.id.localeCompare(b.id));
  const passed = results.filter((r) => r.pass).length;
  const rate = results.length === 0 ? 0 : passed / results.length;
  const byPhenomenon = new Map<string, { pass: number; total: number }>();
  for (const r of results) {
    for (const ph of cases.find((c) => c.id === r.id)?.phenomena ?? []) {
      const tally = byPhenomenon.get(ph) ?? { pass: 0, total: 0 };
      tally.total++;
      if (r.pass) tally.pass++;
      byPhenomenon.set(ph, tally);
    }
  }
  const tallies = [...byPhenomenon.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([ph, t]) => `${ph} ${t.pass}/${t.total}`);
  print(`by phenomenon: ${tallies.join(", ")}`);
  print(`deal fidelity: ${passed}/${results.length} passed (${(rate * 100).toFixed(1)} %)`);
  return { results, passed, total: results.length, rate };
}
