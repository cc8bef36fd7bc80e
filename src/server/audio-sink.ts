import type { AudioFormat, AudioFrame } from "../../gen/handshake/v1/audio_pb.js";
import { ResourceExhaustedError } from "../core/errors.js";
import type { AudioSink } from "../room/room.js";

/** What a peer-audio stream yields: the peer's format when it changes, then frames. */
export type PeerAudioMessage = { case: "peerFormat"; value: AudioFormat } | { case: "peerFrame"; value: AudioFrame };

/**
 * A bounded queue between the room's relay and one outgoing audio stream. A reader that falls
 * more than `limit` messages behind loses its own stream (RESOURCE_EXHAUSTED), never memory.
 */
export class QueuedAudioSink implements AudioSink {
  private readonly queue: PeerAudioMessage[] = [];
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private ended = false;
  private lastFormat: AudioFormat | undefined;

  constructor(private readonly limit: number) {}

  push(frame: AudioFrame, format: AudioFormat | undefined): void {
    if (this.failure || this.ended) return;
    if (format && format !== this.lastFormat) {
      this.lastFormat = format;
      this.queue.push({ case: "peerFormat", value: format });
    }
    if (this.queue.length >= this.limit) {
      this.fail(new ResourceExhaustedError(`audio stream fell more than ${this.limit} frames behind`));
      return;
    }
    this.queue.push({ case: "peerFrame", value: frame });
    this.wake?.();
  }

  /** Ends the stream with an error after what is queued is dropped. */
  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.queue.length = 0;
    this.wake?.();
  }

  /** Ends the stream quietly. */
  end(): void {
    this.ended = true;
    this.wake?.();
  }

  /** Yields queued messages until ended, failed or aborted. */
  async *drain(signal: AbortSignal): AsyncGenerator<PeerAudioMessage> {
    const onAbort = () => this.end();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      for (;;) {
        const next = this.queue.shift();
        if (next) {
          yield next;
          continue;
        }
        if (this.failure) throw this.failure;
        if (this.ended || signal.aborted) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }
}
