import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local stand-in for the Anthropic Messages API (POST /v1/messages) on 127.0.0.1, port 0.
 * It answers from a script of replies (JSON bodies, statuses, headers as the real API sends
 * them) and records every request body exactly as the SDK sent it. For tests only.
 */

/** One request as received. */
export interface FakeAnthropicRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body. */
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

/** A running fake. */
export interface FakeAnthropic {
  /** Base URL to give the SDK (`baseURL`). */
  url: string;
  requests: FakeAnthropicRequest[];
  /** Adds replies, used in order; when none is left the fake answers 500 api_error. */
  reply(...replies: FakeAnthropicReply[]): void;
  /** Resolves once `count` requests in total have arrived. */
  waitForRequests(count: number): Promise<FakeAnthropicRequest[]>;
  close(): Promise<void>;
}

/** Starts the fake. Requests with a key other than `validKey` get the real 401 body. */
export async function startFakeAnthropic(options: { validKey?: string } = {}): Promise<FakeAnthropic> {
  const validKey = options.validKey ?? "sk-ant-test";
  const requests: FakeAnthropicRequest[] = [];
  const script: FakeAnthropicReply[] = [];
  const waiters: { count: number; resolve: (r: FakeAnthropicRequest[]) => void }[] = [];
  let counter = 0;

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      counter += 1;
      const requestId = `req_fake${counter}`;
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>;
      } catch {
        send(400, errorBody("invalid_request_error", "The request body is not valid JSON."), {});
        return;
      }
      const request: FakeAnthropicRequest = { method: req.method ?? "", path: req.url ?? "", headers: req.headers, body };
      requests.push(request);
      for (const w of [...waiters]) {
        if (requests.length >= w.count) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(requests.slice());
        }
      }
      const key = req.headers["x-api-key"] ?? (req.headers.authorization ?? "").replace(/^Bearer\s+/i, "");
      if (req.method !== "POST" || req.url?.split("?")[0] !== "/v1/messages") {
        send(404, errorBody("not_found_error", `No route for ${req.method} ${req.url}`), {});
        return;
      }
      if (key !== validKey) {
        send(401, errorBody("authentication_error", "invalid x-api-key"), {});
        return;
      }
      const next = script.shift();
      if (!next) {
        send(500, errorBody("api_error", "No scripted reply left in the fake."), {});
        return;
      }
      const reply = typeof next === "function" ? next(request) : next;
      send(reply.status ?? 200, reply.body, reply.headers ?? {});

      function send(status: number, payload: unknown, headers: Record<string, string>): void {
        res.writeHead(status, { "content-type": "application/json", "request-id": requestId, ...headers });
        res.end(JSON.stringify(payload));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
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

/** The API's error body. */
export function errorBody(type: string, message: string): unknown {
  return { type: "error", error: { type, message }, request_id: "req_fake_error" };
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

/** A reply asking for tool calls (optionally after some text). */
export function toolUseReply(calls: { id: string; name: string; input: unknown }[], text?: string): FakeAnthropicResponse {
  const blocks: unknown[] = text ? [{ type: "text", text }] : [];
  for (const call of calls) blocks.push({ type: "tool_use", id: call.id, name: call.name, input: call.input });
  return { body: messageBody(blocks, "tool_use") };
}
