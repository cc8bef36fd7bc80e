import { AudioEncoding, type AudioFormat, type AudioFrame } from "../../gen/handshake/v1/audio_pb.js";

/** Sample rates a client may send, in Hz; everything is resampled to 16 kHz for speech. */
export const SUPPORTED_SAMPLE_RATES_HZ: readonly number[] = Object.freeze([8000, 16000, 24000, 44100, 48000]);

/** The rate every speech engine takes. */
export const SPEECH_SAMPLE_RATE_HZ = 16000;

/** Largest PCM payload of one frame: 1 s at 16 kHz PCM16 mono. */
export const MAX_FRAME_BYTES = 32000;

/**
 * Audio that breaks the wire contract (format header or frame). The message names the problem
 * for the client; the server maps this error, by name, to INVALID_ARGUMENT.
 */
export class AudioFormatError extends Error {
  override readonly name = "AudioFormatError";
}

/** The checked essentials of an `AudioFormat`: PCM16LE mono at one of the supported rates. */
export interface CheckedAudioFormat {
  sampleRateHz: number;
  channels: 1;
}

/** Validates an `AudioFormat` header; throws `AudioFormatError` naming the first problem. */
export function checkAudioFormat(format: AudioFormat | undefined): CheckedAudioFormat {
  if (!format) throw new AudioFormatError("audio format is missing");
  if (format.encoding !== AudioEncoding.PCM16LE) {
    throw new AudioFormatError(`audio encoding ${format.encoding} is not supported; only PCM16LE`);
  }
  if (format.channels !== 1) {
    throw new AudioFormatError(`audio has ${format.channels} channels; only mono (1) is supported`);
  }
  if (!SUPPORTED_SAMPLE_RATES_HZ.includes(format.sampleRateHz)) {
    throw new AudioFormatError(
      `sample rate ${format.sampleRateHz} Hz is not supported; use one of ${SUPPORTED_SAMPLE_RATES_HZ.join(", ")}`,
    );
  }
  return { sampleRateHz: format.sampleRateHz, channels: 1 };
}

/** Validates one frame's PCM payload: non-empty, whole 16-bit samples, at most 32,000 bytes. */
export function checkPcmFrame(pcm: Uint8Array): void {
  checkPcmBytes(pcm.byteLength);
}

/** `checkPcmFrame` on the payload's length alone, for a frame parsed in place from the wire. */
export function checkPcmBytes(n: number): void {
  if (n === 0) throw new AudioFormatError("frame is empty");
  if (n % 2 !== 0) throw new AudioFormatError(`frame has an odd byte count (${n})`);
  if (n > MAX_FRAME_BYTES) throw new AudioFormatError(`frame has ${n} bytes; at most ${MAX_FRAME_BYTES} are allowed`);
}

/** Largest frame number: int64's maximum, so `seq + 1` (the next expected frame) still fits a uint64 reply. */
export const MAX_FRAME_SEQ = 2n ** 63n - 1n;

/** Validates an `AudioFrame` message (its number and PCM payload); throws `AudioFormatError`. */
export function checkAudioFrame(frame: AudioFrame): void {
  if (frame.seq > MAX_FRAME_SEQ) throw new AudioFormatError(`frame seq ${frame.seq} is above the largest frame number ${MAX_FRAME_SEQ}`);
  checkPcmFrame(frame.pcm);
}

/** Duration of `bytes` of PCM16 mono at `sampleRateHz`, in milliseconds. */
export function pcmDurationMs(bytes: number, sampleRateHz: number): number {
  return (bytes / 2 / sampleRateHz) * 1000;
}
