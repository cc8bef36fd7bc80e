import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local stand-in for the Anthropic API on 127.0.0.1, port 0: the Messages API
 * (POST /v1/messages) and the Models API (GET /v1/models, GET /v1/models/{id}). It answers
 * from a script of replies and records every request exactly as the SDK sent it. Like the real
 * service it refuses what the real service refuses (empty turns, tool_use without its
 * tool_result, unknown models, forced tool choice on models without it) with the real error
 * envelope, HTTP status and `request-id` header, so a client bug shows up as the same 400.
 * For tests only.
 */

/** One request as received. */
export interface FakeAnthropicRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body ({} for a GET). */
  body: Record<string, unknown>;
}

/** A reply as sent: status (default 200), JSON body, extra headers. */
export interface FakeAnthropicResponse {
  status?: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** A scripted reply: a response, or a function of the request that makes one. */
export type FakeAnthropicReply = FakeAnthropicResponse | ((request: FakeAnthropicRequest) => FakeAnthropicResponse);

/** A request the fake refused on the real API's rules, before any scripted reply was used. */
export interface FakeAnthropicRejection {
  request: FakeAnthropicRequest;
  status: number;
  type: string;
  message: string;
}

/** A model in the fake's catalogue, with the request rules that differ between models. */
export interface FakeModel {
  id: string;
  displayName?: string;
  /** `retired` models are listed by the Models API but refused by the Messages API (404). */
  lifecycle?: "active" | "deprecated" | "retired";
  /** RFC 3339; set for deprecated and retired models. */
  retiresAt?: string;
  /** Whether `tool_choice` "any"/"tool" is accepted; Opus 5.5, Sonnet 5.5 and Fable 5.1 answer 400. */
  forcedToolChoice?: boolean;
  /** Whether a final assistant turn (prefill) is accepted; the 5.5 models answer 400. */
  prefill?: boolean;
}

/**
 * The catalogue when a test names none: current models, one deprecated, one retired, and
 * "claude-test", a permissive model for tests about other things.
 */
export const FAKE_MODELS: readonly FakeModel[] = [
  { id: "claude-sonnet-5-5", displayName: "Claude Sonnet 5.5", forcedToolChoice: false, prefill: false },
  { id: "claude-opus-5-5", displayName: "Claude Opus 5.5", forcedToolChoice: false, prefill: false },
  { id: "claude-haiku-4-5", displayName: "Claude Haiku 4.5" },
  { id: "claude-opus-4-5", displayName: "Claude Opus 4.5", lifecycle: "deprecated", retiresAt: "2027-01-22T00:00:00Z" },
  { id: "claude-sonnet-4-5", displayName: "Claude Sonnet 4.5", lifecycle: "retired", retiresAt: "2026-11-30T00:00:00Z" },
  { id: "claude-test", displayName: "Test model" },
];

/** A running fake. */
export interface FakeAnthropic {
  /** Base URL to give the SDK (`baseURL`). */
  url: string;
  /** Every request, refused ones included, in arrival order. */
  requests: FakeAnthropicRequest[];
  /** Requests to POST /v1/messages only. */
  messageRequests(): FakeAnthropicRequest[];
  /** Requests refused by the fake's rules (400/404), with the error sent. */
  rejections: FakeAnthropicRejection[];
  /** Adds Messages API replies, used in order; when none is left the fake answers 500 api_error. */
  reply(...replies: FakeAnthropicReply[]): void;
  /** Resolves once `count` requests in total have arrived. */
  waitForRequests(count: number): Promise<FakeAnthropicRequest[]>;
  close(): Promise<void>;
}

/** Starts the fake. Requests with a key other than `validKey` get the real 401 body. */
export async function startFakeAnthropic(options: { validKey?: string; models?: readonly FakeModel[] } = {}): Promise<FakeAnthropic> {
  const validKey = options.validKey ?? "sk-ant-test";
  const models = new Map((options.models ?? FAKE_MODELS).map((m) => [m.id, m]));
  const requests: FakeAnthropicRequest[] = [];
  const rejections: FakeAnthropicRejection[] = [];
  const script: FakeAnthropicReply[] = [];
  const waiters: { count: number; resolve: (r: FakeAnthropicRequest[]) => void }[] = [];
  let counter = 0;

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      counter += 1;
      const requestId = `req_fake${String(counter).padStart(6, "0")}`;
      const send = (status: number, payload: unknown, headers: Record<string, string> = {}): void => {
        res.writeHead(status, { "content-type": "application/json", "request-id": requestId, ...headers });
        res.end(JSON.stringify(payload));
      };
      const raw = Buffer.concat(chunks).toString("utf8");
      let body: Record<string, unknown> = {};
      let badJson = false;
      try {
        const parsed: unknown = JSON.parse(raw || "{}");
        if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) body = parsed as Record<string, unknown>;
        else badJson = true;
      } catch {
        badJson = true;
      }
      const path = (req.url ?? "").split("?")[0] ?? "";
      const request: FakeAnthropicRequest = { method: req.method ?? "", path, headers: req.headers, body };
      requests.push(request);
      for (const w of [...waiters]) {
        if (requests.length >= w.count) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(requests.slice());
        }
      }
      const refuse = (status: number, type: string, message: string): void => {
        rejections.push({ request, status, type, message });
        send(status, errorBody(type, message, requestId));
      };

      const isMessages = req.method === "POST" && path === "/v1/messages";
      const modelMatch = /^\/v1\/models(?:\/([^/]+))?$/.exec(path);
      if (!isMessages && !(req.method === "GET" && modelMatch)) {
        refuse(404, "not_found_error", "Not Found");
        return;
      }
      const key = req.headers["x-api-key"] ?? (req.headers.authorization ?? "").replace(/^Bearer\s+/i, "");
      if (key === "" ) {
        refuse(401, "authentication_error", "x-api-key header is required");
        return;
      }
      if (key !== validKey) {
        refuse(401, "authentication_error", "invalid x-api-key");
        return;
      }
      if (!req.headers["anthropic-version"]) {
        refuse(400, "invalid_request_error", "anthropic-version: header is required");
        return;
      }

      if (modelMatch) {
        const id = modelMatch[1] ? decodeURIComponent(modelMatch[1]) : undefined;
        if (id === undefined) {
          const data = [...models.values()].map(modelInfo);
          send(200, { data, has_more: false, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null });
          return;
        }
        const model = models.get(id);
        if (!model) {
          refuse(404, "not_found_error", `model: ${id}`);
          return;
        }
        send(200, modelInfo(model));
        return;
      }

      if (badJson) {
        refuse(400, "invalid_request_error", "The request body is not valid JSON.");
        return;
      }
      const problem = checkMessagesRequest(body, models);
      if (problem) {
        refuse(problem.status, problem.type, problem.message);
        return;
      }
      const next = script.shift();
      if (!next) {
        send(500, errorBody("api_error", "No scripted reply left in the fake.", requestId));
        return;
      }
      const reply = typeof next === "function" ? next(request) : next;
      const payload = reply.body;
      // An error reply carries this response's request id, as the real envelope does.
      if (isErrorEnvelope(payload)) payload.request_id = requestId;
      send(reply.status ?? 200, payload, reply.headers ?? {});
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    messageRequests: () => requests.filter((r) => r.method === "POST" && r.path === "/v1/messages"),
    rejections,
    reply: (...replies) => void script.push(...replies),
    waitForRequests(count) {
      if (requests.length >= count) return Promise.resolve(requests.slice());
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

/** Every fake model's output limit (Haiku 4.5's, the smallest current one). */
const MAX_OUTPUT_TOKENS = 64_000;

/** The Models API's object for one model. */
function modelInfo(model: FakeModel): Record<string, unknown> {
  const lifecycle = model.lifecycle ?? "active";
  return {
    type: "model",
    id: model.id,
    display_name: model.displayName ?? model.id,
    created_at: "2026-01-01T00:00:00Z",
    deprecated_at: lifecycle === "active" ? null : "2026-06-01T00:00:00Z",
    lifecycle,
    line: null,
    max_input_tokens: 200_000,
    max_tokens: MAX_OUTPUT_TOKENS,
    retires_at: lifecycle === "active" ? null : (model.retiresAt ?? null),
    capabilities: null,
  };
}

interface Problem {
  status: number;
  type: string;
  message: string;
}

type Json = Record<string, unknown>;

const invalid = (message: string): Problem => ({ status: 400, type: "invalid_request_error", message });

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isErrorEnvelope(value: unknown): value is Json & { request_id?: string } {
  return isObject(value) && value.type === "error" && isObject(value.error);
}

function blocksOf(content: unknown): Json[] | undefined {
  if (typeof content === "string") return [{ type: "text", text: content }];
  if (Array.isArray(content) && content.every(isObject)) return content;
  return undefined;
}

/**
 * The Messages API's request rules that matter to a tool-using agent, with the API's own
 * wording where it is known: fields, model, content, role turns, tool_use/tool_result pairing,
 * tools and tool_choice, cache breakpoints.
 */
function checkMessagesRequest(body: Json, models: Map<string, FakeModel>): Problem | undefined {
  if (typeof body.model !== "string" || body.model === "") return invalid("model: Field required");
  if (body.max_tokens === undefined) return invalid("max_tokens: Field required");
  if (typeof body.max_tokens !== "number" || !Number.isInteger(body.max_tokens) || body.max_tokens < 1) {
    return invalid("max_tokens: Input should be a valid integer greater than or equal to 1");
  }
  const model = models.get(body.model);
  if (!model || model.lifecycle === "retired") return { status: 404, type: "not_found_error", message: `model: ${body.model}` };
  if (body.max_tokens > MAX_OUTPUT_TOKENS) {
    return invalid(`max_tokens: ${body.max_tokens} > ${MAX_OUTPUT_TOKENS}, which is the maximum allowed number of output tokens for ${model.id}`);
  }
  if (!Array.isArray(body.messages)) return invalid("messages: Field required");
  if (body.messages.length === 0) return invalid("messages: at least one message is required");

  // Consecutive turns of one role are combined into one turn by the API; the tool rules apply
  // to the combined turns, so a text between a tool_use and its results breaks the pairing.
  const turns: { role: string; blocks: Json[]; index: number }[] = [];
  let breakpoints = 0;
  const messages = body.messages as unknown[];
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i];
    if (!isObject(message)) return invalid(`messages.${i}: Input should be a valid dictionary`);
    if (message.role !== "user" && message.role !== "assistant") return invalid(`messages.${i}.role: Input should be 'user' or 'assistant'`);
    const blocks = blocksOf(message.content);
    if (!blocks) return invalid(`messages.${i}.content: Input should be a valid list`);
    const isFinalAssistant = i === messages.length - 1 && message.role === "assistant";
    if (blocks.length === 0 || (typeof message.content === "string" && message.content === "")) {
      if (!isFinalAssistant) return invalid(`messages.${i}: all messages must have non-empty content except for the optional final assistant message`);
    }
    for (let j = 0; j < blocks.length; j++) {
      const block = blocks[j]!;
      if (block.cache_control !== undefined) breakpoints += 1;
      switch (block.type) {
        case "text":
          if (typeof block.text !== "string") return invalid(`messages.${i}.content.${j}.text: Field required`);
          if (block.text.trim() === "" && !isFinalAssistant) return invalid("messages: text content blocks must contain non-whitespace text");
          break;
        case "tool_use":
          if (message.role !== "assistant") return invalid(`messages.${i}.content.${j}: tool_use blocks can only appear in assistant messages`);
          if (typeof block.id !== "string" || typeof block.name !== "string" || !isObject(block.input)) {
            return invalid(`messages.${i}.content.${j}: tool_use blocks need an id, a name and an input object`);
          }
          break;
        case "tool_result":
          if (message.role !== "user") return invalid(`messages.${i}.content.${j}: tool_result blocks can only appear in user messages`);
          if (typeof block.tool_use_id !== "string") return invalid(`messages.${i}.content.${j}.tool_use_id: Field required`);
          break;
        case "thinking":
        case "redacted_thinking":
        case "image":
        case "document":
          break;
        default:
          return invalid(`messages.${i}.content.${j}.type: Input tag '${String(block.type)}' is not a known content block type`);
      }
    }
    if (isFinalAssistant) {
      if (model.prefill === false) {
        return invalid("This model does not support assistant message prefill. The conversation must end with a user message.");
      }
      const last = blocks.at(-1);
      if (last?.type === "text" && typeof last.text === "string" && last.text !== last.text.trimEnd()) {
        return invalid("messages: final assistant content cannot end with trailing whitespace");
      }
    }
    const previous = turns.at(-1);
    if (previous && previous.role === message.role) previous.blocks.push(...blocks);
    else turns.push({ role: message.role, blocks: [...blocks], index: i });
  }

  // Stricter than needed if the API has relaxed it: a conversation that opens with the
  // assistant is refused, as the API long did, so a trimmed history that lost its opening shows.
  if (turns[0]?.role !== "user") return invalid('messages: first message must use the "user" role');
  for (let t = 0; t < turns.length; t++) {
    const turn = turns[t]!;
    if (turn.role === "user") {
      const results = turn.blocks.filter((b) => b.type === "tool_result");
      if (results.length === 0) continue;
      const previous = turns[t - 1];
      const asked = new Set((previous?.blocks ?? []).filter((b) => b.type === "tool_use").map((b) => b.id as string));
      for (const result of results) {
        if (!asked.has(result.tool_use_id as string)) {
          return invalid(
            `messages.${turn.index}.content.${turn.blocks.indexOf(result)}: unexpected \`tool_use_id\` found in \`tool_result\` blocks: ${String(result.tool_use_id)}. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.`,
          );
        }
      }
      const firstOther = turn.blocks.findIndex((b) => b.type !== "tool_result");
      const lastResult = turn.blocks.map((b) => b.type).lastIndexOf("tool_result");
      if (firstOther !== -1 && firstOther < lastResult) {
        return invalid(`messages.${turn.index}: tool_result blocks must come first in the user message's content, before any other content`);
      }
      continue;
    }
    const uses = turn.blocks.filter((b) => b.type === "tool_use").map((b) => b.id as string);
    if (uses.length === 0) continue;
    const next = turns[t + 1];
    if (!next) continue; // A final assistant turn is a prefill; it has no answer yet.
    const answered = new Set(next.blocks.filter((b) => b.type === "tool_result").map((b) => b.tool_use_id as string));
    const missing = uses.filter((id) => !answered.has(id));
    if (missing.length > 0) {
      return invalid(
        `messages.${next.index}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${missing.join(", ")}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`,
      );
    }
  }

  const tools = body.tools;
  const toolNames = new Set<string>();
  if (tools !== undefined) {
    if (!Array.isArray(tools)) return invalid("tools: Input should be a valid list");
    for (let k = 0; k < tools.length; k++) {
      const tool: unknown = tools[k];
      if (!isObject(tool)) return invalid(`tools.${k}: Input should be a valid dictionary`);
      if (typeof tool.name !== "string" || !/^[a-zA-Z0-9_-]{1,128}$/.test(tool.name)) {
        return invalid(`tools.${k}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'`);
      }
      if (toolNames.has(tool.name)) return invalid(`tools: Tool names must be unique. Found duplicate: ${tool.name}`);
      toolNames.add(tool.name);
      if (!isObject(tool.input_schema) || tool.input_schema.type !== "object") {
        return invalid(`tools.${k}.custom.input_schema.type: Input should be 'object'`);
      }
      if (tool.cache_control !== undefined) breakpoints += 1;
    }
  }
  if (Array.isArray(body.system)) {
    for (const block of body.system as unknown[]) {
      if (!isObject(block) || block.type !== "text" || typeof block.text !== "string") return invalid("system: Input should be a valid list of text blocks");
      if (block.text.trim() === "") return invalid("system: text content blocks must contain non-whitespace text");
      if (block.cache_control !== undefined) breakpoints += 1;
    }
  } else if (body.system !== undefined && typeof body.system !== "string") {
    return invalid("system: Input should be a valid string or list");
  }
  if (breakpoints > 4) return invalid(`A maximum of 4 blocks with cache_control may be provided. Found ${breakpoints}.`);

  const choice = body.tool_choice;
  if (choice !== undefined) {
    if (!isObject(choice) || !["auto", "any", "tool", "none"].includes(choice.type as string)) {
      return invalid("tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'");
    }
    if (choice.type === "tool" && !toolNames.has(choice.name as string)) {
      return invalid(`tool_choice: Tool '${String(choice.name)}' not found in tools`);
    }
    if ((choice.type === "tool" || choice.type === "any") && model.forcedToolChoice === false) {
      return invalid(`tool_choice: forced tool use ("${choice.type}") is not supported on ${model.id}. Use "auto" and say in the prompt which tool to use.`);
    }
  }
  return undefined;
}

