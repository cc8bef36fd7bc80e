import type { AudioFormat } from "../../gen/handshake/v1/audio_pb.js";
import { AudioFormatError, SPEECH_SAMPLE_RATE_HZ, checkAudioFormat } from "./audio-format.js";

/**
 * Streaming PCM16LE mono sample-rate converter. `process` takes any number of whole samples and
 * returns what can be produced so far; state carries across calls, so chunking never clicks.
 */
export interface Resampler {
  readonly inputRateHz: number;
  readonly outputRateHz: number;
  /** Converts a chunk; at the output rate already, returns the same bytes without copying. */
  process(pcm: Uint8Array): Buffer;
  /** Emits the samples still held back by the filter (end of stream) and resets the state. */
  flush(): Buffer;
}

/** Zero crossings of the sinc on each side; 8 keeps aliasing below about -60 dB at this cost. */
const ZERO_CROSSINGS = 8;
/** Cutoff as a share of the lower Nyquist frequency; the rest is the filter's transition band. */
const ROLLOFF = 0.92;

/** A polyphase windowed-sinc filter bank for one rate pair, shared by every stream of that pair. */
interface FilterBank {
  /** Output steps per `down` input steps (rates reduced by their gcd). */
  up: number;
  down: number;
  /** Taps per phase; input samples used: i - half + 1 .. i + half. */
  taps: number;
  half: number;
  /** `up` phases of `taps` weights each, flattened. */
  weights: Float32Array;
}

const banks = new Map<string, FilterBank>();

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

function filterBank(inputRateHz: number, outputRateHz: number): FilterBank {
  const key = `${inputRateHz}>${outputRateHz}`;
  const cached = banks.get(key);
  if (cached) return cached;
  const g = gcd(inputRateHz, outputRateHz);
  const up = outputRateHz / g;
  const down = inputRateHz / g;
  // Cutoff in cycles per input sample: below the lower of the two Nyquist frequencies.
  const fc = 0.5 * Math.min(1, up / down) * ROLLOFF;
  const width = ZERO_CROSSINGS / (2 * fc);
  const half = Math.ceil(width);
  const taps = 2 * half;
  const weights = new Float32Array(up * taps);
  for (let phase = 0; phase < up; phase++) {
    const frac = phase / up;
    let sum = 0;
    for (let k = 0; k < taps; k++) {
      const x = k - half + 1 - frac; // distance from the output instant, in input samples
      const ax = Math.abs(x);
      let w = 0;
      if (ax < width) {
        const sinc = x === 0 ? 1 : Math.sin(2 * Math.PI * fc * x) / (2 * Math.PI * fc * x);
        const r = x / width;
        const blackman = 0.42 + 0.5 * Math.cos(Math.PI * r) + 0.08 * Math.cos(2 * Math.PI * r);
        w = 2 * fc * sinc * blackman;
      }
      weights[phase * taps + k] = w;
      sum += w;
    }
    // Unity gain at DC for every phase, so a constant input gives a constant output.
    for (let k = 0; k < taps; k++) weights[phase * taps + k] = weights[phase * taps + k]! / sum;
  }
  const bank = { up, down, taps, half, weights };
  banks.set(key, bank);
  return bank;
}

/** Reads a little-endian signed 16-bit sample; works at any byte offset and host endianness. */
function sampleAt(pcm: Uint8Array, byte: number): number {
  return ((pcm[byte]! | (pcm[byte + 1]! << 8)) << 16) >> 16;
}

/** Returns `pcm` as a Buffer over the same memory (no copy). */
function asBuffer(pcm: Uint8Array): Buffer {
  return Buffer.isBuffer(pcm) ? pcm : Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
}

class PassthroughResampler implements Resampler {
  constructor(readonly inputRateHz: number) {}
  get outputRateHz(): number {
    return this.inputRateHz;
  }
  process(pcm: Uint8Array): Buffer {
    return asBuffer(pcm);
  }
  flush(): Buffer {
    return Buffer.alloc(0);
  }
}

class PolyphaseResampler implements Resampler {
  private readonly bank: FilterBank;
  /** Input samples kept as floats; `buf[0]` is absolute input index `bufStart`. */
  private buf: Float32Array;
  private bufLength = 0;
  private bufStart = 0;
  /** Next output's input position: integer part `pos`, fractional part `phase / up`. */
  private pos = 0;
  private phase = 0;
  /** Real input samples seen, so flush emits exactly ceil(n * up / down) outputs in total. */
  private inputCount = 0;

  constructor(
    readonly inputRateHz: number,
    readonly outputRateHz: number,
  ) {
    this.bank = filterBank(inputRateHz, outputRateHz);
    this.buf = new Float32Array(this.bank.taps + 4096);
    this.reset();
  }

