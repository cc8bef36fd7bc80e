import Anthropic, { BadRequestError, NotFoundError } from "@anthropic-ai/sdk";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startFakeAnthropic, textReply, type FakeAnthropic } from "../../src/agents/claude/testing/fake-anthropic.js";

type MessageParam = Anthropic.Messages.MessageParam;

const KEY = "sk-ant-test";
let fake: FakeAnthropic;
let client: Anthropic;

beforeEach(async () => {
  fake = await startFakeAnthropic({ validKey: KEY });
  // An explicit timeout, as the server sets one: without it the SDK refuses large max_tokens itself.
  client = new Anthropic({ apiKey: KEY, baseURL: fake.url, maxRetries: 0, timeout: 30_000 });
});
afterEach(async () => {
  await fake.close();
});

const tool: Anthropic.Messages.Tool = { name: "propose", description: "Make an offer.", input_schema: { type: "object", properties: {} } };
const toolUse: MessageParam = { role: "assistant", content: [{ type: "tool_use", id: "toolu_1", name: "propose", input: {} }] };
const toolResult: MessageParam = { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "Offer sent." }] };

/** Sends `messages` through the real SDK; resolves with the SDK's error, or undefined when accepted. */
async function send(messages: MessageParam[], extra: Partial<Anthropic.Messages.MessageCreateParamsNonStreaming> = {}): Promise<unknown> {
  fake.reply(textReply("ok"));
  try {
    await client.messages.create({ model: "claude-test", max_tokens: 100, tools: [tool], messages, ...extra });
    return undefined;
  } catch (err) {
    return err;
  }
}

