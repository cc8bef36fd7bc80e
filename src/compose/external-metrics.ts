import type { ExternalCallOutcome, StageMetrics } from "../core/metrics.js";

/**
 * A fetch for an outside service's client (the Anthropic SDK, Monzo) that times each request by
 * outcome into `metrics.externalCall`; without that hook it is `base` itself. The outcome is
 * read from the status only, never from a body.
 */
export function createTimedFetch(service: string, metrics: StageMetrics, base: typeof fetch = fetch): typeof fetch {
  const record = metrics.externalCall?.bind(metrics);
  if (!record) return base;
  return async (input, init) => {
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    let response: Response;
    try {
      response = await base(input, init);
    } catch (err) {
      record(service, "network", seconds());
      throw err;
    }
    record(service, outcomeOf(response.status), seconds());
    return response;
  };
}

function outcomeOf(status: number): ExternalCallOutcome {
  if (status === 429) return "http_429";
  if (status >= 500) return "http_5xx";
  if (status >= 400) return "http_4xx";
  return "ok";
}
