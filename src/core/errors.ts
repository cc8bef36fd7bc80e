/**
 * Named domain errors. The server maps each to one status code in src/server/errors.ts; their
 * messages are shown to callers, so they say what was wrong without leaking internals.
 */

/** The thing asked for does not exist (or the caller may not know it exists). */
export class NotFoundError extends Error {
  override readonly name = "NotFoundError";
}

/** The caller is who they say, but may not do this. */
export class PermissionDeniedError extends Error {
  override readonly name = "PermissionDeniedError";
}

/** The request is fine but the thing is not in a state that allows it. */
export class FailedPreconditionError extends Error {
  override readonly name = "FailedPreconditionError";
}

/** A field of the request is wrong; the message names it. */
export class InvalidArgumentError extends Error {
  override readonly name = "InvalidArgumentError";
}

/** A limit was reached (rooms, participants, streams, rate); `retryAfterMs` when waiting helps. */
export class ResourceExhaustedError extends Error {
  override readonly name = "ResourceExhaustedError";
  /** How long until the same call may succeed (a rate limit), when known. */
  readonly retryAfterMs: number | undefined;
  constructor(message: string, options?: { retryAfterMs?: number }) {
    super(message);
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/** The caller's identity could not be established. */
export class UnauthenticatedError extends Error {
  override readonly name = "UnauthenticatedError";
}