describe("Anthropic fake: the Messages API's rules, through the real SDK", () => {
  it("accepts a well-formed tool round trip, and a text after the tool results in the same user turn", async () => {
    expect(await send([{ role: "user", content: "Hi" }, toolUse, toolResult])).toBeUndefined();
    expect(await send([{ role: "user", content: "Hi" }, toolUse, { role: "user", content: [...(toolResult.content as []), { type: "text", text: "More." }] }])).toBeUndefined();
    // Consecutive user messages are combined by the API, as are the fake's.
    expect(await send([{ role: "user", content: "Hi" }, { role: "user", content: "Again" }])).toBeUndefined();
    expect(fake.rejections).toEqual([]);
  });

  it("refuses an empty assistant turn anywhere but at the end, with the real envelope and request-id", async () => {
    const err = await send([{ role: "user", content: "Hi" }, toolUse, toolResult, { role: "assistant", content: [] }, { role: "user", content: "Next" }]);
    expect(err).toBeInstanceOf(BadRequestError);
    const e = err as BadRequestError;
    expect(e.status).toBe(400);
    expect(e.type).toBe("invalid_request_error");
    expect(e.apiMessage).toBe("messages.3: all messages must have non-empty content except for the optional final assistant message");
    expect(e.requestID).toMatch(/^req_fake\d+$/);
    expect(e.error).toEqual({ type: "error", error: { type: "invalid_request_error", message: e.apiMessage }, request_id: e.requestID });
    // A whitespace-only text block is refused too.
    const blank = await send([{ role: "user", content: "Hi" }, { role: "assistant", content: [{ type: "text", text: "  " }] }, { role: "user", content: "Next" }]);
    expect((blank as BadRequestError).apiMessage).toMatch(/text content blocks must contain non-whitespace text/);
    // As a final assistant turn (prefill) an empty turn is allowed on models that take prefill.
    expect(await send([{ role: "user", content: "Hi" }, { role: "assistant", content: "" }])).toBeUndefined();
  });

  it("refuses a conversation that opens with the assistant", async () => {
    const err = await send([{ role: "assistant", content: "Hello." }, { role: "user", content: "Hi" }]);
    expect((err as BadRequestError).apiMessage).toBe('messages: first message must use the "user" role');
  });

  it("refuses a tool_use without its tool_result in the next message, and a result with no tool_use", async () => {
    const missing = await send([{ role: "user", content: "Hi" }, toolUse, { role: "user", content: "What now?" }]);
    expect((missing as BadRequestError).apiMessage).toMatch(/^messages\.2: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1\./);
    const textInBetween = await send([{ role: "user", content: "Hi" }, toolUse, { role: "user", content: [{ type: "text", text: "wait" }, ...(toolResult.content as [])] }]);
    expect((textInBetween as BadRequestError).apiMessage).toMatch(/tool_result blocks must come first/);
    const orphan = await send([{ role: "user", content: "Hi" }, { role: "assistant", content: "Sure." }, toolResult]);
    expect((orphan as BadRequestError).apiMessage).toMatch(/unexpected `tool_use_id` found in `tool_result` blocks: toolu_1/);
    expect(fake.rejections.map((r) => r.status)).toEqual([400, 400, 400]);
  });

  it("answers an unknown or retired model with 404 not_found_error, on Messages and Models", async () => {
    for (const model of ["claude-nonexistent", "claude-sonnet-4-5"]) {
      const err = await send([{ role: "user", content: "Hi" }], { model });
      expect(err).toBeInstanceOf(NotFoundError);
      expect((err as NotFoundError).type).toBe("not_found_error");
      expect((err as NotFoundError).apiMessage).toBe(`model: ${model}`);
    }
    await expect(client.models.retrieve("claude-nonexistent")).rejects.toBeInstanceOf(NotFoundError);
    // A retired model stays in the catalogue, marked retired.
    expect(await client.models.retrieve("claude-sonnet-4-5")).toMatchObject({ type: "model", id: "claude-sonnet-4-5", lifecycle: "retired" });
    expect(await client.models.retrieve("claude-sonnet-5-5")).toMatchObject({ id: "claude-sonnet-5-5", lifecycle: "active", deprecated_at: null });
    const ids: string[] = [];
    for await (const info of client.models.list()) ids.push(info.id);
    expect(ids).toContain("claude-sonnet-5-5");
  });

  it("refuses what the 5.5 models refuse: a forced tool choice and an assistant prefill", async () => {
    const forced = await send([{ role: "user", content: "Hi" }], { model: "claude-sonnet-5-5", tool_choice: { type: "tool", name: "propose" } });
    expect((forced as BadRequestError).apiMessage).toMatch(/forced tool use/);
    const prefill = await send([{ role: "user", content: "Hi" }, { role: "assistant", content: "The answer is" }], { model: "claude-sonnet-5-5" });
    expect((prefill as BadRequestError).apiMessage).toMatch(/does not support assistant message prefill/);
    expect(await send([{ role: "user", content: "Hi" }], { model: "claude-sonnet-5-5", tool_choice: { type: "auto" } })).toBeUndefined();
  });

  it("refuses a missing max_tokens, more than four cache breakpoints, and a tool_choice naming no tool", async () => {
    fake.reply(textReply("unused"));
    const raw = await fetch(`${fake.url}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json" },
      body: JSON.stringify({ model: "claude-test", messages: [{ role: "user", content: "Hi" }] }),
    });
    expect(raw.status).toBe(400);
    expect(raw.headers.get("request-id")).toMatch(/^req_fake/);
    expect(await raw.json()).toMatchObject({ type: "error", error: { type: "invalid_request_error", message: "max_tokens: Field required" } });
    const eph = { type: "ephemeral" as const };
    const many = await send([{ role: "user", content: [1, 2, 3, 4, 5].map((n) => ({ type: "text" as const, text: `part ${n}`, cache_control: eph })) }]);
    expect((many as BadRequestError).apiMessage).toBe("A maximum of 4 blocks with cache_control may be provided. Found 5.");
    const unknownTool = await send([{ role: "user", content: "Hi" }], { tool_choice: { type: "tool", name: "nope" } });
    expect((unknownTool as BadRequestError).apiMessage).toMatch(/Tool 'nope' not found/);
  });
});

describe("Anthropic fake: limits", () => {
  it("refuses max_tokens above the model's output limit", async () => {
    const err = await send([{ role: "user", content: "Hi" }], { max_tokens: 64_001 });
    expect((err as BadRequestError).apiMessage).toBe("max_tokens: 64001 > 64000, which is the maximum allowed number of output tokens for claude-test");
  });
});
