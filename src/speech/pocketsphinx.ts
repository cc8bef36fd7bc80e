import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { access } from "node:fs/promises";
import { createHash } from "node:crypto";
import {
  closeSync,
  constants as fsConstants,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { WordTimingSchema, type WordTiming } from "../../gen/handshake/v1/transcript_pb.js";
import { SPEECH_SAMPLE_RATE_HZ } from "../audio/audio-format.js";
import { backoffDelayMs } from "../core/retry.js";
import type { SpeechEngine, SpeechEngineFactory, SpeechEvents } from "./speech-engine.js";
import { moneyLanguageModel } from "./money-language-model.js";
import { Timeline } from "./timeline.js";

/** The Debian packages local speech needs, in the order a person would install them. */
export const POCKETSPHINX_PACKAGES = ["pocketsphinx", "pocketsphinx-en-us"] as const;

/** Where Debian's pocketsphinx-en-us puts the US English model. */
export const DEFAULT_POCKETSPHINX_MODEL_DIR = "/usr/share/pocketsphinx/model/en-us";

/** Settings of the local recogniser; every field has a default that works on Debian. */
export interface PocketSphinxOptions {
  /** The `pocketsphinx_continuous` binary, a name on PATH or a path. */
  binary?: string;
  /** Model folder holding `en-us/` (acoustic model), `en-us.lm.bin` and `cmudict-en-us.dict`. */
  modelDir?: string;
  /**
   * Quiet after speech before the utterance is ended, in ms (10 ms steps): the engine's own
   * endpointer then pads the recogniser's input so it decodes at once, instead of waiting for
   * its VAD and its 128 ms reads. Shorter gives finals sooner but splits sentences at longer
   * pauses (commas). Default 160.
   */
  endSilenceMs?: number;
  /**
   * "money" (default): a small model biased to deal talk, built from the Debian one
   * (money-language-model.ts), ≈ 10 MB per process; "debian": the full en-us model, ≈ 90 MB.
   */
  languageModel?: "money" | "debian";
  /** Everyday words the money model keeps, most frequent first. Default 5000. */
  generalWords?: number;
  /** Words the money model must know whatever their frequency (trigger keywords). */
  extraWords?: readonly string[];
  /** Audio waiting in the pipe to the recogniser beyond this is dropped, not queued. Default 5 s. */
  maxQueuedBytes?: number;
  /** Peak of the tiny noise added to the audio (in 16-bit steps); see `dithered`. Default 16. */
  ditherAmplitude?: number;
  /** How long `stop` lets the recogniser finish the last utterance before killing it. Default 5000. */
  stopTimeoutMs?: number;
  /** Restarts after the recogniser exits unexpectedly, before giving up. Default 3. */
  maxRestarts?: number;
  /** More `pocketsphinx_continuous` arguments, appended last (they win). */
  extraArgs?: readonly string[];
  log?: Logger;
}

/** A PocketSphinx engine, with counters the room or a benchmark may read. */
export interface PocketSphinxEngine extends SpeechEngine {
  /** Bytes of audio dropped because the recogniser was behind. */
  readonly droppedBytes: number;
  /** Writes whose audio was dropped because the recogniser was behind. */
  readonly droppedWrites: number;
}

/** Result of `detectPocketSphinx`: what is missing, as Debian package names, and a sentence to log. */
export interface PocketSphinxDetection {
  available: boolean;
  missing: string[];
  message: string;
}

const BYTES_PER_SECOND = SPEECH_SAMPLE_RATE_HZ * 2;
/** The recogniser reads its input in blocks of 2048 samples (continuous.c). */
const READ_BLOCK_MS = 128;
/** Audio kept before the first speech of a recogniser process, so the first word's onset is heard. */
const PRE_ROLL_MS = 400;
/** Energy gate for the first speech: 10 ms blocks, this much above the quietest block so far. */
const GATE_BLOCK_SAMPLES = 160;
const GATE_RATIO = 4;
const GATE_MIN_RMS = 60;
/** A block this loud is speech whatever the floor (about -30 dBFS). */
const GATE_LOUD_RMS = 1000;
/**
 * Initial cepstral mean for the model's live normalisation. The model ships 41,-5.29,…, measured
 * on quieter, differently coloured audio; with it the first utterance of a stream is often wrong
 * ("the ah" for "deal"). These values are the mean the recogniser itself settles on after a few
 * utterances of ordinary close-microphone speech. The command-line -cmninit is ignored by this
 * PocketSphinx version (the model's feat.params wins), hence a copied feat.params.
 */
const CMN_INIT = "46,-1.1,2.3,0,-2.5,-0.5,-2.8,0.2,4.2,2.2,-0.5,1.3,3.8";
/**
 * Standard "fast" search settings from the CMU tuning guide: same words on our fixtures, about a
 * third less CPU. No second-pass flat search: it runs when the utterance ends, so it delays every
 * final (about 100 ms on a 4 s line here) and the lattice best path after it gives the same words.
 */
const SPEED_ARGS = ["-maxhmmpf", "3000", "-maxwpf", "10", "-pl_window", "10", "-fwdflat", "no"];

/**
 * The recogniser's own end-of-speech silence (its VAD), in 10 ms frames. Longer than our
 * endpointer's, so utterances are normally ended by our padding; it only decides when ours
 * cannot tell (a noisy floor).
 */
const RECOGNISER_POST_SPEECH_FRAMES = 30;
/** Our endpointer: a 10 ms block is quiet below this many times the quietest block so far. */
const QUIET_RATIO = 3;

const PACKAGES_MESSAGE = `local speech needs Debian packages ${POCKETSPHINX_PACKAGES.join(" ")}`;

/** A word line of `-time yes` output: word, start s, end s, posterior. */
const WORD_LINE = /^(\S+) (-?\d+\.\d+) (-?\d+\.\d+) (\S+)$/;

/** True for the recogniser's non-words: <s>, </s>, <sil>, [NOISE], [SPEECH], ++NOISE++, +BREATH+. */
function isFiller(word: string): boolean {
  return /^<.*>$/.test(word) || /^\[.*\]$/.test(word) || /^\+.*\+$/.test(word);
}

/** Checks that the recogniser and its model are installed; says which Debian packages are missing. */
export async function detectPocketSphinx(
  options: Pick<PocketSphinxOptions, "binary" | "modelDir"> = {},
): Promise<PocketSphinxDetection> {
  const binary = options.binary ?? "pocketsphinx_continuous";
  const modelDir = options.modelDir ?? DEFAULT_POCKETSPHINX_MODEL_DIR;
  const missing: string[] = [];
  const binaryRuns = await new Promise<boolean>((resolve) => {
    // Without arguments it prints its option list and exits at once: proof it loads and runs.
    const child = spawn(binary, [], { stdio: "ignore" });
    child.once("error", () => resolve(false));
    child.once("exit", () => resolve(true));
  });
  if (!binaryRuns) missing.push("pocketsphinx");
  const modelFiles = [join(modelDir, "en-us", "mdef"), join(modelDir, "en-us", "feat.params"), join(modelDir, "en-us.lm.bin"), join(modelDir, "cmudict-en-us.dict")];
  const modelOk = await Promise.all(modelFiles.map((f) => access(f, fsConstants.R_OK).then(() => true, () => false)));
  if (modelOk.includes(false)) missing.push("pocketsphinx-en-us");
  return {
    available: missing.length === 0,
    missing,
    message: missing.length === 0 ? "PocketSphinx is installed" : `${PACKAGES_MESSAGE} (missing: ${missing.join(", ")})`,
  };
}

const featParamsFiles = new Map<string, string>();

/**
 * A folder only this user can write, the same across runs: `<tmp>/handshake-pocketsphinx-<uid>`,
 * mode 0700. An existing one that is not ours or not private is refused (no one can swap files).
 */
function privateDir(): string {
  const uid = process.getuid?.() ?? 0;
  const dir = join(tmpdir(), `handshake-pocketsphinx-${uid}`);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  const st = lstatSync(dir);
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) throw new Error(`${dir} is not a private folder`);
  return dir;
}

