import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ContractStatus,
  NegotiationStatus,
  type Contract,
  type EscrowHold,
  type Milestone,
  type Negotiation,
  type Payment,
} from "../../../gen/handshake/v1/deal_pb.js";
import {
  AgentMessageKind,
  ApprovalStatus,
  type AgentMessage,
  type ApprovalRequest,
  type ExecutionStep,
  type PanelEvent,
  type RoomStatus,
  type SameSideWarning,
} from "../../../gen/handshake/v1/events_pb.js";
import { AgentProfileSchema, PartyRole, type AgentProfile } from "../../../gen/handshake/v1/profile_pb.js";
import type { TranscriptEntry, TriggerEvent } from "../../../gen/handshake/v1/transcript_pb.js";
import { formatMoney, sameSideText, sessionStatusText, sideWords } from "../../shared/format.js";
import { PeerPlayer } from "./audio.js";
import { balancesView } from "./balances.js";
import { CallPanel } from "./call-panel.js";
import { contractCard } from "./contract-view.js";
import { negotiationWords, timelineEntries } from "./deal-timeline.js";
import { h, replace } from "./dom.js";
import type { LinkState, RoomSession } from "./room-session.js";

/*
 * The live room: who is here, the microphone and the peer's audio, both people's transcript,
 * the trigger, the agents' negotiation, the contract with its Sign button, and the money.
 */

/** What the room screen needs from the app. */
export interface RoomViewDeps {
  session: RoomSession;
  audio: AudioContext;
  /** URL of the built capture worklet. */
  workletUrl: string;
  shareLink: string;
  onLeave: () => void;
  /** The person switched side from the same-side warning: keep it as their profile on this device. */
  onProfileChanged: (profile: AgentProfile) => void;
}

/** Codes after which sending the same line again cannot help: it is refused, not lost. */
const REFUSED_CODES = new Set([Code.InvalidArgument, Code.PermissionDenied, Code.ResourceExhausted, Code.FailedPrecondition, Code.OutOfRange]);

/** The room screen; feed it panel events with `take` and link changes with `link`. */
export class RoomView {
  readonly element: HTMLElement;
  private status: RoomStatus | undefined;
  private trigger: TriggerEvent | undefined;
  private negotiation: Negotiation | undefined;
  private contract: Contract | undefined;
  private readonly transcript = new Map<string, HTMLElement>();
  private readonly agentMessages: AgentMessage[] = [];
  private readonly steps: ExecutionStep[] = [];
  private payments: Payment[] = [];
  private holds: EscrowHold[] = [];
  private milestones: Milestone[] = [];
  private readonly player: PeerPlayer;
  private readonly call: CallPanel;
  /** Lines typed and not yet taken by the server, oldest first; sent when the link is back. */
  private readonly outbox: string[] = [];
  private sendingOutbox = false;
  private live = false;
  /** The latest same-side warning while it stands. */
  private sameSide: SameSideWarning | undefined;

  private readonly linkPill = h("span", { class: "pill", "data-testid": "link-state" }, "connecting");
  private readonly people = h("ul", { class: "people", "data-testid": "participants" });
  private readonly transcriptList = h("ol", { class: "transcript", "data-testid": "transcript", tabindex: 0, "aria-label": "What was said" });
  private readonly triggerBox = h("div", { class: "trigger", "data-testid": "trigger-state" });
  private readonly negotiationBox = h("div", { class: "negotiation", "data-testid": "negotiation" });
  private readonly timeline = h("ol", { class: "timeline", "data-testid": "timeline", "aria-label": "What has happened in the deal" });
  private readonly agentBox = h("ol", { class: "agent", "data-testid": "agent-messages", tabindex: 0, "aria-label": "What your agent said" });
  private readonly contractSlot = h("div", { "data-testid": "contract-slot" });
  /** The contract in a sheet over the room, opened when it arrives and from the timeline. */
  private readonly sheet = h("dialog", { class: "sheet", "data-testid": "contract-sheet", "aria-label": "Contract" });
  /** The contract the sheet last opened itself for, so it opens once per contract. */
  private sheetOpenedFor = "";
  /** This person's approval requests by id, as last seen. */
  private readonly approvals = new Map<string, ApprovalRequest>();
  private readonly notices = h("div", { class: "notices", "data-testid": "notices", "aria-live": "polite" });
  private readonly outboxList = h("ol", { class: "outbox", "data-testid": "outbox", "aria-label": "Lines waiting to be sent" });
  private readonly reconnecting = h("p", { class: "reconnecting", "data-testid": "reconnecting", role: "status", hidden: true });
  private readonly sameSideBox = h("div", { class: "same-side", "data-testid": "same-side", role: "alert", hidden: true });
  private readonly balancesSlot = h("div", { "data-testid": "balances-slot" });
  /** What this person's agent is doing now, in a word or two. */
  private readonly agentState = h("span", { class: "pill agent-state", "data-testid": "agent-state", role: "status" });

