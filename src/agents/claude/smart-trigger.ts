import type Anthropic from "@anthropic-ai/sdk";
import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { TriggerEventSchema, TriggerKind, type TranscriptEntry, type TriggerEvent } from "../../../gen/handshake/v1/transcript_pb.js";
import { createAnthropicClient, describeClaudeError, type AnthropicConnection } from "./anthropic-client.js";
import { toJsonSchema, validateInput, type SchemaNode } from "../tool-schema.js";

/** Options of the Claude smart trigger. */
export interface ClaudeSmartTriggerOptions extends AnthropicConnection {
  model: string;
  /** How often the room consults it over new transcript, milliseconds; default 5,000. */
  intervalMs?: number;
  /** Lowest confidence (0–1) that fires; default 0.7. */
  minConfidence?: number;
  maxTokens?: number;
  log?: Logger;
}

const REPORT_SCHEMA: SchemaNode = {
  type: "object",
  properties: {
    deal_agreed: { type: "boolean", description: "True only if the latest lines show both people agreeing to a deal with a price." },
    speaker: { type: "string", enum: ["A", "B"], description: "Who said the words that sealed it." },
    confidence_percent: { type: "integer", minimum: 0, maximum: 100 },
    quote: { type: "string", maxLength: 500, description: "The words that sealed it, verbatim." },
  },
  required: ["deal_agreed", "speaker", "confidence_percent", "quote"],
};

const SYSTEM =
  "You watch a live conversation between two people, A and B, for the moment they agree a deal: " +
  "a service or goods for a price. Report with the report_deal tool. Only the latest lines count; " +
  "asking about a price, haggling or a vague maybe is not agreement. Say deal_agreed true only when " +
  "a price has been named and both have said yes to it. Always answer by calling report_deal once, with no other text.";

/**
 * A smart trigger detector backed by Claude (structurally a `SmartTriggerDetector` from
 * src/trigger; the trigger layer may import agents, not the other way round). The room consults
 * it at most every `intervalMs` over new transcript. Failures are logged and count as "no deal";
 * a fatal failure (key, access, unknown model) stops further calls.
 */
export function createClaudeSmartTrigger(options: ClaudeSmartTriggerOptions): {
  readonly intervalMs: number;
  consider(recent: TranscriptEntry[]): Promise<TriggerEvent | undefined>;
} {
  const client = createAnthropicClient(options);
  const minConfidence = options.minConfidence ?? 0.7;
  let disabled = false;
  return {
    intervalMs: options.intervalMs ?? 5_000,
    async consider(recent) {
      const finals = recent.filter((e) => e.isFinal && e.text.trim() !== "");
      if (disabled || finals.length === 0) return undefined;
      const labels = new Map<string, "A" | "B">();
      for (const e of finals) {
        if (!labels.has(e.speakerUserId) && labels.size < 2) labels.set(e.speakerUserId, labels.size === 0 ? "A" : "B");
      }
      const lines = finals.filter((e) => labels.has(e.speakerUserId)).map((e) => `${labels.get(e.speakerUserId)}: ${e.text.trim()}`);
      let response: Anthropic.Messages.Message;
      try {
        response = await client.messages.create({
          model: options.model,
          // Room for adaptive thinking (on by default on current models) before the report.
          max_tokens: options.maxTokens ?? 2_048,
          system: SYSTEM,
          tools: [{ name: "report_deal", description: "Report whether a deal was just agreed.", input_schema: toJsonSchema(REPORT_SCHEMA) as Anthropic.Messages.Tool.InputSchema }],
          // Not forced ({type:"tool"}): current models (Sonnet 5.5, Opus 5.5) answer a forced
          // tool choice with 400, so the system prompt asks for the tool instead.
          tool_choice: { type: "auto", disable_parallel_tool_use: true },
          messages: [{ role: "user", content: `The conversation, oldest first:\n${lines.join("\n")}` }],
        });
      } catch (err) {
        const failure = describeClaudeError(err, options.model);
        if (failure.fatal) {
          disabled = true;
          options.log?.error({ status: failure.status, requestId: failure.requestId, model: options.model }, "smart trigger disabled: claude refused it for good");
        } else {
          options.log?.warn({ status: failure.status }, "smart trigger check failed");
        }
        return undefined;
      }
      const call = response.content.find((b): b is Anthropic.Messages.ToolUseBlock => b.type === "tool_use" && b.name === "report_deal");
      if (!call || validateInput(REPORT_SCHEMA, call.input).length > 0) {
        options.log?.warn({ stopReason: response.stop_reason }, "smart trigger got no usable report");
        return undefined;
      }
      const report = call.input as { deal_agreed: boolean; speaker: "A" | "B"; confidence_percent: number; quote: string };
      const confidence = report.confidence_percent / 100;
      if (!report.deal_agreed || confidence < minConfidence) return undefined;
      const speaker = [...labels].find(([, label]) => label === report.speaker)?.[0];
      if (!speaker) return undefined;
      return create(TriggerEventSchema, {
        kind: TriggerKind.SMART,
        speakerUserId: speaker,
        matchedText: report.quote || finals[finals.length - 1]!.text,
        confidence,
      });
    },
  };
}
