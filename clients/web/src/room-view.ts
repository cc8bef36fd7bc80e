import { ConnectError } from "@connectrpc/connect";
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
} from "../../../gen/handshake/v1/events_pb.js";
import type { TranscriptEntry, TriggerEvent } from "../../../gen/handshake/v1/transcript_pb.js";
import { formatMoney, sessionStatusText } from "../../shared/format.js";
import { startMic, PeerPlayer, type MicCapture } from "./audio.js";
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
}

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
  private mic: MicCapture | undefined;
  private muted = false;
  private readonly player: PeerPlayer;

  private readonly linkPill = h("span", { class: "pill", "data-testid": "link-state" }, "connecting");
  private readonly people = h("ul", { class: "people", "data-testid": "participants" });
  private readonly transcriptList = h("ol", { class: "transcript", "data-testid": "transcript" });
  private readonly triggerBox = h("div", { class: "trigger", "data-testid": "trigger-state" });
  private readonly negotiationBox = h("div", { class: "negotiation", "data-testid": "negotiation" });
  private readonly timeline = h("ol", { class: "timeline", "data-testid": "timeline", "aria-label": "What has happened in the deal" });
  private readonly agentBox = h("ol", { class: "agent", "data-testid": "agent-messages" });
  private readonly contractSlot = h("div", { "data-testid": "contract-slot" });
  /** The contract in a sheet over the room, opened when it arrives and from the timeline. */
  private readonly sheet = h("dialog", { class: "sheet", "data-testid": "contract-sheet", "aria-label": "Contract" });
  /** The contract the sheet last opened itself for, so it opens once per contract. */
  private sheetOpenedFor = "";
  /** This person's approval requests by id, as last seen. */
  private readonly approvals = new Map<string, ApprovalRequest>();
  private readonly notices = h("div", { class: "notices", "data-testid": "notices", "aria-live": "polite" });
  private readonly micButton = h("button", { class: "primary", "data-testid": "mic-toggle" }, "Start microphone");
  private readonly muteButton = h("button", { "data-testid": "mute-toggle", disabled: true }, "Mute");
  private readonly micStats = h("span", { class: "muted", "data-testid": "mic-frames" }, "mic off");
  private readonly peerStats = h("span", { class: "muted", "data-testid": "peer-frames", "data-frames": "0" }, "no audio from the other person yet");

  constructor(private readonly deps: RoomViewDeps) {
    this.player = new PeerPlayer(deps.audio);
    const session = deps.session;
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
          session.say(text).catch((err: unknown) => this.notice(`Could not send: ${errorText(err)}`));
        },
      },
      sayInput,
      h("button", { type: "submit", "data-testid": "say-send" }, "Say"),
    );
    const playPeer = h("input", { type: "checkbox", checked: true, "data-testid": "play-peer" });
    playPeer.addEventListener("change", () => (this.player.enabled = playPeer.checked));
    this.micButton.addEventListener("click", () => void this.toggleMic());
    this.muteButton.addEventListener("click", () => {
      this.muted = !this.muted;
      this.muteButton.textContent = this.muted ? "Unmute" : "Mute";
      session.setMuted(this.muted).catch((err: unknown) => this.notice(`Could not ${this.muted ? "mute" : "unmute"}: ${errorText(err)}`));
    });
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
      this.people,
      this.notices,
      h(
        "div",
        { class: "cols" },
        h(
          "div",
          { class: "col talk" },
          h("h2", {}, "Conversation"),
          h("div", { class: "mic" }, this.micButton, this.muteButton, this.micStats, h("label", { class: "inline" }, playPeer, " play the other person"), this.peerStats),
          this.transcriptList,
          sayForm,
        ),
        h(
          "div",
          { class: "col deal" },
          h("div", { class: "deal-head" }, h("h2", {}, "Deal"), this.negotiationBox),
          this.triggerBox,
          this.timeline,
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
  }

  /** Takes one room event. */
  take(event: PanelEvent): void {
    const e = event.event;
    switch (e.case) {
      case "roomStatus":
        this.status = e.value;
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

  /** Updates the peer-audio counter. */
  countPeerFrame(total: number): void {
    if (total % 10 !== 1 && total > 1) return; // refresh the text now and then, not per 20 ms frame
    this.peerStats.textContent = `hearing the other person (${total} frames)`;
    this.peerStats.dataset.frames = String(total);
  }

  /** Stops the microphone; the app calls it when leaving. */
  stop(): void {
    this.mic?.stop();
    this.mic = undefined;
  }

  private async toggleMic(): Promise<void> {
    if (this.mic) {
      this.stop();
      this.micButton.textContent = "Start microphone";
      this.muteButton.disabled = true;
      this.micStats.textContent = "mic off";
      await this.deps.session.flush().catch(() => undefined);
      return;
    }
    this.micButton.disabled = true;
    try {
      let frames = 0;
      this.mic = await startMic(this.deps.audio, this.deps.workletUrl, (samples) => {
        this.deps.session.pushFrame(samples);
        frames++;
        if (frames % 25 === 1) {
          this.micStats.textContent = `mic on — ${this.deps.session.framesSent} frames sent`;
          this.micStats.dataset.frames = String(this.deps.session.framesSent);
        }
      });
      this.micButton.textContent = "Stop microphone";
      this.muteButton.disabled = false;
      this.micStats.textContent = "mic on";
    } catch (err) {
      this.notice(`Microphone unavailable: ${(err as Error).message}. You can type instead.`);
    } finally {
      this.micButton.disabled = false;
    }
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
          ` — ${sessionStatusText(p.sessionStatus)}${p.connected ? "" : ", away"}${p.muted ? ", muted" : ""}`,
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
      h("span", { class: "who" }, this.nameOf(entry.speakerUserId)),
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