  process(pcm: Uint8Array): Buffer {
    if (pcm.byteLength % 2 !== 0) throw new AudioFormatError(`frame has an odd byte count (${pcm.byteLength})`);
    const n = pcm.byteLength / 2;
    this.reserve(n);
    const buf = this.buf;
    let w = this.bufLength;
    for (let s = 0; s < n; s++) buf[w++] = sampleAt(pcm, s * 2);
    this.bufLength = w;
    this.inputCount += n;
    return this.drain(Infinity);
  }

  flush(): Buffer {
    // Zeros after the end let the filter finish the last real samples.
    const { up, down, half } = this.bank;
    const total = Math.ceil((this.inputCount * up) / down);
    const produced = this.outputsSoFar();
    this.reserve(half + 1);
    this.buf.fill(0, this.bufLength, this.bufLength + half + 1);
    this.bufLength += half + 1;
    const out = this.drain(Math.max(0, total - produced));
    this.reset();
    return out;
  }

  private outputsSoFar(): number {
    // Output n sits at input position n * down / up; invert from (pos, phase).
    return (this.pos * this.bank.up + this.phase) / this.bank.down;
  }

  private reset(): void {
    const { half } = this.bank;
    // Silence before the first sample: the filter reaches back half - 1 samples.
    this.bufStart = -(half - 1);
    this.bufLength = half - 1;
    this.buf.fill(0, 0, this.bufLength);
    this.pos = 0;
    this.phase = 0;
    this.inputCount = 0;
  }

  private reserve(extra: number): void {
    if (this.bufLength + extra <= this.buf.length) return;
    const bigger = new Float32Array(Math.max(this.buf.length * 2, this.bufLength + extra));
    bigger.set(this.buf.subarray(0, this.bufLength));
    this.buf = bigger;
  }

  /** Produces outputs while the input they need is present (at most `limit`), then drops used input. */
  private drain(limit: number): Buffer {
    const { up, down, taps, half, weights } = this.bank;
    const buf = this.buf;
    const end = this.bufStart + this.bufLength; // absolute index one past the last sample
    let pos = this.pos;
    let phase = this.phase;
    // Count first, so the output is one exact allocation.
    let count = 0;
    {
      let p = pos;
      let ph = phase;
      while (p + half < end && count < limit) {
        count++;
        ph += down;
        p += Math.floor(ph / up);
        ph %= up;
      }
    }
    const out = Buffer.allocUnsafe(count * 2);
    for (let o = 0; o < count; o++) {
      const first = pos - half + 1 - this.bufStart;
      const base = phase * taps;
      let acc = 0;
      for (let k = 0; k < taps; k++) acc += buf[first + k]! * weights[base + k]!;
      let v = Math.round(acc);
      if (v > 32767) v = 32767;
      else if (v < -32768) v = -32768;
      out[o * 2] = v & 0xff;
      out[o * 2 + 1] = (v >> 8) & 0xff;
      phase += down;
      pos += Math.floor(phase / up);
      phase %= up;
    }
    this.pos = pos;
    this.phase = phase;
    // Keep only what the next output still needs.
    const keepFrom = Math.min(pos - half + 1, end) - this.bufStart;
    if (keepFrom > 0) {
      buf.copyWithin(0, keepFrom, this.bufLength);
      this.bufLength -= keepFrom;
      this.bufStart += keepFrom;
    }
    return out;
  }
}

/**
 * Makes a streaming resampler from `inputRateHz` to `outputRateHz` (default 16 kHz), PCM16LE mono.
 * Windowed-sinc polyphase filtering (anti-aliased when downsampling); passthrough at equal rates.
 */
export function createResampler(inputRateHz: number, outputRateHz: number = SPEECH_SAMPLE_RATE_HZ): Resampler {
  if (!Number.isInteger(inputRateHz) || inputRateHz <= 0 || !Number.isInteger(outputRateHz) || outputRateHz <= 0) {
    throw new AudioFormatError(`cannot resample ${inputRateHz} Hz to ${outputRateHz} Hz`);
  }
  if (inputRateHz === outputRateHz) return new PassthroughResampler(inputRateHz);
  return new PolyphaseResampler(inputRateHz, outputRateHz);
}

/**
 * For the room's `toSpeechPcm`: checks a participant's format and returns a per-stream function
 * turning their frames into 16 kHz PCM16 mono for the speech engine.
 */
export function createSpeechPcmConverter(format: AudioFormat): (pcm: Uint8Array) => Buffer {
  const { sampleRateHz } = checkAudioFormat(format);
  const resampler = createResampler(sampleRateHz, SPEECH_SAMPLE_RATE_HZ);
  return (pcm) => resampler.process(pcm);
}
