import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
} from "../core/errors.js";
import { NegotiationMoveError } from "../deal/negotiation.js";
import { SubscriberOverflowError, EventLogClosedError } from "../events/event-log.js";
import { RoomOnOtherNodeError } from "../room/placement.js";
import { InvalidCursorError } from "../store/cursor.js";
import { asStoreUnavailable } from "../store/store-errors.js";

/**
 * The one place domain errors become status codes. Named errors keep their message; anything
 * unknown becomes Internal with a generic message, and its cause goes to the log only.
 */
export function toConnectError(err: unknown, log: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  const code = codeOf(err);
  // A rate limit's hint travels as a retry-after header (seconds), on every protocol.
  if (err instanceof ResourceExhaustedError && err.retryAfterMs !== undefined) {
    return new ConnectError(err.message, code, { "retry-after": String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))) });
  }
  if (code !== undefined) return new ConnectError((err as Error).message, code);
  if (isAudioInputError(err)) return new ConnectError((err as Error).message, Code.InvalidArgument);
  // A full disk or a failing one: the client may retry later; operators must hear of it.
  const storeDown = asStoreUnavailable(err);
  if (storeDown) {
    log.error({ err, reason: storeDown.reason }, "store unavailable");
    return new ConnectError(storeDown.message, Code.Unavailable);
  }
  log.error({ err }, "internal error");
  return new ConnectError("internal error", Code.Internal);
}

function codeOf(err: unknown): Code | undefined {
  if (err instanceof InvalidArgumentError) return Code.InvalidArgument;
  if (err instanceof InvalidCursorError) return Code.InvalidArgument;
  if (err instanceof NotFoundError) return Code.NotFound;
  if (err instanceof PermissionDeniedError) return Code.PermissionDenied;
  if (err instanceof UnauthenticatedError) return Code.Unauthenticated;
  if (err instanceof ResourceExhaustedError) return Code.ResourceExhausted;
  if (err instanceof FailedPreconditionError) return Code.FailedPrecondition;
  if (err instanceof NegotiationMoveError) return Code.FailedPrecondition;
  if (err instanceof SubscriberOverflowError) return Code.ResourceExhausted;
  if (err instanceof EventLogClosedError) return Code.Unavailable;
  if (err instanceof RoomOnOtherNodeError) return Code.Unavailable;
  return undefined;
}

/** Audio and transcript input errors from src/audio and src/speech, recognised by name. */
function isAudioInputError(err: unknown): boolean {
  return err instanceof Error && (err.name === "AudioFormatError" || err.name === "TranscriptInputError");
}