/** The API's error body: `{"type":"error","error":{"type":…,"message":…},"request_id":…}`. */
export function errorBody(type: string, message: string, requestId = "req_fake_error"): Record<string, unknown> {
  return { type: "error", error: { type, message }, request_id: requestId };
}

let messageCounter = 0;

/** A Messages API response with the given content blocks and stop reason. */
export function messageBody(content: unknown[], stopReason: string, model = "claude-test"): unknown {
  messageCounter += 1;
  return {
    id: `msg_fake${messageCounter}`,
    type: "message",
    role: "assistant",
    model,
    content,
    stop_reason: stopReason,
    stop_sequence: null,
    usage: { input_tokens: 100, output_tokens: 20, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
  };
}

/** A reply that ends the turn with text. */
export function textReply(text: string): FakeAnthropicResponse {
  return { body: messageBody([{ type: "text", text }], "end_turn") };
}

/** A reply that ends the turn with no content at all, as the API sometimes answers after tool results. */
export function emptyEndTurnReply(): FakeAnthropicResponse {
  return { body: messageBody([], "end_turn") };
}

/** A reply asking for tool calls (optionally after some text). */
export function toolUseReply(calls: { id: string; name: string; input: unknown }[], text?: string): FakeAnthropicResponse {
  const blocks: unknown[] = text ? [{ type: "text", text }] : [];
  for (const call of calls) blocks.push({ type: "tool_use", id: call.id, name: call.name, input: call.input });
  return { body: messageBody(blocks, "tool_use") };
}
