import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import type { Agent, AgentFactory } from "../../src/agents/agent.js";
import { createAgentTools, type ToolResult } from "../../src/agents/tools.js";

/** What a scripted agent offers when its person triggers a deal. */
export interface ScriptedOffer {
  description: string;
  amountMinor: number;
  currency: string;
}

/**
 * An agent engine for room tests that acts only through the real tools: the initiator proposes
 * `offer()` on its profile's side (provider unless its role is client), the other side accepts
 * whatever is on the table. Every tool result is
 * recorded per user, so tests can see what the tools answered (approval asked, refused, …).
 */
export function createScriptedAgents(offer: () => ScriptedOffer): { factory: AgentFactory; results: Map<string, ToolResult[]> } {
  const results = new Map<string, ToolResult[]>();
  const factory: AgentFactory = (deps) => {
    const tools = createAgentTools(deps);
    const mine: ToolResult[] = [];
    results.set(deps.userId, mine);
    let stopped = false;
    /** Calls in flight; `stop` waits for them, as the real engines do. */
    const inFlight = new Set<Promise<void>>();
    const call = (name: string, input: unknown) => {
      if (stopped) return;
      const running = tools.call(name, input).then((result) => void mine.push(result));
      inFlight.add(running);
      void running.finally(() => inFlight.delete(running));
    };
    const agent: Agent = {
      pushTranscript() {},
      startNegotiation() {
        const o = offer();
        call("propose", {
          summary: o.description,
          currency: o.currency,
          my_role: deps.profile().role === PartyRole.CLIENT ? "client" : "provider",
          line_items: [{ id: "item-1", description: o.description, kind: "immediate", amount_minor: o.amountMinor }],
          reason: "As we said.",
        });
      },
      onPeerMove() {
        call("evaluate_proposal", { decision: "accept", reason: "As we said." });
      },
      async stop() {
        stopped = true;
        await Promise.all([...inFlight]);
      },
    };
    return agent;
  };
  return { factory, results };
}
