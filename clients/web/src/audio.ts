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

/**
 * Starts the microphone; `onFrame` receives 320-sample Int16 frames (20 ms at 16 kHz).
 * `workletUrl` is the built capture-worklet.js.
 */
export async function startMic(context: AudioContext, workletUrl: string, onFrame: (samples: Int16Array) => void): Promise<MicCapture> {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
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
