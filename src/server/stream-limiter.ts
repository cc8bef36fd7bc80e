import { ResourceExhaustedError } from "../core/errors.js";

/**
 * Counts a user's open streams across every kind (panel, audio on either path) and refuses past
 * the limit. One instance per server, owned by its call scopes (call-scope.ts).
 */
export class StreamLimiter {
  private readonly open = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** Takes a slot or throws ResourceExhaustedError; the returned release is safe to call twice. */
  acquire(userId: string): () => void {
    const n = this.open.get(userId) ?? 0;
    if (n >= this.max) throw new ResourceExhaustedError(`at most ${this.max} open streams per user`);
    this.open.set(userId, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(userId) ?? 1) - 1;
      if (left <= 0) this.open.delete(userId);
      else this.open.set(userId, left);
    };
  }
}
