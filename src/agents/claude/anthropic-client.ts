import Anthropic, {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  NotFoundError,
  PaymentRequiredError,
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
  /** The fetch the SDK uses (the composition root's timed one); default the global fetch. */
  fetch?: typeof fetch;
}

/** Makes an SDK client; retries and backoff are the SDK's (it honours retry-after). */
export function createAnthropicClient(connection: AnthropicConnection): Anthropic {
  return new Anthropic({
    apiKey: connection.apiKey,
    ...(connection.baseURL ? { baseURL: connection.baseURL } : {}),
    timeout: connection.timeoutMs ?? 60_000,
    maxRetries: connection.maxRetries ?? 2,
    ...(connection.fetch ? { fetch: connection.fetch } : {}),
  });
}

/** A Claude call failure in words for the person, and whether trying again later can help. */
export interface ClaudeFailure {
  /** Fit to show the person. */
  message: string;
  /**
   * Every further call would fail the same way (refused key, no access, unknown or retired
   * model, billing): the caller stops calling after saying so once.
   */
  fatal: boolean;
  /** The call was cancelled on purpose (agent stopped): say nothing. */
  aborted: boolean;
  /** HTTP status when there was one. */
  status?: number;
  /** The API's request id, for the log (support asks for it). */
  requestId?: string;
}

/**
 * A 400 about the model or a setting the configuration fixes for every call (max_tokens,
 * tools, tool_choice, thinking, output settings) repeats on every call; one about `messages`
 * depends on the history, which the caller can drop and start again.
 */
function isModelProblem(err: APIError): boolean {
  const text = `${err.apiMessage ?? err.message}`;
  if (/^messages[.:]/.test(text)) return false;
  return /\bmodel\b/i.test(text) || /^(model|max_tokens|tools|tool_choice|thinking|output_config|temperature|top_p|top_k)[.:]/.test(text);
}

/**
 * Classifies an error thrown by the SDK. 429, 529 and other 5xx are transient (the SDK has
 * already retried them); 401, 402, 403, 404 and model errors are fatal for the caller.
 */
export function describeClaudeError(err: unknown, model?: string): ClaudeFailure {
  const requestId = err instanceof APIError && typeof err.requestID === "string" ? { requestId: err.requestID } : {};
  const named = model ? `ANTHROPIC_MODEL=${model}` : "the configured ANTHROPIC_MODEL";
  if (err instanceof APIUserAbortError) return { message: "The request was cancelled.", fatal: false, aborted: true };
  if (err instanceof AuthenticationError) {
    return {
      message: "The Anthropic API key was refused (401 authentication error). The agent cannot use Claude until the server's ANTHROPIC_API_KEY is fixed.",
      fatal: true,
      aborted: false,
      status: 401,
      ...requestId,
    };
  }
  if (err instanceof PaymentRequiredError) {
    return { message: "The Anthropic account cannot pay for more requests (402). The agent has stopped using Claude.", fatal: true, aborted: false, status: 402, ...requestId };
  }
  if (err instanceof PermissionDeniedError) {
    return {
      message: `The Anthropic API key may not use ${named} (403 permission error). The agent has stopped using Claude.`,
      fatal: true,
      aborted: false,
      status: 403,
      ...requestId,
    };
  }
  if (err instanceof NotFoundError) {
    return {
      message: `Claude answered 404 (${err.apiMessage ?? "not found"}): ${named} does not exist or is retired. The agent has stopped using Claude.`,
      fatal: true,
      aborted: false,
      status: 404,
      ...requestId,
    };
  }
  if (err instanceof RateLimitError && err.errorCode === "enforced_spend_limit_reached") {
    // The organisation's monthly spend limit, not a rate: waiting minutes does not help.
    return { message: "The Anthropic account reached its spend limit (429). The agent has stopped using Claude.", fatal: true, aborted: false, status: 429, ...requestId };
  }
  if (err instanceof RateLimitError) {
    return { message: "Claude is rate-limited right now (429) and retries did not help; try again shortly.", fatal: false, aborted: false, status: 429, ...requestId };
  }
  if (err instanceof BadRequestError) {
    const fatal = isModelProblem(err);
    return {
      message: fatal
        ? `Claude refused the request for ${named} (400): ${err.apiMessage ?? err.message}. The agent has stopped using Claude.`
        : `Claude rejected the request (400): ${err.apiMessage ?? err.message}`,
      fatal,
      aborted: false,
      status: 400,
      ...requestId,
    };
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
      message: status === 529 ? "Claude is overloaded right now (529); try again shortly." : `Claude failed (${status ?? "error"}): ${err.apiMessage ?? err.message}`,
      fatal: false,
      aborted: false,
      ...(status !== undefined ? { status } : {}),
      ...requestId,
    };
  }
  return { message: "Claude could not be asked because of an internal error.", fatal: false, aborted: false };
}

/** What the Models API said about the configured model at start. */
export type ClaudeModelCheck =
  | { ok: true; id: string; displayName: string; lifecycle: "active" | "deprecated"; retiresAt: string | null }
  /** `unknown`: 404 or retired; `key`: the key was refused; `access`: 403. */
  | { ok: false; reason: "unknown" | "retired" | "key" | "access"; message: string }
  /** The API could not be asked (network, 5xx after retries): the check is inconclusive. */
  | { ok: false; reason: "unreachable"; message: string };

/**
 * Asks the Models API (GET /v1/models/{id}) whether `model` exists and may be used, so a
 * wrong or retired ANTHROPIC_MODEL stops the server at start instead of failing every call.
 */
export async function checkClaudeModel(connection: AnthropicConnection, model: string): Promise<ClaudeModelCheck> {
  const client = createAnthropicClient({ timeoutMs: 15_000, maxRetries: 2, ...connection });
  try {
    const info = await client.models.retrieve(model);
    if (info.lifecycle === "retired") {
      return {
        ok: false,
        reason: "retired",
        message: `ANTHROPIC_MODEL=${model} (${info.display_name}) is retired${info.retires_at ? ` since ${info.retires_at.slice(0, 10)}` : ""}; requests naming it fail. Set ANTHROPIC_MODEL to a current model.`,
      };
    }
    return { ok: true, id: info.id, displayName: info.display_name, lifecycle: info.lifecycle === "deprecated" ? "deprecated" : "active", retiresAt: info.retires_at };
  } catch (err) {
    // Only the API's own not_found_error says the model is unknown; a bare 404 is a proxy
    // (ANTHROPIC_BASE_URL) without the Models API, which proves nothing about the model.
    if (err instanceof NotFoundError && err.type === "not_found_error") {
      return { ok: false, reason: "unknown", message: `ANTHROPIC_MODEL=${model} is not a model the Anthropic API knows (404 from GET /v1/models/${model}). Set ANTHROPIC_MODEL to a current model.` };
    }
    if (err instanceof AuthenticationError) {
      return { ok: false, reason: "key", message: "ANTHROPIC_API_KEY was refused by the Anthropic API (401 authentication error)." };
    }
    if (err instanceof PermissionDeniedError) {
      return { ok: false, reason: "access", message: `ANTHROPIC_API_KEY may not use ANTHROPIC_MODEL=${model} (403 permission error).` };
    }
    return { ok: false, reason: "unreachable", message: describeClaudeError(err, model).message };
  }
}
