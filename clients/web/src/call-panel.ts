import type { RoomStatus } from "../../../gen/handshake/v1/events_pb.js";
import { levelOf, listMicrophones, startMic, type MicCapture, type PeerPlayer } from "./audio.js";
import { h, replace } from "./dom.js";
import type { RoomSession } from "./room-session.js";

/*
 * The call: which microphone, on or off, muted, how loud it is now, how long the two have been
 * on the call, and whether the other person is here and how well their audio arrives.
 */

/** What the call panel needs from the room screen. */
export interface CallPanelDeps {
  session: RoomSession;
  audio: AudioContext;
  /** URL of the built capture worklet. */
  workletUrl: string;
  player: PeerPlayer;
  notice: (text: string) => void;
}

/** How the other person's audio arrives, judged from the frames of the last two seconds. */
export type PeerQuality = "good" | "fair" | "poor" | "silent" | "away" | "absent";

/** Seconds of peer frames the quality is judged over. */
const QUALITY_WINDOW_MS = 2_000;
/** Frames a second a talking peer sends (20 ms each). */
const FRAMES_PER_SECOND = 50;

/** The judged quality from the frames that arrived in the window. */
export function peerQuality(framesInWindow: number, peer: { connected: boolean; muted: boolean } | undefined): PeerQuality {
  if (!peer) return "absent";
  if (!peer.connected) return "away";
  const expected = (FRAMES_PER_SECOND * QUALITY_WINDOW_MS) / 1000;
  if (framesInWindow >= expected * 0.8) return "good";
  if (framesInWindow >= expected * 0.4) return "fair";
  if (framesInWindow > 0) return "poor";
  return "silent";
}

function qualityWords(quality: PeerQuality, muted: boolean): string {
  switch (quality) {
    case "good":
      return "good connection";
    case "fair":
      return "audio a little choppy";
    case "poor":
      return "poor connection — audio breaking up";
    case "silent":
      return muted ? "muted" : "microphone off";
    case "away":
      return "connection lost — waiting for them to come back";
    case "absent":
      return "";
  }
}