/**
 * Writes, once per process, a copy of the model's feat.params with our initial cepstral mean.
 * Content-addressed and written by rename, so concurrent servers share one complete file.
 */
function featParamsFile(modelDir: string): string {
  const known = featParamsFiles.get(modelDir);
  if (known && existsSync(known)) return known;
  const original = readFileSync(join(modelDir, "en-us", "feat.params"), "utf8");
  const lines = original.split("\n").filter((l) => !l.startsWith("-cmninit"));
  const text = `${lines.join("\n").trimEnd()}\n-cmninit ${CMN_INIT}\n`;
  const dir = privateDir();
  const path = join(dir, `feat-${createHash("sha256").update(text).digest("hex").slice(0, 16)}.params`);
  if (!existsSync(path)) {
    const temp = `${path}.${process.pid}.tmp`;
    writeFileSync(temp, text, { mode: 0o600 });
    renameSync(temp, path);
  }
  featParamsFiles.set(modelDir, path);
  return path;
}

/**
 * A real pipe for the recogniser's input: a FIFO, opened at both ends and unlinked at once.
 * Why: Node's stdio "pipes" are socket pairs, and this PocketSphinx can only fopen its input
 * ("/dev/stdin" on a socket fails with ENXIO; on a FIFO it works). Our read end exists only so
 * the non-blocking write end can open; it becomes the child's stdin and we close our copy.
 */
