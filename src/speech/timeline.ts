/**
 * Maps positions in the audio an engine heard (its "stream": what was written to the recogniser
 * process or sent to the vendor) back to the participant's own timeline. They differ wherever the
 * engine heard audio the participant did not say (flush padding, keepalive silence) or missed
 * audio the participant did say (muted, dropped under backpressure, a new vendor session that
 * starts from replayed audio). Positions are in samples at one fixed rate.
 */
export class Timeline {
  /** Runs of stream samples that are participant audio: [streamStart, participantStart, length]. */
  private readonly runs: number[] = [];
  private streamEnd = 0;

  /** At most this many runs are kept; older ones are forgotten (their words were long committed). */
  constructor(private readonly maxRuns = 256) {}

  /** Samples the engine has heard so far. */
  get streamPosition(): number {
    return this.streamEnd;
  }

  /** The engine heard `length` samples of participant audio starting at `participantStart`. */
  heard(participantStart: number, length: number): void {
    if (length <= 0) return;
    const n = this.runs.length;
    if (n >= 3) {
      const s = this.runs[n - 3]!;
      const p = this.runs[n - 2]!;
      const l = this.runs[n - 1]!;
      // Contiguous on both timelines: extend the last run instead of adding one.
      if (s + l === this.streamEnd && p + l === participantStart) {
        this.runs[n - 1] = l + length;
        this.streamEnd += length;
        return;
      }
    }
    this.runs.push(this.streamEnd, participantStart, length);
    this.streamEnd += length;
    if (this.runs.length > this.maxRuns * 3) this.runs.splice(0, 3);
  }

  /** The engine heard `length` samples that are not participant audio (padding, keepalive). */
  inserted(length: number): void {
    if (length > 0) this.streamEnd += length;
  }

  /**
   * Participant position of stream position `stream`. Inside inserted audio it clamps to the end
   * of the participant audio before it, so a word never ends in padding.
   */
  toParticipant(stream: number): number {
    const runs = this.runs;
    // Search from the end: lookups are almost always about recent audio.
    for (let i = runs.length - 3; i >= 0; i -= 3) {
      const s = runs[i]!;
      if (stream >= s) {
        const offset = Math.min(stream - s, runs[i + 2]!);
        return runs[i + 1]! + offset;
      }
    }
    const first = runs[1];
    return first ?? 0;
  }

  /** Forgets everything: the engine starts a new stream at position 0. */
  reset(): void {
    this.runs.length = 0;
    this.streamEnd = 0;
  }
}