  constructor(private readonly deps: RoomViewDeps) {
    this.player = new PeerPlayer(deps.audio);
    const session = deps.session;
    this.call = new CallPanel({ session, audio: deps.audio, workletUrl: deps.workletUrl, player: this.player, notice: (text) => this.notice(text) });
    const sayInput = h("input", { "data-testid": "say-input", "aria-label": "What you say",  placeholder: "Type what you say (sent as an on-device transcript)…", maxlength: 4000, autocomplete: "off" });
    const sayForm = h(
      "form",
      {
        class: "say",
        onsubmit: (event: Event) => {
          event.preventDefault();
          const text = sayInput.value.trim();
          if (text === "") return;
          sayInput.value = "";
          this.outbox.push(text);
          this.renderOutbox();
          void this.sendOutbox();
        },
      },
      sayInput,
      h("button", { type: "submit", "data-testid": "say-send" }, "Say"),
    );
    const share = h("input", { readonly: true, value: deps.shareLink, class: "share", "data-testid": "share-link", "aria-label": "Link to send the other person" });
    const copy = h("button", {}, "Copy link");
    copy.addEventListener("click", () => {
      share.select();
      void navigator.clipboard?.writeText(deps.shareLink).then(() => (copy.textContent = "Copied"));
    });
    const leave = h("button", { class: "danger", "data-testid": "leave" }, "Leave room");
    leave.addEventListener("click", () => void this.leave());

    this.element = h(
      "section",
      { class: "room", "data-testid": "room-screen" },
      h("div", { class: "bar" }, h("span", {}, "Room ", h("code", { "data-testid": "room-code" }, session.roomId)), share, copy, this.linkPill, leave),
      this.reconnecting,
      this.people,
      this.sameSideBox,
      this.notices,
      h(
        "div",
        { class: "cols" },
        h(
          "div",
          { class: "col talk" },
          h("h2", {}, "Conversation"),
          this.call.element,
          this.transcriptList,
          this.outboxList,
          sayForm,
        ),
        h(
          "div",
          { class: "col deal" },
          h("div", { class: "deal-head" }, h("h2", {}, "Deal"), this.agentState, this.negotiationBox),
          this.triggerBox,
          this.timeline,
          this.balancesSlot,
          h("details", { class: "agent-wrap" }, h("summary", {}, "What your agent said"), this.agentBox),
        ),
      ),
      this.sheet,
    );
    const close = h("button", { type: "button", class: "sheet-close", "data-testid": "close-contract", onclick: () => this.sheet.close() }, "Close");
    this.sheet.append(h("div", { class: "sheet-bar" }, h("h2", {}, "Contract"), close), this.contractSlot);
    this.renderTrigger();
    this.renderNegotiation();
  }

