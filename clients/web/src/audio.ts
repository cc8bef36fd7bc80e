import type { AudioFormat, AudioFrame } from "../../../gen/handshake/v1/audio_pb.js";

/*
 * Microphone capture through an AudioWorklet (16 kHz PCM16 frames of 20 ms) and playback of the
 * peer's frames, scheduled back to back on the page's AudioContext.
 */

/** A running microphone capture. */
export interface MicCapture {
  /** Stops the microphone and the worklet. */
  stop(): void;
}

/** A microphone the person can pick: its device id and what the browser calls it. */
export interface Microphone {
  deviceId: string;
  label: string;
}

/** The microphones the browser offers; labels are empty until the page has been allowed one. */
export async function listMicrophones(): Promise<Microphone[]> {
  if (!navigator.mediaDevices?.enumerateDevices) return [];
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices
    .filter((d) => d.kind === "audioinput")
    .map((d, index) => ({ deviceId: d.deviceId, label: d.label || `Microphone ${index + 1}` }));
}

/**
 * How loud a frame is, 0 (silence) to 1 (full scale), on a decibel scale from -60 dBFS so speech
 * moves the meter visibly: the frame's RMS level in dB, mapped linearly.
 */
export function levelOf(samples: Int16Array): number {
  if (samples.length === 0) return 0;
  let sum = 0;
  for (const sample of samples) sum += sample * sample;
  const rms = Math.sqrt(sum / samples.length) / 32768;
  if (rms <= 0) return 0;
  const db = 20 * Math.log10(rms);
  return Math.max(0, Math.min(1, (db + 60) / 60));
}

/**
 * Starts the microphone (`deviceId`, or the browser's default); `onFrame` receives 320-sample
 * Int16 frames (20 ms at 16 kHz). `workletUrl` is the built capture-worklet.js.
 */
export async function startMic(context: AudioContext, workletUrl: string, onFrame: (samples: Int16Array) => void, deviceId?: string): Promise<MicCapture> {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true, ...(deviceId ? { deviceId: { exact: deviceId } } : {}) },
  });
  await context.audioWorklet.addModule(workletUrl);
  if (context.state === "suspended") await context.resume();
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "handshake-capture", { numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1 });
  node.port.onmessage = (message: MessageEvent<Int16Array>) => onFrame(message.data);
  source.connect(node);
  return {
    stop() {
      node.port.onmessage = null;
      source.disconnect();
      node.disconnect();
      for (const track of stream.getTracks()) track.stop();
    },
  };
}

/** Plays the peer's PCM16 frames as they come, with a small jitter margin. */
export class PeerPlayer {
  private format: AudioFormat | undefined;
  private playhead = 0;
  /** When false, frames are counted but not played. */
  enabled = true;

  constructor(private readonly context: AudioContext) {}

  /** The format of the frames that follow. */
  setFormat(format: AudioFormat): void {
    this.format = format;
  }

  /** Schedules one frame right after the previous one (or 60 ms from now after a gap). */
  play(frame: AudioFrame): void {
    if (!this.enabled || !this.format || frame.pcm.byteLength < 2) return;
    const count = Math.floor(frame.pcm.byteLength / 2);
    const view = new DataView(frame.pcm.buffer, frame.pcm.byteOffset, count * 2);
    const buffer = this.context.createBuffer(1, count, this.format.sampleRateHz);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < count; i++) channel[i] = view.getInt16(i * 2, true) / 32768;
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.context.destination);
    const now = this.context.currentTime;
    if (this.playhead < now + 0.02) this.playhead = now + 0.06;
    source.start(this.playhead);
    this.playhead += buffer.duration;
  }
}
