import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
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
import { RoomDirectoryUnavailableError, RoomOnOtherNodeError } from "../room/placement.js";
import { InvalidCursorError } from "../store/cursor.js";
import { asStoreUnavailable } from "../store/store-errors.js";
import { InvalidFieldError } from "./validate.js";

/** The `domain` of every google.rpc.ErrorInfo this server sends. */
export const ERROR_DOMAIN = "handshake.dev";

type Detail = ConstructorParameters<typeof ConnectError>[3] extends (infer D)[] | undefined ? D : never;

/**
 * The one place domain errors become status codes. Named errors keep their message; anything
 * unknown becomes Internal with a generic message, and its cause goes to the log only.
 */
export function toConnectError(err: unknown, log: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  const code = codeOf(err);
  // A rate limit's hint travels as a retry-after header (seconds) and as RetryInfo, on every protocol.
  if (err instanceof ResourceExhaustedError && err.retryAfterMs !== undefined) {
    return new ConnectError(err.message, code, { "retry-after": String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))) }, [
      errorInfo(err),
      retryInfo(err.retryAfterMs),
    ]);
  }
  if (err instanceof InvalidFieldError) {
    const violation = { field: err.field, description: err.message, reason: err.reason };
    return new ConnectError(err.message, Code.InvalidArgument, undefined, [errorInfo(err), { desc: BadRequestSchema, value: { fieldViolations: [violation] } }]);
  }
  if (code !== undefined) return new ConnectError((err as Error).message, code, undefined, [errorInfo(err as Error)]);
  if (isAudioInputError(err)) return new ConnectError((err as Error).message, Code.InvalidArgument, undefined, [errorInfo(err as Error)]);
  // A full disk or a failing one: the client may retry later; operators must hear of it.
  const storeDown = asStoreUnavailable(err);
  if (storeDown) {
    log.error({ err, reason: storeDown.reason }, "store unavailable");
    return new ConnectError(storeDown.message, Code.Unavailable, undefined, [{ desc: ErrorInfoSchema, value: { reason: "STORE_UNAVAILABLE", domain: ERROR_DOMAIN } }]);
  }
  log.error({ err }, "internal error");
  return new ConnectError("internal error", Code.Internal);
}

/**
 * google.rpc.ErrorInfo for a named error: its reason is the error's name in UPPER_SNAKE_CASE
 * without "Error" (RoomFullError → ROOM_FULL), stable as long as the name is; domain handshake.dev.
 */
function errorInfo(err: Error): Detail {
  const reason = err.name.replace(/Error$/, "").replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase() || "UNKNOWN";
  const value: MessageInitShape<typeof ErrorInfoSchema> = { reason, domain: ERROR_DOMAIN };
  return { desc: ErrorInfoSchema, value };
}

/** google.rpc.RetryInfo: wait at least `retryAfterMs` before the same call. */
function retryInfo(retryAfterMs: number): Detail {
  const ms = Math.max(0, Math.ceil(retryAfterMs));
  const value: MessageInitShape<typeof RetryInfoSchema> = { retryDelay: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 } };
  return { desc: RetryInfoSchema, value };
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
  if (err instanceof RoomDirectoryUnavailableError) return Code.Unavailable;
  return undefined;
}

/** Audio and transcript input errors from src/audio and src/speech, recognised by name. */
function isAudioInputError(err: unknown): boolean {
  return err instanceof Error && (err.name === "AudioFormatError" || err.name === "TranscriptInputError");
}
