import type { Logger } from "pino";
import { backoffDelayMs, type BackoffOptions, type Retryable } from "../core/retry.js";
import type { RecognisedSpeech, SpeechEngine, SpeechError, SpeechEvents } from "./speech-engine.js";

/** A speech engine failure: a stable code, a sentence fit for a person, and whether retrying may help. */
export class SpeechEngineError extends Error implements Retryable {
  override readonly name = "SpeechEngineError";
  /** Server-suggested wait before retrying (Retry-After), when it gave one. */
  readonly retryAfterMs: number | undefined;

  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
    options: { cause?: unknown; retryAfterMs?: number } = {},
  ) {
    super(message, { cause: options.cause });
    this.retryAfterMs = options.retryAfterMs;
  }

  /** The plain form the room shows on the panel. */
  toSpeechError(): SpeechError {
    return { code: this.code, message: this.message, retryable: this.retryable };
  }
}

/** Settings every remote engine shares. */
export interface RemoteEngineOptions {
  backoff?: BackoffOptions;
  /** Consecutive failed connections before giving up. Default 8. */
  maxAttempts?: number;
  /** A connection that lasted this long counts as healthy and resets the attempt count. Default 10 s. */
  stableAfterMs?: number;
  log?: Logger;
  /** Randomness for jitter; tests pass a fixed one. */
  random?: () => number;
}

/**
 * Base of engines that talk to a vendor over a connection. It owns the lifecycle: connecting,
 * reconnecting with exponential backoff on retryable failures, giving up after `maxAttempts`,
 * never retrying a non-retryable failure, reporting each outage once, and a `stop` that is safe
 * twice and silences every event once done. A subclass only speaks its vendor's protocol.
 */
export abstract class RemoteSpeechEngine implements SpeechEngine {
  abstract readonly name: string;
  abstract write(pcm: Buffer): void;
  abstract flush(): void;
  abstract setMuted(muted: boolean): void;

  /** Opens a new connection; the subclass later calls `connected()` or `disconnected(error)`. */
  protected abstract openConnection(attempt: number): void;
  /** Closes the current connection for good (stop or fatal error); may finish pending work first. */
  protected abstract closeConnection(graceful: boolean): Promise<void>;

  /** Aborted on stop: pending timers and waits end with it. */
  protected readonly signal: AbortSignal;
  protected readonly log: Logger | undefined;

  private readonly abort = new AbortController();
  private readonly backoff: BackoffOptions;
  private readonly maxAttempts: number;
  private readonly stableAfterMs: number;
  private readonly random: () => number;
  private attempt = 0;
  private connectedAt: number | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private outageReported = false;
  private readonly reported = new WeakSet<SpeechEngineError>();
  private failed = false;
  private stopping: Promise<void> | undefined;
  private silenced = false;

  protected constructor(
    protected readonly events: SpeechEvents,
    options: RemoteEngineOptions,
  ) {
    this.signal = this.abort.signal;
    this.backoff = options.backoff ?? {};
    this.maxAttempts = options.maxAttempts ?? 8;
    this.stableAfterMs = options.stableAfterMs ?? 10_000;
    this.random = options.random ?? Math.random;
    this.log = options.log;
  }

  /** True until stop or a failure that is not retried; subclasses drop audio when false. */
  protected get active(): boolean {
    return !this.failed && !this.stopping;
  }

  /** Makes the first connection; call at the end of the subclass constructor. */
  protected start(): void {
    this.openConnection(0);
  }

  /** The vendor accepted the session. */
  protected connected(): void {
    this.connectedAt = Date.now();
    this.outageReported = false;
  }

  /** The connection ended or could not be made; retries or gives up depending on `error`. */
  protected disconnected(error: SpeechEngineError): void {
    if (!this.active) return;
    if (!error.retryable) {
      this.fail(error);
      return;
    }
    if (this.connectedAt !== undefined && Date.now() - this.connectedAt >= this.stableAfterMs) this.attempt = 0;
    this.connectedAt = undefined;
    this.attempt++;
    if (this.attempt > this.maxAttempts) {
      this.fail(
        new SpeechEngineError("unavailable", `Speech recognition (${this.name}) could not reconnect after ${this.maxAttempts} attempts.`, false, {
          cause: error,
        }),
      );
      return;
    }
    if (!this.outageReported && !this.reported.has(error)) this.emitError(error);
    this.outageReported = true;
    const delayMs = Math.max(backoffDelayMs(this.attempt, this.backoff, this.random), error.retryAfterMs ?? 0);
    this.log?.info({ attempt: this.attempt, delayMs, code: error.code }, "speech engine reconnecting");
    const attempt = this.attempt;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.active) this.openConnection(attempt);
    }, delayMs);
  }

  /** A problem worth showing that does not end the connection by itself (or not yet). */
  protected report(error: SpeechEngineError): void {
    if (!this.active) return;
    if (!error.retryable) {
      this.fail(error);
      return;
    }
    this.reported.add(error);
    this.emitError(error);
  }

  /** Gives up: reports a non-retryable error and closes the connection. */
  protected fail(error: SpeechEngineError): void {
    if (!this.active) return;
    this.failed = true;
    clearTimeout(this.retryTimer);
    const fatal = error.retryable ? new SpeechEngineError(error.code, error.message, false, { cause: error }) : error;
    this.log?.warn({ code: fatal.code }, "speech engine failed");
    this.emitError(fatal);
    void this.closeConnection(false).catch((err: unknown) => this.log?.warn({ err }, "speech engine close failed"));
  }

  protected emitPartial(speech: RecognisedSpeech): void {
    if (!this.silenced) this.events.onPartial(speech);
  }

  protected emitFinal(speech: RecognisedSpeech): void {
    if (!this.silenced) this.events.onFinal(speech);
  }

  private emitError(error: SpeechEngineError): void {
    if (!this.silenced) this.events.onError(error.toSpeechError());
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      clearTimeout(this.retryTimer);
      try {
        await this.closeConnection(!this.failed);
      } finally {
        this.abort.abort();
        this.silenced = true;
      }
    })();
    return this.stopping;
  }
}