  /** Shows the panel stream's connection state. */
  link(state: LinkState): void {
    if (state.state === "reconnecting" && this.linkPill.dataset.state !== "reconnecting") {
      this.linkPill.dataset.reconnects = String(Number(this.linkPill.dataset.reconnects ?? "0") + 1);
    }
    this.linkPill.dataset.state = state.state;
    this.linkPill.className = `pill link-${state.state}`;
    this.linkPill.textContent =
      state.state === "reconnecting" ? `reconnecting in ${Math.round(state.inMs / 100) / 10} s (${state.reason})` : state.state === "live" ? "live" : state.state;
    const wasLive = this.live;
    this.live = state.state === "live";
    // The banner stays from the first lost connection until the stream is live again, then goes.
    if (state.state === "reconnecting") {
      this.reconnecting.hidden = false;
      this.reconnecting.textContent = `Reconnecting… (${state.reason}). What you type is kept and sent when the connection is back.`;
    } else if (this.live) this.reconnecting.hidden = true;
    if (this.live && !wasLive) void this.sendOutbox();
  }

  /** Takes one room event. */
  take(event: PanelEvent): void {
    const e = event.event;
    switch (e.case) {
      case "roomStatus":
        this.status = e.value;
        this.call.setStatus(e.value);
        this.renderSameSide();
        this.renderPeople();
        this.renderTrigger();
        this.renderTimeline();
        return;
      case "transcript":
        this.addTranscript(e.value);
        return;
      case "trigger":
        this.trigger = e.value;
        this.renderTrigger();
        this.renderTimeline();
        return;
      case "agentMessage":
        // Only what the agent says in words; tool calls and their results are machinery.
        if (e.value.kind !== AgentMessageKind.TEXT || e.value.isError) return;
        this.agentMessages.push(e.value);
        this.agentBox.append(h("li", {}, e.value.text));
        this.agentBox.scrollTop = this.agentBox.scrollHeight;
        return;
      case "negotiation":
        this.negotiation = e.value;
        this.renderNegotiation();
        return;
      case "contract":
        if (this.contract?.id !== e.value.id) {
          this.payments = [];
          this.holds = [];
          this.milestones = [];
        }
        this.contract = e.value;
        this.renderContract();
        return;
      case "executionStep":
        this.steps.push(e.value);
        this.renderTimeline();
        return;
      case "payment":
        this.payments = upsert(this.payments, e.value);
        this.renderContract();
        return;
      case "escrowHold":
        this.holds = upsert(this.holds, e.value);
        this.renderContract();
        return;
      case "milestone":
        this.milestones = upsert(this.milestones, e.value);
        this.renderContract();
        return;
      case "approvalRequest":
        this.approvals.set(e.value.id, e.value);
        this.renderTimeline();
        return;
      case "sameSide":
        this.sameSide = e.value.cleared ? undefined : e.value;
        this.renderSameSide();
        return;
      case "gap":
        // What the panel shows is the room's state (JoinRoom's snapshot and later events), so only say so.
        this.notice(`Some earlier room events are no longer kept (after #${e.value.afterSeq}).`);
        return;
      case "error":
        this.notice(`${e.value.stage}: ${e.value.message}${e.value.retryable ? " (retrying)" : ""}`);
        return;
      case undefined:
        return;
    }
  }

  /** The peer's audio, for playback and the counter. */
  peerAudio(): PeerPlayer {
    return this.player;
  }

  /** One frame of the other person's audio arrived, for the connection-quality indicator. */
  peerFrame(): void {
    this.call.peerFrame();
  }

  /** Stops the microphone and the call's indicators; the app calls it when leaving. */
  stop(): void {
    this.call.stop();
  }

  /** Sends the kept lines in order while the link is live; a line lost on the way stays for the next try. */
  private async sendOutbox(): Promise<void> {
    if (this.sendingOutbox) return;
    this.sendingOutbox = true;
    try {
      while (this.live && this.outbox.length > 0) {
        const text = this.outbox[0]!;
        try {
          await this.deps.session.say(text);
        } catch (err) {
          if (!REFUSED_CODES.has(ConnectError.from(err).code)) {
            // Not refused, only not delivered: keep it, and try again shortly even if the link looks live.
            setTimeout(() => void this.sendOutbox(), 2_000);
            return;
          }
          this.notice(`Could not send “${text}”: ${errorText(err)}`);
        }
        this.outbox.shift();
        this.renderOutbox();
      }
    } finally {
      this.sendingOutbox = false;
      this.renderOutbox();
    }
  }

