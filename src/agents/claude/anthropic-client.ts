import Anthropic, {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  PermissionDeniedError,
  RateLimitError,
} from "@anthropic-ai/sdk";

/** How every Claude engine here connects: the key, an optional base URL (tests), timeouts, retries. */
export interface AnthropicConnection {
  apiKey: string;
  baseURL?: string;
  /** Per-attempt timeout, milliseconds; default 60 s. */
  timeoutMs?: number;
  /** SDK retries for 408/409/429/5xx (incl. 529 overloaded) and connection errors; default 2. */
  maxRetries?: number;
}

/** Makes an SDK client; retries and backoff are the SDK's (it honours retry-after). */
export function createAnthropicClient(connection: AnthropicConnection): Anthropic {
  return new Anthropic({
    apiKey: connection.apiKey,
    ...(connection.baseURL ? { baseURL: connection.baseURL } : {}),
    timeout: connection.timeoutMs ?? 60_000,
    maxRetries: connection.maxRetries ?? 2,
  });
}

/** A Claude call failure in words for the person, and whether trying again later can help. */
export interface ClaudeFailure {
  /** Fit to show the person. */
  message: string;
  /** The key or account is wrong: every further call would fail the same way. */
  fatal: boolean;
  /** The call was cancelled on purpose (agent stopped): say nothing. */
  aborted: boolean;
  /** HTTP status when there was one. */
  status?: number;
}

/** Classifies an error thrown by the SDK. */
export function describeClaudeError(err: unknown): ClaudeFailure {
  if (err instanceof APIUserAbortError) return { message: "The request was cancelled.", fatal: false, aborted: true };
  if (err instanceof AuthenticationError) {
    return {
      message: "The Anthropic API key was refused (401 authentication error). The agent cannot use Claude until the server's ANTHROPIC_API_KEY is fixed.",
      fatal: true,
      aborted: false,
      status: 401,
    };
  }
  if (err instanceof PermissionDeniedError) {
    return { message: "The Anthropic API key may not use this model (403 permission error).", fatal: true, aborted: false, status: 403 };
  }
  if (err instanceof RateLimitError) {
    return { message: "Claude is rate-limited right now (429) and retries did not help; try again shortly.", fatal: false, aborted: false, status: 429 };
  }
  if (err instanceof BadRequestError) {
    return { message: `Claude rejected the request (400): ${err.message}`, fatal: false, aborted: false, status: 400 };
  }
  if (err instanceof APIConnectionTimeoutError) {
    return { message: "Claude did not answer in time.", fatal: false, aborted: false };
  }
  if (err instanceof APIConnectionError) {
    return { message: "Claude could not be reached (connection error).", fatal: false, aborted: false };
  }
  if (err instanceof APIError) {
    const status = typeof err.status === "number" ? err.status : undefined;
    return {
      message: status === 529 ? "Claude is overloaded right now (529); try again shortly." : `Claude failed (${status ?? "error"}): ${err.message}`,
      fatal: false,
      aborted: false,
      ...(status !== undefined ? { status } : {}),
    };
  }
  return { message: "Claude could not be asked because of an internal error.", fatal: false, aborted: false };
}
