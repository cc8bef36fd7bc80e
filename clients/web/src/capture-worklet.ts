/*
 * AudioWorklet processor: takes the microphone at the AudioContext's rate, resamples it to
 * 16 kHz mono, and posts 20 ms frames of PCM16 (320 samples) to the main thread. Built as its own
 * bundle (capture-worklet.js) because worklets load from a separate module URL.
 */

// The AudioWorkletGlobalScope, declared here because TypeScript's DOM library does not include it.
declare const sampleRate: number;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
}
declare function registerProcessor(name: string, processor: new () => AudioWorkletProcessor): void;

const TARGET_RATE = 16_000;
const FRAME_SAMPLES = 320;

class CaptureProcessor extends AudioWorkletProcessor {
  private readonly step = sampleRate / TARGET_RATE;
  /** Position of the next output sample, in input samples, relative to the current block. */
  private position = 0;
  private frame = new Int16Array(FRAME_SAMPLES);
  private filled = 0;

  process(inputs: Float32Array[][]): boolean {
    const channels = inputs[0];
    const first = channels?.[0];
    if (!channels || !first) return true;
    const length = first.length;
    // Average the channels into one.
    const mono = new Float32Array(length);
    for (const channel of channels) for (let i = 0; i < length; i++) mono[i]! += (channel[i] ?? 0) / channels.length;
    // Linear interpolation between neighbouring samples (the speech band sits far below 8 kHz).
    while (this.position < length) {
      const left = Math.floor(this.position);
      const fraction = this.position - left;
      const a = mono[left] ?? 0;
      const b = mono[left + 1] ?? a;
      const value = Math.max(-1, Math.min(1, a + (b - a) * fraction));
      this.frame[this.filled++] = Math.round(value * 32767);
      if (this.filled === FRAME_SAMPLES) {
        this.port.postMessage(this.frame, [this.frame.buffer]);
        this.frame = new Int16Array(FRAME_SAMPLES);
        this.filled = 0;
      }
      this.position += this.step;
    }
    this.position -= length;
    return true;
  }
}

registerProcessor("handshake-capture", CaptureProcessor);