  private renderOutbox(): void {
    replace(
      this.outboxList,
      ...this.outbox.map((text) => h("li", { class: "unsent", "data-testid": "unsent-line" }, h("span", { class: "who" }, this.live ? "Sending…" : "Not sent yet — kept until you are back online"), h("span", { class: "text" }, text))),
    );
  }

  /** Shows the same-side warning while it stands, with a one-tap switch to the other side. */
  private renderSameSide(): void {
    const warning = this.sameSide;
    const participants = this.status?.participants ?? [];
    const roles = new Set(participants.map((p) => p.role));
    // A room status after the warning can already show it is over (someone left or switched).
    const stands = warning !== undefined && participants.length === 2 && roles.size === 1 && !roles.has(PartyRole.UNSPECIFIED);
    if (!stands) {
      this.sameSideBox.hidden = true;
      replace(this.sameSideBox);
      return;
    }
    const mine = this.deps.session.currentProfile;
    const other = mine.role === PartyRole.CLIENT ? PartyRole.PROVIDER : PartyRole.CLIENT;
    const button = h("button", { class: "primary", "data-testid": "switch-side" }, `Switch me to ${sideWords(other)}`);
    button.addEventListener("click", () => {
      button.disabled = true;
      const switched = create(AgentProfileSchema, { ...mine, role: other });
      this.deps.session.setProfile(switched).then(
        () => this.deps.onProfileChanged(switched),
        (err: unknown) => {
          button.disabled = false;
          this.notice(`Could not switch: ${errorText(err)}`);
        },
      );
    });
    this.sameSideBox.hidden = false;
    replace(this.sameSideBox, h("p", {}, h("strong", {}, "Same side. "), sameSideText(warning, (id) => this.nameOf(id))), button);
  }

  private renderBalances(): void {
    replace(this.balancesSlot, this.payments.length > 0 || this.holds.length > 0 ? balancesView(this.deps.session.userId, this.payments, this.holds) : undefined);
  }

  private async leave(): Promise<void> {
    this.stop();
    await this.deps.session.leave().catch(() => undefined);
    this.deps.onLeave();
  }

  private notice(text: string): void {
    const item = h("p", { class: "notice" }, text);
    this.notices.append(item);
    while (this.notices.childElementCount > 4) this.notices.firstElementChild?.remove();
  }

  private nameOf(userId: string): string {
    if (userId === this.deps.session.userId) return "You";
    return this.status?.participants.find((p) => p.userId === userId)?.displayName ?? this.contract?.parties.find((p) => p.userId === userId)?.displayName ?? "The other person";
  }

  private agentOf(userId: string): string {
    return userId === this.deps.session.userId ? "Your agent" : `${this.nameOf(userId)}'s agent`;
  }

  private renderPeople(): void {
    const status = this.status;
    if (!status) return;
    replace(
      this.people,
      ...status.participants.map((p) =>
        h(
          "li",
          { class: p.connected ? "here" : "away" },
          h("strong", {}, p.userId === this.deps.session.userId ? `${p.displayName} (you)` : p.displayName),
          ` — ${p.role === PartyRole.UNSPECIFIED ? "" : `${sideWords(p.role)}, `}${sessionStatusText(p.sessionStatus)}${p.connected ? "" : ", away"}${p.muted ? ", muted" : ""}`,
        ),
      ),
      status.participants.length < 2 ? h("li", { class: "waiting" }, "Waiting for the other person — send them the link.") : undefined,
    );
  }

