import type { Logger } from "pino";
import type { AgentFactory } from "../agents/agent.js";
import { createOfflineAgentFactory } from "../agents/offline/offline-negotiator.js";
import type { Config } from "../config.js";
import type { ContractDrafter } from "../deal/contract-drafter.js";
import { createOfflineSmartTriggerDetector } from "../trigger/offline-smart.js";
import type { SmartTriggerDetector } from "../trigger/trigger-detector.js";

/** The agent engine, smart trigger and contract drafter picked by configuration. */
export interface AgentEngines {
  agentFactory: AgentFactory;
  smartTrigger: SmartTriggerDetector | undefined;
  /** Undefined means the template drafter. */
  drafter: ContractDrafter | undefined;
}

/**
 * Claude when AGENT_ENGINE=claude (the default with ANTHROPIC_API_KEY), else the offline
 * negotiator. Claude's modules load only when used, so an offline run never loads the SDK.
 */
export async function createAgentEngines(config: Config, log: Logger): Promise<AgentEngines> {
  if (config.agents.engine === "claude") {
    const [{ createClaudeAgentFactory }, { createClaudeContractDrafter }, { createClaudeSmartTrigger }] = await Promise.all([
      import("../agents/claude/claude-agent.js"),
      import("../agents/claude/contract-drafter.js"),
      import("../agents/claude/smart-trigger.js"),
    ]);
    const claude = {
      apiKey: config.agents.anthropicApiKey,
      model: config.agents.model,
      ...(config.agents.anthropicBaseUrl ? { baseURL: config.agents.anthropicBaseUrl } : {}),
    };
    return {
      agentFactory: createClaudeAgentFactory(claude),
      smartTrigger: config.trigger.smart ? createClaudeSmartTrigger({ ...claude, log }) : undefined,
      drafter: createClaudeContractDrafter(claude),
    };
  }
  return {
    agentFactory: createOfflineAgentFactory(),
    smartTrigger: config.trigger.smart ? createOfflineSmartTriggerDetector() : undefined,
    drafter: undefined,
  };
}
