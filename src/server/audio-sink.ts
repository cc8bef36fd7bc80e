import type { AudioFormat, AudioFrame } from "../../gen/handshake/v1/audio_pb.js";
import { createAsyncQueue } from "../core/async-queue.js";
import { ResourceExhaustedError } from "../core/errors.js";
import { audioFrameCounts } from "../core/metrics.js";
import type { AudioSink } from "../room/room.js";

/** Peer audio frames queued per outgoing audio stream, on either path (5 s of 20 ms frames). */
export const PEER_AUDIO_QUEUE_FRAMES = 250;

/** What a peer-audio stream yields: the peer's format when it changes, then frames. */
export type PeerAudioMessage = { case: "peerFormat"; value: AudioFormat } | { case: "peerFrame"; value: AudioFrame };

/**
 * A bounded queue between the room's relay and one outgoing audio stream. A reader that falls
 * more than `limit` messages behind loses its own stream (RESOURCE_EXHAUSTED), never memory.
 */
export class QueuedAudioSink implements AudioSink {
  private readonly queue = createAsyncQueue<PeerAudioMessage>();
  private lastFormat: AudioFormat | undefined;

  constructor(private readonly limit: number) {}

  push(frame: AudioFrame, format: AudioFormat | undefined): void {
    if (this.queue.closed) return;
    if (format && format !== this.lastFormat) {
      this.lastFormat = format;
      this.queue.push({ case: "peerFormat", value: format });
    }
    if (this.queue.size >= this.limit) {
      audioFrameCounts.dropped++;
      this.fail(new ResourceExhaustedError(`audio stream fell more than ${this.limit} frames behind`));
      return;
    }
    this.queue.push({ case: "peerFrame", value: frame });
  }

  /** Ends the stream with an error after what is queued is dropped. */
  fail(err: Error): void {
    this.queue.fail(err);
  }

  /** Ends the stream quietly. */
  end(): void {
    this.queue.end();
  }

  /** Yields queued messages until ended, failed or aborted. */
  drain(signal: AbortSignal): AsyncGenerator<PeerAudioMessage> {
    return this.queue.drain(signal);
  }
}