  private addTranscript(entry: TranscriptEntry): void {
    const mine = entry.speakerUserId === this.deps.session.userId;
    const item = h(
      "li",
      { class: `${mine ? "mine" : "theirs"}${entry.isFinal ? "" : " partial"}`, "data-final": entry.isFinal ? "true" : "false" },
      h(
        "span",
        { class: "who" },
        this.nameOf(entry.speakerUserId),
        entry.receivedAtMs > 0n ? h("time", { datetime: new Date(Number(entry.receivedAtMs)).toISOString() }, new Date(Number(entry.receivedAtMs)).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })) : undefined,
        entry.isFinal ? undefined : h("span", { class: "hearing" }, "still speaking…"),
      ),
      h("span", { class: "text" }, entry.text),
    );
    const existing = this.transcript.get(entry.id);
    if (existing) existing.replaceWith(item);
    else this.transcriptList.append(item);
    this.transcript.set(entry.id, item);
    this.transcriptList.scrollTop = this.transcriptList.scrollHeight;
  }

  private renderTrigger(): void {
    const status = this.status;
    const keyword = status?.triggerKeyword ?? "";
    const input = h("input", { value: keyword, maxlength: 50, class: "keyword", "data-testid": "keyword-input", "aria-label": "trigger keyword" });
    const form = h(
      "form",
      {
        class: "inline",
        onsubmit: (event: Event) => {
          event.preventDefault();
          const word = input.value.trim();
          if (word === "" || word === keyword) return;
          this.deps.session.room.setTriggerKeyword({ roomId: this.deps.session.roomId, keyword: word }).catch((err: unknown) => this.notice(`Keyword not changed: ${errorText(err)}`));
        },
      },
      input,
      h("button", { type: "submit" }, "Set keyword"),
    );
    const state = !status
      ? "Connecting…"
      : !status.paired
        ? "Waiting for the other person."
        : status.activeNegotiationId
          ? "The agents are negotiating."
          : status.triggerArmed
            ? keyword
              ? `Listening. Say “${keyword}” when you have agreed, to make it a deal.`
              : "Listening. Say the trigger word when you have agreed, to make it a deal."
            : this.contract
              ? "Deal made: the contract is in the timeline below."
              : "Not listening for a deal right now.";
    replace(
      this.triggerBox,
      h("p", { class: status?.triggerArmed ? "armed" : "", "data-armed": status?.triggerArmed ? "true" : "false" }, state),
      form,
    );
  }

  private renderNegotiation(): void {
    const n = this.negotiation;
    replace(
      this.negotiationBox,
      n ? h("span", { class: `pill neg-${NegotiationStatus[n.status]?.toLowerCase() ?? ""}`, "data-testid": "negotiation-status" }, negotiationWords(n.status)) : undefined,
    );
    this.renderTimeline();
  }

  /** Redraws the deal timeline from what the room has seen. */
  private renderTimeline(): void {
    this.renderAgentState();
    const negotiating = Boolean(this.status?.activeNegotiationId) && (!this.negotiation || this.negotiation.status === NegotiationStatus.OPEN);
    const entries = timelineEntries(
      {
        trigger: this.trigger,
        negotiation: this.negotiation,
        negotiating,
        contract: this.contract,
        payments: this.payments,
        holds: this.holds,
        milestones: this.milestones,
        steps: this.steps,
      },
      {
        nameOf: (id) => this.nameOf(id),
        agentOf: (id) => this.agentOf(id),
        openContract: () => this.openSheet(),
        approvals: this.approvalElements(),
      },
    );
    replace(this.timeline, ...(entries.length > 0 ? entries : [h("li", { class: "event empty" }, h("p", { class: "muted" }, "Nothing yet. Talk it through; when you both agree, say the trigger word and your agents take it from there."))]));
  }

  private renderAgentState(): void {
    const me = this.deps.session.userId;
    const asking = [...this.approvals.values()].some((a) => a.userId === me && a.status === ApprovalStatus.PENDING);
    const c = this.contract;
    const mustSign = c?.status === ContractStatus.AWAITING_SIGNATURES && !c.signatures.some((s) => s.userId === me);
    const [state, words] = !this.status?.paired
      ? ["waiting", "Your agent waits for the other person"]
      : asking
        ? ["asking", "Your agent is waiting for your answer"]
        : this.status.activeNegotiationId
          ? ["negotiating", "Your agent is negotiating"]
          : mustSign
            ? ["signing", "Waiting for your signature"]
            : this.status.triggerArmed
              ? ["listening", "Your agent is listening"]
              : ["idle", "Your agent is standing by"];
    this.agentState.dataset.state = state;
    this.agentState.className = `pill agent-state agent-${state}`;
    this.agentState.textContent = words;
  }

  private openSheet(): void {
    if (!this.sheet.open && this.sheet.isConnected) this.sheet.showModal();
  }

  /** The agent's questions to this person: Approve / Decline while pending, the answer after. */
  private approvalElements(): HTMLElement[] {
    const mine = [...this.approvals.values()].filter((a) => a.userId === this.deps.session.userId);
    return mine.map((request) => {
        const pending = request.status === ApprovalStatus.PENDING;
        const limit = formatMoney(request.limitMinor, request.currency);
        const answer = (approve: boolean) => {
          for (const b of buttons) b.disabled = true;
          this.deps.session.answerApproval(request.id, approve).then(
            (answered) => {
              this.approvals.set(answered.id, answered);
              this.renderTimeline();
            },
            (err: unknown) => {
              for (const b of buttons) b.disabled = false;
              this.notice(`Could not answer: ${errorText(err)}`);
            },
          );
        };
        const approve = h("button", { class: "primary", "data-testid": "approval-approve" }, "Approve");
        const decline = h("button", { class: "danger", "data-testid": "approval-decline" }, "Decline");
        const buttons = [approve, decline];
        approve.addEventListener("click", () => answer(true));
        decline.addEventListener("click", () => answer(false));
        return h(
          "div",
          { class: `approval ${pending ? "pending" : ""}`, "data-testid": "approval", "data-status": ApprovalStatus[request.status] ?? "" },
          h("p", {}, h("strong", {}, "Your agent asks: "), `${request.summary}. That is above your auto-approve limit of ${limit}.`),
          pending ? h("div", { class: "actions" }, approve, decline) : h("p", { class: "muted" }, approvalStatusWords(request.status)),
        );
    });
  }

  private renderContract(): void {
    const contract = this.contract;
    this.renderBalances();
    if (!contract) return;
    this.renderTimeline();
    // The sheet opens by itself once, when a contract waits for this person's signature.
    const mustSign = contract.status === ContractStatus.AWAITING_SIGNATURES && contract.parties.some((p) => p.userId === this.deps.session.userId) && !contract.signatures.some((sig) => sig.userId === this.deps.session.userId);
    if (mustSign && this.sheetOpenedFor !== contract.id) {
      this.sheetOpenedFor = contract.id;
      this.openSheet();
    }
    replace(
      this.contractSlot,
      contractCard(
        contract,
        { payments: this.payments, holds: this.holds, milestones: this.milestones },
        {
          userId: this.deps.session.userId,
          contracts: this.deps.session.contracts,
          // The panel brings the signed contract (and everything after it) in order; the
          // response could be older than what the panel already showed, so it is not used.
          sign: async (c) => {
            await this.deps.session.sign(c);
          },
          decline: async (c, reason) => {
            await this.deps.session.declineContract(c, reason);
          },
          onMilestone: (m) => {
            this.milestones = upsert(this.milestones, m);
            this.renderContract();
          },
          onError: (message) => this.notice(message),
        },
      ),
    );
  }
}

function approvalStatusWords(status: ApprovalStatus): string {
  switch (status) {
    case ApprovalStatus.APPROVED:
      return "You approved it; your agent goes on.";
    case ApprovalStatus.DECLINED:
      return "You declined it; your agent walked away.";
    case ApprovalStatus.EXPIRED:
      return "The negotiation ended before you answered.";
    default:
      return "Waiting for your answer.";
  }
}

function upsert<T extends { id: string; updatedAtMs: bigint }>(list: T[], item: T): T[] {
  const index = list.findIndex((x) => x.id === item.id);
  if (index < 0) return [...list, item];
  if ((list[index]?.updatedAtMs ?? 0n) > item.updatedAtMs) return list;
  const copy = [...list];
  copy[index] = item;
  return copy;
}

function errorText(err: unknown): string {
  return err instanceof ConnectError ? err.rawMessage : (err as Error).message;
}
