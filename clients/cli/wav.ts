/*
 * What the participant needs to stream a recording: 16-bit PCM, any channel count and rate in,
 * 16 kHz mono PCM16LE out, cut into 20 ms frames. The RIFF/WAVE parsing is clients/shared/wav.ts.
 */
import { WavFormatError, parseWav } from "../shared/wav.js";

/** Sample rate the participant streams at. */
export const STREAM_RATE_HZ = 16_000;
/** Length of one streamed frame. */
export const FRAME_MS = 20;
/** Bytes in one 20 ms frame of 16 kHz PCM16 mono. */
export const FRAME_BYTES = (STREAM_RATE_HZ / 1000) * FRAME_MS * 2;

/** A decoded WAV file: interleaved little-endian PCM16 samples and their layout. */
export interface Pcm16Audio {
  sampleRateHz: number;
  channels: number;
  /** Interleaved PCM16 samples. */
  samples: Int16Array;
}

/** Reads a RIFF/WAVE buffer of 16-bit PCM at a rate the participant can resample (1–192 kHz). */
export function readPcm16Wav(bytes: Uint8Array): Pcm16Audio {
  const wav = parseWav(bytes);
  if (wav.bitsPerSample !== 16) throw new WavFormatError(`only 16-bit samples are supported (got ${wav.bitsPerSample}-bit)`);
  if (wav.sampleRateHz < 1000 || wav.sampleRateHz > 192_000) throw new WavFormatError(`sample rate ${wav.sampleRateHz} Hz is out of range`);
  const count = wav.pcm.byteLength / 2;
  const samples = new Int16Array(count);
  const view = new DataView(wav.pcm.buffer, wav.pcm.byteOffset, count * 2);
  for (let i = 0; i < count; i++) samples[i] = view.getInt16(i * 2, true);
  return { sampleRateHz: wav.sampleRateHz, channels: wav.channels, samples };
}

/** Averages channels to mono and resamples linearly to `rateHz` (default 16 kHz). */
export function toMono(audio: Pcm16Audio, rateHz = STREAM_RATE_HZ): Int16Array {
  const frames = Math.floor(audio.samples.length / audio.channels);
  const mono = new Float64Array(frames);
  for (let i = 0; i < frames; i++) {
    let sum = 0;
    for (let c = 0; c < audio.channels; c++) sum += audio.samples[i * audio.channels + c] ?? 0;
    mono[i] = sum / audio.channels;
  }
  if (audio.sampleRateHz === rateHz) return Int16Array.from(mono, (v) => Math.round(v));
  const outLength = Math.floor((frames * rateHz) / audio.sampleRateHz);
  const out = new Int16Array(outLength);
  const step = audio.sampleRateHz / rateHz;
  for (let i = 0; i < outLength; i++) {
    const position = i * step;
    const left = Math.floor(position);
    const fraction = position - left;
    const a = mono[left] ?? 0;
    const b = mono[left + 1] ?? a;
    out[i] = Math.max(-32768, Math.min(32767, Math.round(a + (b - a) * fraction)));
  }
  return out;
}

/** Cuts PCM bytes into frames of `frameBytes` (the last one may be shorter, never odd). */
export function splitFrames(pcm: Uint8Array, frameBytes = FRAME_BYTES): Uint8Array[] {
  const frames: Uint8Array[] = [];
  const usable = pcm.byteLength - (pcm.byteLength % 2);
  for (let offset = 0; offset < usable; offset += frameBytes) frames.push(pcm.subarray(offset, Math.min(usable, offset + frameBytes)));
  return frames;
}
