import { textReply, toolUseReply, type FakeAnthropicRequest, type FakeAnthropicResponse } from "../../src/agents/claude/testing/fake-anthropic.js";

/**
 * A stand-in for Claude, for the local Messages API fake, that plays both agents of a gutter deal:
 * the agent told a deal was triggered proposes £450 for the gutter repair on its person's side
 * (Sam is the provider), the other accepts, and anything else ends the turn quietly.
 */
export function scriptedGutterClaude(request: FakeAnthropicRequest): FakeAnthropicResponse {
  const system = JSON.stringify(request.body.system ?? "");
  const messages = (request.body.messages ?? []) as { role: string; content: string | { type: string; text?: string }[] }[];
  const last = messages[messages.length - 1];
  const blocks = typeof last?.content === "string" ? [{ type: "text", text: last.content }] : (last?.content ?? []);
  const newest = blocks[blocks.length - 1];
  if (!newest || newest.type !== "text") return textReply("Done.");
  const text = newest.text ?? "";
  const id = `toolu_${Math.random().toString(36).slice(2, 12)}`;
  if (text.startsWith("A deal was triggered")) {
    const provider = system.includes("negotiating agent of Sam");
    return toolUseReply([
      {
        id,
        name: "propose",
        input: {
          summary: "Gutter repair",
          currency: "GBP",
          my_role: provider ? "provider" : "client",
          line_items: [{ id: "gutter", description: "Gutter repair", kind: "immediate", amount_minor: 45_000 }],
          reason: "As agreed aloud.",
        },
      },
    ]);
  }
  if (text.includes("agent opened with") || text.includes("agent countered with")) {
    return toolUseReply([{ id, name: "evaluate_proposal", input: { decision: "accept", reason: "As agreed aloud." } }]);
  }
  return textReply("(listening)");
}
