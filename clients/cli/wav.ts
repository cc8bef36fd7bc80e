/*
 * Just enough RIFF/WAVE reading for the participant to stream a recording: 16-bit PCM, any
 * channel count and rate in, 16 kHz mono PCM16LE out, cut into 20 ms frames.
 */

/** Sample rate the participant streams at. */
export const STREAM_RATE_HZ = 16_000;
/** Length of one streamed frame. */
export const FRAME_MS = 20;
/** Bytes in one 20 ms frame of 16 kHz PCM16 mono. */
export const FRAME_BYTES = (STREAM_RATE_HZ / 1000) * FRAME_MS * 2;

/** A decoded WAV file: interleaved little-endian PCM16 samples and their layout. */
export interface WavAudio {
  sampleRateHz: number;
  channels: number;
  /** Interleaved PCM16 samples. */
  samples: Int16Array;
}

/** Thrown when a file is not a WAV this reader understands; the message says what is wrong. */
export class WavFormatError extends Error {
  override readonly name = "WavFormatError";
}

const WAVE_FORMAT_PCM = 1;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

/** Reads a RIFF/WAVE buffer of 16-bit PCM. Chunks other than `fmt ` and `data` are skipped. */
export function parseWav(bytes: Uint8Array): WavAudio {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (offset: number) => String.fromCharCode(...bytes.subarray(offset, offset + 4));
  if (bytes.byteLength < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") throw new WavFormatError("not a RIFF/WAVE file");
  let format: { rate: number; channels: number; bits: number; code: number } | undefined;
  let data: Uint8Array | undefined;
  let offset = 12;
  while (offset + 8 <= bytes.byteLength) {
    const id = tag(offset);
    const size = view.getUint32(offset + 4, true);
    const body = offset + 8;
    // Streamed WAVs (sox, ffmpeg writing to a pipe) leave the data size at 0 or 0xFFFFFFFF.
    const end = Math.min(bytes.byteLength, size === 0 || size === 0xffffffff ? bytes.byteLength : body + size);
    if (id === "fmt ") {
      if (end - body < 16) throw new WavFormatError("fmt chunk is too short");
      let code = view.getUint16(body, true);
      if (code === WAVE_FORMAT_EXTENSIBLE && end - body >= 26) code = view.getUint16(body + 24, true);
      format = { code, channels: view.getUint16(body + 2, true), rate: view.getUint32(body + 4, true), bits: view.getUint16(body + 14, true) };
    } else if (id === "data") {
      data = bytes.subarray(body, end);
    }
    offset = end + ((end - body) % 2); // chunks are padded to even sizes
  }
  if (!format) throw new WavFormatError("no fmt chunk");
  if (!data) throw new WavFormatError("no data chunk");
  if (format.code !== WAVE_FORMAT_PCM) throw new WavFormatError(`only PCM WAV files are supported (format ${format.code})`);
  if (format.bits !== 16) throw new WavFormatError(`only 16-bit samples are supported (got ${format.bits}-bit)`);
  if (format.channels < 1) throw new WavFormatError("the file has no channels");
  if (format.rate < 1000 || format.rate > 192_000) throw new WavFormatError(`sample rate ${format.rate} Hz is out of range`);
  const count = Math.floor(data.byteLength / 2);
  const samples = new Int16Array(count);
  const dataView = new DataView(data.buffer, data.byteOffset, count * 2);
  for (let i = 0; i < count; i++) samples[i] = dataView.getInt16(i * 2, true);
  return { sampleRateHz: format.rate, channels: format.channels, samples };
}

/** Averages channels to mono and resamples linearly to `rateHz` (default 16 kHz). */
export function toMono(audio: WavAudio, rateHz = STREAM_RATE_HZ): Int16Array {
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

/** Little-endian bytes of PCM16 samples. */
export function pcm16Bytes(samples: Int16Array): Uint8Array {
  const bytes = new Uint8Array(samples.length * 2);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < samples.length; i++) view.setInt16(i * 2, samples[i] ?? 0, true);
  return bytes;
}

/** Cuts PCM bytes into frames of `frameBytes` (the last one may be shorter, never odd). */
export function splitFrames(pcm: Uint8Array, frameBytes = FRAME_BYTES): Uint8Array[] {
  const frames: Uint8Array[] = [];
  const usable = pcm.byteLength - (pcm.byteLength % 2);
  for (let offset = 0; offset < usable; offset += frameBytes) frames.push(pcm.subarray(offset, Math.min(usable, offset + frameBytes)));
  return frames;
}

/** Builds a PCM16 mono WAV file, for fixtures and tests. */
export function encodeWav(samples: Int16Array, sampleRateHz: number): Uint8Array {
  const data = pcm16Bytes(samples);
  const bytes = new Uint8Array(44 + data.byteLength);
  const view = new DataView(bytes.buffer);
  const put = (offset: number, text: string) => {
    for (let i = 0; i < 4; i++) bytes[offset + i] = text.charCodeAt(i);
  };
  put(0, "RIFF");
  view.setUint32(4, 36 + data.byteLength, true);
  put(8, "WAVE");
  put(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, WAVE_FORMAT_PCM, true);
  view.setUint16(22, 1, true);
  view.setUint32(24, sampleRateHz, true);
  view.setUint32(28, sampleRateHz * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  put(36, "data");
  view.setUint32(40, data.byteLength, true);
  bytes.set(data, 44);
  return bytes;
}
