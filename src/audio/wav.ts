import { AudioFormatError } from "./audio-format.js";

/** A parsed WAV file: its format and a view of its PCM data (no copy). */
export interface WavAudio {
  sampleRateHz: number;
  channels: number;
  bitsPerSample: number;
  /** The `data` chunk's bytes, as stored (little-endian PCM). */
  pcm: Buffer;
  durationMs: number;
}

const WAVE_FORMAT_PCM = 1;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

/**
 * Parses a RIFF/WAVE file holding integer PCM. Walks the chunks (skipping LIST and others), accepts
 * WAVE_FORMAT_EXTENSIBLE with a PCM sub-format, and tolerates a data size past the end of the file
 * (streamed recordings). Throws `AudioFormatError` for anything else.
 */
export function parseWav(file: Uint8Array): WavAudio {
  const buf = Buffer.isBuffer(file) ? file : Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  if (buf.length < 12 || buf.toString("latin1", 0, 4) !== "RIFF" || buf.toString("latin1", 8, 12) !== "WAVE") {
    throw new AudioFormatError("not a RIFF/WAVE file");
  }
  let fmt: { audioFormat: number; channels: number; sampleRateHz: number; bitsPerSample: number } | undefined;
  let offset = 12;
  while (offset + 8 <= buf.length) {
    const id = buf.toString("latin1", offset, offset + 4);
    const size = buf.readUInt32LE(offset + 4);
    const body = offset + 8;
    if (id === "fmt ") {
      if (size < 16 || body + 16 > buf.length) throw new AudioFormatError("WAV fmt chunk is truncated");
      let audioFormat = buf.readUInt16LE(body);
      if (audioFormat === WAVE_FORMAT_EXTENSIBLE && size >= 40 && body + 26 <= buf.length) {
        // The first two bytes of the sub-format GUID carry the real format code.
        audioFormat = buf.readUInt16LE(body + 24);
      }
      fmt = {
        audioFormat,
        channels: buf.readUInt16LE(body + 2),
        sampleRateHz: buf.readUInt32LE(body + 4),
        bitsPerSample: buf.readUInt16LE(body + 14),
      };
    } else if (id === "data") {
      if (!fmt) throw new AudioFormatError("WAV data chunk comes before its fmt chunk");
      if (fmt.audioFormat !== WAVE_FORMAT_PCM) throw new AudioFormatError(`WAV format code ${fmt.audioFormat} is not integer PCM`);
      if (fmt.channels < 1 || fmt.sampleRateHz < 1 || fmt.bitsPerSample % 8 !== 0 || fmt.bitsPerSample === 0) {
        throw new AudioFormatError("WAV fmt chunk has impossible values");
      }
      const end = Math.min(buf.length, body + size);
      const frameBytes = fmt.channels * (fmt.bitsPerSample / 8);
      // Whole sample frames only: a file cut mid-sample keeps what is complete.
      const usable = end - body - ((end - body) % frameBytes);
      const pcm = buf.subarray(body, body + usable);
      return {
        sampleRateHz: fmt.sampleRateHz,
        channels: fmt.channels,
        bitsPerSample: fmt.bitsPerSample,
        pcm,
        durationMs: (usable / frameBytes / fmt.sampleRateHz) * 1000,
      };
    }
    // Chunks are padded to an even size.
    offset = body + size + (size % 2);
  }
  throw new AudioFormatError("WAV file has no data chunk");
}

/** Wraps PCM16LE samples in a canonical 44-byte WAV header. */
export function encodeWav(pcm: Uint8Array, sampleRateHz: number, channels = 1): Buffer {
  const header = Buffer.alloc(44);
  const blockAlign = channels * 2;
  header.write("RIFF", 0, "latin1");
  header.writeUInt32LE(36 + pcm.byteLength, 4);
  header.write("WAVE", 8, "latin1");
  header.write("fmt ", 12, "latin1");
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(WAVE_FORMAT_PCM, 20);
  header.writeUInt16LE(channels, 22);
  header.writeUInt32LE(sampleRateHz, 24);
  header.writeUInt32LE(sampleRateHz * blockAlign, 28);
  header.writeUInt16LE(blockAlign, 32);
  header.writeUInt16LE(16, 34);
  header.write("data", 36, "latin1");
  header.writeUInt32LE(pcm.byteLength, 40);
  return Buffer.concat([header, pcm]);
}
