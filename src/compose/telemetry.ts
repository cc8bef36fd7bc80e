import { context, propagation, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";

/**
 * The OpenTelemetry SDK of the process: spans from src/core/tracing.ts batched to an OTLP/HTTP
 * (JSON) collector. Started only when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces-only
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; without it nothing is registered and tracing costs
 * the API's no-op calls only.
 */
export interface Telemetry {
  /** Exports every span ended so far. */
  flush(): Promise<void>;
  /** Exports what is left and unregisters the provider; safe twice. */
  shutdown(): Promise<void>;
}

/** Where spans go: the OTLP endpoint from the standard OTEL_* variables, or `exporter` (tests). */
export interface TelemetryOptions {
  env?: NodeJS.ProcessEnv;
  exporter?: SpanExporter;
}

/** Registers the SDK when configured (see above); undefined when tracing stays off. */
export function startTelemetry(options: TelemetryOptions = {}): Telemetry | undefined {
  const env = options.env ?? process.env;
  // The signal's own endpoint is used as it is; the general one gets /v1/traces (the OTLP spec).
  const url = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || (env.OTEL_EXPORTER_OTLP_ENDPOINT ? `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, "")}/v1/traces` : "");
  if (!options.exporter && !url) return undefined;
  // Headers and timeout come from the same OTEL_* variables, read by the exporter.
  const exporter = options.exporter ?? new OTLPTraceExporter({ url });
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: env.OTEL_SERVICE_NAME || "handshake", [ATTR_SERVICE_VERSION]: "0.1.0" }),
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
  // Also registers the AsyncLocalStorage context manager and the W3C traceparent propagator.
  provider.register();
  let stopped: Promise<void> | undefined;
  return {
    flush: () => provider.forceFlush(),
    shutdown() {
      stopped ??= provider.shutdown().finally(() => {
        trace.disable();
        context.disable();
        propagation.disable();
      });
      return stopped;
    },
  };
}