function openInputPipe(): { readFd: number; writeFd: number } {
  const dir = mkdtempSync(join(tmpdir(), "handshake-sphinx-"));
  try {
    const path = join(dir, "input");
    execFileSync("mkfifo", ["-m", "600", path]);
    const readFd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    const writeFd = openSync(path, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
    return { readFd, writeFd };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Whether the recogniser has opened its input yet (Linux /proc; undefined when it cannot tell).
 * Why it matters: it reopens "/dev/stdin", and opening a FIFO for reading blocks until a writer
 * exists; if we closed our end before that, it would wait forever instead of seeing end of input.
 */
function hasOpenedInput(pid: number): boolean | undefined {
  try {
    const dir = `/proc/${pid}/fd`;
    const pipe = readlinkSync(`${dir}/0`);
    let count = 0;
    for (const fd of readdirSync(dir)) {
      try {
        if (readlinkSync(`${dir}/${fd}`) === pipe) count++;
      } catch {
        // closed meanwhile
      }
    }
    return count >= 2;
  } catch {
    return undefined;
  }
}

/** Reads a little-endian signed 16-bit sample. */
function sampleAt(pcm: Uint8Array, byte: number): number {
  return ((pcm[byte]! | (pcm[byte + 1]! << 8)) << 16) >> 16;
}

/** One utterance as printed by the recogniser: the hypothesis line, then word lines. */
interface PendingUtterance {
  words: { word: string; startS: number; endS: number; confidence: number }[];
}

class PocketSphinxEngineImpl implements PocketSphinxEngine {
  readonly name = "pocketsphinx";
  droppedBytes = 0;
  droppedWrites = 0;

  private readonly binary: string;
  private readonly modelDir: string;
  private readonly endSilenceMs: number;
  private readonly languageModel: { lm: string; dict: string } | undefined;
  private readonly languageModelError: string | undefined;
  private readonly maxQueuedBytes: number;
  private readonly dither: number;
  private readonly stopTimeoutMs: number;
  private readonly maxRestarts: number;
  private readonly extraArgs: readonly string[];
  private readonly log: Logger | undefined;

  private child: ChildProcess | undefined;
  /** Write end of the recogniser's input pipe; non-blocking, so `writableLength` is our queue. */
  private input: Socket | undefined;
  private readonly timeline = new Timeline();
  /** Samples the participant has given us (muted or dropped audio included). */
  private participantSamples = 0;
  private muted = false;
  private stopping: Promise<void> | undefined;
  /** Set once stop has finished: no event after that. */
  private silenced = false;
  /** Set after a failure that is not retried: writes are ignored. */
  private failed = false;
  private failedReported = false;
  private restarts = 0;
  private spawnedAt = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private fedSinceFlush = false;
  /** Endpointer: speech heard since the last end, and quiet since the last loud block. */
  private speechSinceEnd = false;
  private quietMs = 0;

  // First-speech gate of the current recogniser process.
  private gateOpen = false;
  private gateFloor = Infinity;
  private preRoll: { pcm: Buffer; start: number }[] = [];
  private preRollBytes = 0;

  // Output parsing.
  private stdoutRest = "";
  private pending: PendingUtterance | undefined;
  private stderrTail: string[] = [];

  private rng = 0x9e3779b9;

  constructor(
    participant: { roomId: string; userId: string },
    private readonly events: SpeechEvents,
    options: PocketSphinxOptions,
  ) {
    this.binary = options.binary ?? "pocketsphinx_continuous";
    this.modelDir = options.modelDir ?? DEFAULT_POCKETSPHINX_MODEL_DIR;
    this.endSilenceMs = Math.max(60, Math.round((options.endSilenceMs ?? 160) / 10) * 10);
    this.maxQueuedBytes = options.maxQueuedBytes ?? 5 * BYTES_PER_SECOND;
    this.dither = options.ditherAmplitude ?? 16;
    this.stopTimeoutMs = options.stopTimeoutMs ?? 5000;
    this.maxRestarts = options.maxRestarts ?? 3;
    this.log = options.log?.child({ engine: this.name, roomId: participant.roomId, userId: participant.userId });
    this.extraArgs = options.extraArgs ?? [];
    if (options.languageModel !== "debian") {
      try {
        const model = moneyLanguageModel(this.modelDir, privateDir(), { generalWords: options.generalWords, extraWords: options.extraWords });
        this.languageModel = { lm: model.lmPath, dict: model.dictPath };
      } catch (err) {
        this.languageModelError = (err as Error).message;
      }
    }
    this.startChild();
  }

  write(pcm: Buffer): void {
    const samples = pcm.byteLength >> 1;
    const start = this.participantSamples;
    this.participantSamples += samples;
    if (samples === 0 || this.muted || this.failed || this.stopping || !this.child) return;
    if (!this.gateOpen) {
      this.holdBeforeSpeech(pcm, start, samples);
      return;
    }
    this.feed(this.dithered(pcm, samples), start, samples);
    if (this.endOfSpeech(pcm, samples)) this.flush();
  }

  flush(): void {
    if (!this.child || this.stopping || this.failed || !this.gateOpen || !this.fedSinceFlush) return;
    this.fedSinceFlush = false;
    this.speechSinceEnd = false;
    this.quietMs = 0;
    // Quiet audio long enough for the recogniser's VAD to see the utterance end, plus one read
    // block so the block holding that end is read (the pipe is read 2048 samples at a time).
    const ms = RECOGNISER_POST_SPEECH_FRAMES * 10 + READ_BLOCK_MS + 100;
    const samples = (ms * SPEECH_SAMPLE_RATE_HZ) / 1000;
    const padding = this.dithered(Buffer.alloc(samples * 2), samples);
    if (this.queueFull(padding.byteLength)) return;
    this.input!.write(padding);
    this.timeline.inserted(samples);
  }

  setMuted(muted: boolean): void {
    // What was said up to the mute is a finished utterance; don't glue it to what follows.
    if (muted && !this.muted) this.flush();
    this.muted = muted;
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      let exited = false;
      const closed = new Promise<void>((resolve) =>
        child.once("close", () => {
          exited = true;
          resolve();
        }),
      );
      const deadline = Date.now() + this.stopTimeoutMs;
      // A recogniser still loading its model has not opened its input: closing now would leave it
      // blocked in open() for good, so wait (briefly) until it has.
      while (!exited && child.pid !== undefined && hasOpenedInput(child.pid) === false && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // End of input: the recogniser decodes what it has, prints the last utterance and exits.
      this.input?.end();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), Math.max(0, deadline - Date.now()));
      });
      const late = await Promise.race([closed.then(() => false), timedOut]);
      clearTimeout(timer);
      if (late) {
        child.kill("SIGKILL");
        await closed;
      }
    }
    this.silenced = true;
  }

  private startChild(): void {
    let featParams: string;
    try {
      featParams = featParamsFile(this.modelDir);
    } catch {
      // Reported after the factory returns, like every other engine event.
      queueMicrotask(() => this.fail("engine_unavailable", `${PACKAGES_MESSAGE} (the model in ${this.modelDir} is missing)`));
      this.failed = true;
      return;
    }
    if (this.languageModelError) {
      const message = this.languageModelError;
      queueMicrotask(() => this.fail("engine_unavailable", `${PACKAGES_MESSAGE} (the language model could not be built: ${message})`));
      this.failed = true;
      return;
    }
    const args = [
      "-infile", "/dev/stdin",
      "-time", "yes",
      "-hmm", join(this.modelDir, "en-us"),
      "-lm", this.languageModel?.lm ?? join(this.modelDir, "en-us.lm.bin"),
      "-dict", this.languageModel?.dict ?? join(this.modelDir, "cmudict-en-us.dict"),
      "-featparams", featParams,
      "-vad_postspeech", String(RECOGNISER_POST_SPEECH_FRAMES),
      ...SPEED_ARGS,
      ...this.extraArgs,
    ];
    let pipe: { readFd: number; writeFd: number };
    try {
      pipe = openInputPipe();
    } catch (err) {
      this.log?.warn({ err }, "could not make the pocketsphinx input pipe");
      queueMicrotask(() => this.fail("engine_failed", "Local speech recognition could not start."));
      this.failed = true;
      return;
    }
    const child = spawn(this.binary, args, { stdio: [pipe.readFd, "pipe", "pipe"] });
    closeSync(pipe.readFd);
    const input = new Socket({ fd: pipe.writeFd, readable: false, writable: true });
    // EPIPE when the recogniser dies mid-write; the close handler deals with the death.
    input.on("error", () => {});
    this.child = child;
    this.input = input;
    this.spawnedAt = Date.now();
    this.timeline.reset();
    this.gateOpen = false;
    this.gateFloor = Infinity;
    this.preRoll = [];
    this.preRollBytes = 0;
    this.stdoutRest = "";
    this.pending = undefined;
    this.fedSinceFlush = false;
    this.speechSinceEnd = false;
    this.quietMs = 0;

    child.on("error", (err: NodeJS.ErrnoException) => {
      if (this.child !== child) return;
      this.child = undefined;
      input.destroy();
      if (err.code === "ENOENT" || err.code === "EACCES") {
        this.fail("engine_unavailable", `${PACKAGES_MESSAGE} (${this.binary} not found)`);
      } else {
        this.log?.warn({ err }, "pocketsphinx process error");
        this.childGone();
      }
    });
    // Both exist: stdio[1] and stdio[2] are "pipe".
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => this.onStdout(chunk));
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => this.onStderr(chunk));
    child.on("close", (code, signal) => {
      if (this.child !== child) return;
      this.onStdout("\n"); // the last line may lack its newline
      this.finishUtterance();
      this.child = undefined;
      input.destroy();
      if (this.stopping) return;
      this.log?.warn({ code, signal, stderr: this.stderrTail.join("\n") }, "pocketsphinx exited unexpectedly");
      this.childGone();
    });
  }

  /** The recogniser died on its own: restart with backoff, or give up after `maxRestarts`. */
  private childGone(): void {
    if (this.stopping || this.failed) return;
    // A recogniser that ran a good while before dying starts a fresh count.
    if (Date.now() - this.spawnedAt > 60_000) this.restarts = 0;
    if (this.restarts >= this.maxRestarts) {
      this.fail("engine_failed", "Local speech recognition stopped and could not be restarted.");
      return;
    }
    this.restarts++;
    // The one backoff rule, without jitter: a local process has nobody to fall in step with.
    const delayMs = backoffDelayMs(this.restarts, { initialDelayMs: 250, jitter: 0 });
    this.emitError({
      code: "engine_restarting",
      message: "Local speech recognition stopped unexpectedly and is restarting; a few words may be lost.",
      retryable: true,
    });
    this.restartTimer = setTimeout(() => {
      if (!this.stopping) this.startChild();
    }, delayMs);
  }

  private fail(code: string, message: string): void {
    if (this.failedReported) return;
    this.failed = true;
    this.failedReported = true;
    this.emitError({ code, message, retryable: false });
  }

  private emitError(error: { code: string; message: string; retryable: boolean }): void {
    if (!this.silenced) this.events.onError(error);
  }

  /**
   * Before a recogniser process hears its first speech, audio is held back (the last 400 ms) until
   * a 10 ms block is clearly louder than the quietest so far. Why: this PocketSphinx starts its VAD
   * with no noise estimate, so leading silence is taken for an utterance, and that empty utterance
   * drags the live cepstral mean far from speech; the first real sentence is then misheard.
   */
  private holdBeforeSpeech(pcm: Buffer, start: number, samples: number): void {
    const copy = this.dithered(pcm, samples);
    this.preRoll.push({ pcm: copy, start });
    this.preRollBytes += copy.byteLength;
    const limit = (PRE_ROLL_MS / 1000) * BYTES_PER_SECOND;
    while (this.preRollBytes - this.preRoll[0]!.pcm.byteLength >= limit) {
      this.preRollBytes -= this.preRoll.shift()!.pcm.byteLength;
    }
    if (!this.sawSpeech(pcm, samples)) return;
    this.gateOpen = true;
    this.speechSinceEnd = true;
    this.quietMs = 0;
    for (const held of this.preRoll) this.feed(held.pcm, held.start, held.pcm.byteLength >> 1);
    this.preRoll = [];
    this.preRollBytes = 0;
  }

  /**
   * The endpointer: true once `endSilenceMs` of quiet 10 ms blocks follow speech. Quiet is
   * relative to the quietest block heard (the first-speech gate's floor), so it works on a
   * microphone's noise as well as on padding.
   */
  private endOfSpeech(pcm: Buffer, samples: number): boolean {
    let ended = false;
    for (let block = 0; block < samples; block += GATE_BLOCK_SAMPLES) {
      const n = Math.min(GATE_BLOCK_SAMPLES, samples - block);
      let sum = 0;
      for (let i = block; i < block + n; i++) {
        const s = sampleAt(pcm, i * 2);
        sum += s * s;
      }
      const rms = Math.sqrt(sum / n);
      if (rms < this.gateFloor) this.gateFloor = rms;
      if (rms >= Math.max(GATE_MIN_RMS, this.gateFloor * QUIET_RATIO)) {
        this.speechSinceEnd = true;
        this.quietMs = 0;
        continue;
      }
      this.quietMs += (n * 1000) / SPEECH_SAMPLE_RATE_HZ;
      if (this.speechSinceEnd && this.quietMs >= this.endSilenceMs) ended = true;
    }
    return ended;
  }

  private sawSpeech(pcm: Buffer, samples: number): boolean {
    for (let block = 0; block + GATE_BLOCK_SAMPLES <= samples; block += GATE_BLOCK_SAMPLES) {
      let sum = 0;
      for (let i = block; i < block + GATE_BLOCK_SAMPLES; i++) {
        const s = sampleAt(pcm, i * 2);
        sum += s * s;
      }
      const rms = Math.sqrt(sum / GATE_BLOCK_SAMPLES);
      if (rms >= GATE_LOUD_RMS || (rms >= GATE_MIN_RMS && rms >= this.gateFloor * GATE_RATIO)) return true;
      if (rms < this.gateFloor) this.gateFloor = rms;
    }
    return false;
  }

  /**
   * A copy of `pcm` with a little uniform noise (±16 of 32768, about -66 dBFS). Why: digital
   * silence (exact zeros, e.g. a client's padding) makes this PocketSphinx's noise removal and
   * cepstral mean degenerate and it then mishears the next sentence; real microphones never
   * produce it. The copy also means the caller may reuse its buffer while the pipe holds ours.
   */
  private dithered(pcm: Buffer, samples: number): Buffer {
    const out = Buffer.allocUnsafe(samples * 2);
    const amp = this.dither;
    let x = this.rng;
    for (let i = 0; i < samples; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      let v = sampleAt(pcm, i * 2) + Math.round(((x >>> 0) / 4294967296 - 0.5) * 2 * amp);
      if (v > 32767) v = 32767;
      else if (v < -32768) v = -32768;
      out[i * 2] = v & 0xff;
      out[i * 2 + 1] = (v >> 8) & 0xff;
    }
    this.rng = x;
    return out;
  }

  private queueFull(bytes: number): boolean {
    const input = this.input;
    if (!this.child || !input) return true;
    if (input.writableLength + bytes <= this.maxQueuedBytes) return false;
    if (this.droppedWrites === 0) this.log?.warn({ queuedBytes: input.writableLength }, "pocketsphinx is behind; dropping audio");
    this.droppedWrites++;
    this.droppedBytes += bytes;
    return true;
  }

  /** Writes to the recogniser without waiting: past `maxQueuedBytes` queued, audio is dropped. */
  private feed(pcm: Buffer, start: number, samples: number): void {
    if (this.queueFull(pcm.byteLength)) return;
    this.input!.write(pcm);
    this.timeline.heard(start, samples);
    this.fedSinceFlush = true;
  }

  private onStderr(chunk: string): void {
    // Only problems are kept: INFO lines carry hypotheses, and transcripts stay out of logs.
    for (const line of chunk.split("\n")) {
      if (!/^(ERROR|FATAL|WARN)/.test(line)) continue;
      this.stderrTail.push(line.slice(0, 300));
      if (this.stderrTail.length > 10) this.stderrTail.shift();
    }
  }

  private onStdout(chunk: string): void {
    const text = this.stdoutRest + chunk;
    const lines = text.split("\n");
    this.stdoutRest = lines.pop() ?? "";
    for (const raw of lines) {
      const line = raw.trim();
      const m = WORD_LINE.exec(line);
      if (m) {
        this.pending ??= { words: [] };
        const word = m[1]!;
        this.pending.words.push({ word, startS: Number(m[2]), endS: Number(m[3]), confidence: Number(m[4]) });
        if (word === "</s>") this.finishUtterance();
      } else {
        // A hypothesis line starts the next utterance (possibly empty when nothing was heard).
        this.finishUtterance();
        this.pending = { words: [] };
      }
    }
    // The recogniser flushes its output once per utterance: a chunk ending on a line boundary
    // holds whole utterances, so whatever is pending is complete.
    if (this.stdoutRest === "" && this.pending && this.pending.words.length > 0) this.finishUtterance();
  }

  private finishUtterance(): void {
    const utt = this.pending;
    this.pending = undefined;
    if (!utt || this.silenced) return;
    const words: WordTiming[] = [];
    for (const w of utt.words) {
      if (isFiller(w.word)) continue;
      // Alternative pronunciations are printed as word(2).
      const text = w.word.replace(/\(\d+\)$/, "");
      const startMs = this.toParticipantMs(w.startS);
      // End is the start of the word's last 10 ms frame.
      const endMs = Math.max(startMs, this.toParticipantMs(w.endS + 0.01));
      const confidence = Number.isFinite(w.confidence) ? Math.min(1, Math.max(0, w.confidence)) : 0;
      words.push(create(WordTimingSchema, { text, startMs, endMs, confidence }));
    }
    if (words.length === 0) return;
    const confidence = words.reduce((sum, w) => sum + w.confidence, 0) / words.length;
    this.events.onFinal({
      text: words.map((w) => w.text).join(" "),
      isFinal: true,
      startMs: words[0]!.startMs,
      endMs: words[words.length - 1]!.endMs,
      words,
      confidence,
    });
  }

  private toParticipantMs(streamSeconds: number): number {
    const stream = Math.max(0, Math.round(streamSeconds * SPEECH_SAMPLE_RATE_HZ));
    return Math.round((this.timeline.toParticipant(stream) * 1000) / SPEECH_SAMPLE_RATE_HZ);
  }
}

/** Makes one PocketSphinx engine for a participant (one recogniser process). */
export function createPocketSphinxEngine(
  participant: { roomId: string; userId: string },
  events: SpeechEvents,
  options: PocketSphinxOptions = {},
): PocketSphinxEngine {
  return new PocketSphinxEngineImpl(participant, events, options);
}

/**
 * Local speech: each participant gets a `pocketsphinx_continuous` process fed 16 kHz PCM16 on
 * stdin; utterances come back as finals with word timings (this CLI gives no partials). Check
 * availability first with `detectPocketSphinx`; a missing binary is also reported through `onError`.
 */
export function createPocketSphinxEngineFactory(options: PocketSphinxOptions = {}): SpeechEngineFactory {
  if (options.languageModel !== "debian") {
    // Built now, at start-up, so the first speaker's stream does not wait for it (≈ 0.5 s once).
    try {
      moneyLanguageModel(options.modelDir ?? DEFAULT_POCKETSPHINX_MODEL_DIR, privateDir(), { generalWords: options.generalWords, extraWords: options.extraWords });
    } catch {
      // Each engine reports it as engine_unavailable.
    }
  }
  return (participant, events) => createPocketSphinxEngine(participant, events, options);
}
