import type { Logger } from "pino";
import type { AgentFactory } from "../agents/agent.js";
import { createOfflineAgentFactory } from "../agents/offline/offline-negotiator.js";
import { ConfigError, type Config } from "../config.js";
import type { ContractDrafter } from "../deal/contract-drafter.js";
import { createOfflineSmartTriggerDetector } from "../trigger/offline-smart.js";
import type { SmartTriggerDetector } from "../trigger/trigger-detector.js";
import { noopStageMetrics, type StageMetrics } from "../core/metrics.js";
import { createTimedFetch } from "./external-metrics.js";

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
 * With Claude, the configured model is checked with the Models API first: an unknown or
 * retired ANTHROPIC_MODEL, or a refused key, stops start-up with a ConfigError naming it.
 */
export async function createAgentEngines(config: Config, log: Logger, metrics: StageMetrics = noopStageMetrics): Promise<AgentEngines> {
  if (config.agents.engine === "claude") {
    const [{ createClaudeAgentFactory }, { createClaudeContractDrafter }, { createClaudeSmartTrigger }, { checkClaudeModel }] = await Promise.all([
      import("../agents/claude/claude-agent.js"),
      import("../agents/claude/contract-drafter.js"),
      import("../agents/claude/smart-trigger.js"),
      import("../agents/claude/anthropic-client.js"),
    ]);
    const claude = {
      apiKey: config.agents.anthropicApiKey,
      model: config.agents.model,
      ...(config.agents.anthropicBaseUrl ? { baseURL: config.agents.anthropicBaseUrl } : {}),
      // Every request the SDK makes (retries too) is timed by outcome.
      fetch: createTimedFetch("anthropic", metrics),
    };
    const check = await checkClaudeModel(claude, claude.model);
    if (check.ok) {
      if (check.lifecycle === "deprecated") {
        log.warn({ model: check.id, retiresAt: check.retiresAt }, "ANTHROPIC_MODEL is deprecated; move to a current model before it retires");
      } else {
        log.info({ model: check.id, displayName: check.displayName }, "claude model checked");
      }
    } else if (check.reason === "unreachable") {
      // The API may be down for a moment; each call reports its own failure to the person.
      log.warn({ model: claude.model, reason: check.message }, "could not check ANTHROPIC_MODEL at start");
    } else {
      throw new ConfigError(check.message);
    }
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
