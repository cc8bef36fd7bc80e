/*
 * The one RIFF/WAVE reader and writer. It lives with the clients because they are what read
 * recordings; the server never parses WAV (it takes PCM frames), and its tests and scripts import
 * it from here. No Node Buffer, so the browser app may use it too.
 */

/** Thrown when a file is not a WAV this reader understands; the message says what is wrong. */
export class WavFormatError extends Error {
  override readonly name = "WavFormatError";
}

/** A parsed WAV file: its format and a view of its PCM data (no copy), of the input's type. */
export interface WavAudio<B extends Uint8Array = Uint8Array> {
  sampleRateHz: number;
  channels: number;
  bitsPerSample: number;
  /** The `data` chunk's bytes, whole sample frames only, as stored (little-endian PCM). */
  pcm: B;
  durationMs: number;
}

const WAVE_FORMAT_PCM = 1;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

/**
 * Parses a RIFF/WAVE file holding integer PCM. Walks the chunks (skipping LIST and others), accepts
 * WAVE_FORMAT_EXTENSIBLE with a PCM sub-format, and tolerates a data size of 0, 0xFFFFFFFF or past
 * the end of the file (streamed recordings). `pcm` is a view of `file`: a Buffer in, a Buffer out.
 */
export function parseWav<B extends Uint8Array>(file: B): WavAudio<B> {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const tag = (offset: number) => String.fromCharCode(...file.subarray(offset, offset + 4));
  if (file.byteLength < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") throw new WavFormatError("not a RIFF/WAVE file");
  let fmt: { audioFormat: number; channels: number; sampleRateHz: number; bitsPerSample: number } | undefined;
  let offset = 12;
  while (offset + 8 <= file.byteLength) {
    const id = tag(offset);
    const size = view.getUint32(offset + 4, true);
    const body = offset + 8;
    if (id === "fmt ") {
      if (size < 16 || body + 16 > file.byteLength) throw new WavFormatError("WAV fmt chunk is truncated");
      let audioFormat = view.getUint16(body, true);
      if (audioFormat === WAVE_FORMAT_EXTENSIBLE && size >= 40 && body + 26 <= file.byteLength) {
        // The first two bytes of the sub-format GUID carry the real format code.
        audioFormat = view.getUint16(body + 24, true);
      }
      fmt = {
        audioFormat,
        channels: view.getUint16(body + 2, true),
        sampleRateHz: view.getUint32(body + 4, true),
        bitsPerSample: view.getUint16(body + 14, true),
      };
    } else if (id === "data") {
      if (!fmt) throw new WavFormatError("WAV data chunk comes before its fmt chunk");
      if (fmt.audioFormat !== WAVE_FORMAT_PCM) throw new WavFormatError(`WAV format code ${fmt.audioFormat} is not integer PCM`);
      if (fmt.channels < 1 || fmt.sampleRateHz < 1 || fmt.bitsPerSample % 8 !== 0 || fmt.bitsPerSample === 0) {
        throw new WavFormatError("WAV fmt chunk has impossible values");
      }
      // Streamed WAVs (sox, ffmpeg writing to a pipe) leave the data size at 0 or 0xFFFFFFFF.
      const end = size === 0 || size === 0xffffffff ? file.byteLength : Math.min(file.byteLength, body + size);
      const frameBytes = fmt.channels * (fmt.bitsPerSample / 8);
      // Whole sample frames only: a file cut mid-sample keeps what is complete.
      const usable = end - body - ((end - body) % frameBytes);
      return {
        sampleRateHz: fmt.sampleRateHz,
        channels: fmt.channels,
        bitsPerSample: fmt.bitsPerSample,
        pcm: file.subarray(body, body + usable) as B,
        durationMs: (usable / frameBytes / fmt.sampleRateHz) * 1000,
      };
    }
    // Chunks are padded to an even size.
    offset = body + size + (size % 2);
  }
  throw new WavFormatError("WAV file has no data chunk");
}

/** Little-endian bytes of PCM16 samples. */
export function pcm16Bytes(samples: Int16Array): Uint8Array {
  const bytes = new Uint8Array(samples.length * 2);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < samples.length; i++) view.setInt16(i * 2, samples[i] ?? 0, true);
  return bytes;
}

/** Wraps PCM16 (samples, or their little-endian bytes) in a canonical 44-byte WAV header. */
export function encodeWav(pcm: Int16Array | Uint8Array, sampleRateHz: number, channels = 1): Uint8Array {
  const data = pcm instanceof Int16Array ? pcm16Bytes(pcm) : pcm;
  const bytes = new Uint8Array(44 + data.byteLength);
  const view = new DataView(bytes.buffer);
  const put = (at: number, text: string) => {
    for (let i = 0; i < 4; i++) bytes[at + i] = text.charCodeAt(i);
  };
  const blockAlign = channels * 2;
  put(0, "RIFF");
  view.setUint32(4, 36 + data.byteLength, true);
  put(8, "WAVE");
  put(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, WAVE_FORMAT_PCM, true);
  view.setUint16(22, channels, true);
  view.setUint32(24, sampleRateHz, true);
  view.setUint32(28, sampleRateHz * blockAlign, true);
  view.setUint16(32, blockAlign, true);
  view.setUint16(34, 16, true);
  put(36, "data");
  view.setUint32(40, data.byteLength, true);
  bytes.set(data, 44);
  return bytes;
}