/** m:ss, or h:mm:ss after an hour. */
export function callClock(elapsedMs: number): string {
  const total = Math.max(0, Math.floor(elapsedMs / 1000));
  const s = String(total % 60).padStart(2, "0");
  const m = Math.floor(total / 60) % 60;
  const hours = Math.floor(total / 3600);
  return hours > 0 ? `${hours}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** The call controls and indicators; feed it room statuses and the peer's frames. */
export class CallPanel {
  readonly element: HTMLElement;
  private mic: MicCapture | undefined;
  private muted = false;
  private level = 0;
  private peak = 0;
  private pairedSinceMs: number | undefined;
  private status: RoomStatus | undefined;
  private readonly peerArrivals: number[] = [];
  private readonly ticker: ReturnType<typeof setInterval>;

  private readonly devices = h("select", { "data-testid": "mic-device", "aria-label": "Microphone" });
  private readonly micButton = h("button", { class: "primary", "data-testid": "mic-toggle" }, "Start microphone");
  private readonly muteButton = h("button", { "data-testid": "mute-toggle", disabled: true }, "Mute");
  private readonly meter = h("meter", { class: "level", "data-testid": "mic-level", min: 0, max: 1, low: 0.25, high: 0.9, optimum: 0.6, value: 0, "aria-label": "Microphone level", "data-peak": "0" });
  private readonly micState = h("span", { class: "muted", "data-testid": "mic-state" }, "mic off");
  private readonly timer = h("span", { class: "call-timer", role: "timer", "data-testid": "call-timer", "aria-label": "Time on the call" }, "—");
  private readonly peer = h("p", { class: "peer", "data-testid": "peer-presence", "data-quality": "absent", "data-frames": "0" });
  private peerFrames = 0;
  private readonly onDeviceChange = () => void this.refreshDevices();

  constructor(private readonly deps: CallPanelDeps) {
    const playPeer = h("input", { type: "checkbox", checked: true, "data-testid": "play-peer" });
    playPeer.addEventListener("change", () => (deps.player.enabled = playPeer.checked));
    this.micButton.addEventListener("click", () => void this.toggleMic());
    this.muteButton.addEventListener("click", () => this.toggleMute());
    this.devices.addEventListener("change", () => {
      // Switching microphones while talking restarts capture on the chosen one.
      if (this.mic) void this.restartMic();
    });
    navigator.mediaDevices?.addEventListener?.("devicechange", this.onDeviceChange);
    void this.refreshDevices();
    this.element = h(
      "div",
      { class: "call", "data-testid": "call" },
      h("div", { class: "call-head" }, this.peer, this.timer),
      h("div", { class: "mic" }, this.devices, this.micButton, this.muteButton, this.meter, this.micState),
      h("label", { class: "inline play-peer" }, playPeer, " play the other person"),
    );
    this.renderPeer();
    this.ticker = setInterval(() => this.tick(), 100);
  }

  /** Takes the room's latest status: presence, muting and the call's start. */
  setStatus(status: RoomStatus): void {
    this.status = status;
    if (status.paired && this.pairedSinceMs === undefined) this.pairedSinceMs = Date.now();
    if (!status.paired) this.pairedSinceMs = undefined;
    this.renderPeer();
    this.renderTimer();
  }

  /** One frame of the other person's audio arrived. */
  peerFrame(): void {
    this.peerFrames++;
    this.peerArrivals.push(performance.now());
  }

  /** Stops the microphone and the indicators; the room calls it when leaving. */
  stop(): void {
    clearInterval(this.ticker);
    navigator.mediaDevices?.removeEventListener?.("devicechange", this.onDeviceChange);
    this.stopMic();
  }

  private other() {
    return this.status?.participants.find((p) => p.userId !== this.deps.session.userId);
  }

  private tick(): void {
    // The meter falls back smoothly between frames rather than flickering at 50 updates a second.
    this.meter.value = this.level;
    this.level *= 0.7;
    const cutoff = performance.now() - QUALITY_WINDOW_MS;
    while ((this.peerArrivals[0] ?? Infinity) < cutoff) this.peerArrivals.shift();
    this.renderPeer();
    this.renderTimer();
  }

  private renderTimer(): void {
    this.timer.textContent = this.pairedSinceMs === undefined ? "not on a call yet" : `on the call ${callClock(Date.now() - this.pairedSinceMs)}`;
  }

  private renderPeer(): void {
    const other = this.other();
    const quality = peerQuality(this.peerArrivals.length, other);
    this.peer.dataset.quality = quality;
    this.peer.dataset.frames = String(this.peerFrames);
    if (!other) {
      if (this.peer.dataset.shown !== "absent") replace(this.peer, h("span", { class: "dot absent", "aria-hidden": "true" }), "Waiting for the other person to join");
      this.peer.dataset.shown = "absent";
      return;
    }
    const shown = `${other.displayName}|${quality}|${other.muted}`;
    if (this.peer.dataset.shown === shown) return;
    this.peer.dataset.shown = shown;
    replace(this.peer, h("span", { class: `dot ${quality}`, "aria-hidden": "true" }), h("strong", {}, other.displayName), ` ${other.connected ? "is here" : "is away"}`, h("span", { class: "quality" }, ` · ${qualityWords(quality, other.muted)}`));
  }

  private async refreshDevices(): Promise<void> {
    const chosen = this.devices.value;
    const mics = await listMicrophones().catch(() => []);
    replace(this.devices, ...(mics.length > 0 ? mics.map((m) => h("option", { value: m.deviceId }, m.label)) : [h("option", { value: "" }, "Default microphone")]));
    if (mics.some((m) => m.deviceId === chosen)) this.devices.value = chosen;
  }

  private onFrame(samples: Int16Array): void {
    this.deps.session.pushFrame(samples);
    const level = this.muted ? 0 : levelOf(samples);
    if (level > this.level) this.level = level;
    if (level > this.peak) {
      this.peak = level;
      this.meter.dataset.peak = level.toFixed(2);
    }
  }

  private async toggleMic(): Promise<void> {
    if (this.mic) {
      this.stopMic();
      // What was said so far is one utterance: end it now rather than waiting for silence.
      await this.deps.session.flush().catch(() => undefined);
      return;
    }
    this.micButton.disabled = true;
    try {
      this.mic = await startMic(this.deps.audio, this.deps.workletUrl, (samples) => this.onFrame(samples), this.devices.value || undefined);
      this.micButton.textContent = "Stop microphone";
      this.muteButton.disabled = false;
      this.micState.textContent = this.muted ? "muted" : "mic on";
      this.micState.dataset.state = "on";
      // Labels appear once the browser has been allowed a microphone.
      await this.refreshDevices();
    } catch (err) {
      this.deps.notice(`Microphone unavailable: ${(err as Error).message}. You can type instead.`);
    } finally {
      this.micButton.disabled = false;
    }
  }

  private async restartMic(): Promise<void> {
    this.stopMic();
    await this.toggleMic();
  }

  private stopMic(): void {
    this.mic?.stop();
    this.mic = undefined;
    this.level = 0;
    this.micButton.textContent = "Start microphone";
    this.muteButton.disabled = true;
    this.micState.textContent = "mic off";
    this.micState.dataset.state = "off";
  }

  private toggleMute(): void {
    this.muted = !this.muted;
    this.muteButton.textContent = this.muted ? "Unmute" : "Mute";
    this.muteButton.setAttribute("aria-pressed", String(this.muted));
    this.micState.textContent = this.muted ? "muted" : "mic on";
    this.deps.session.setMuted(this.muted).catch((err: unknown) => this.deps.notice(`Could not ${this.muted ? "mute" : "unmute"}: ${(err as Error).message}`));
  }
}
