import { AsyncLocalStorage } from "node:async_hooks";
import { context, propagation, ROOT_CONTEXT, trace, type Context, type ContextManager } from "@opentelemetry/api";
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
  // With the context manager below (not the SDK default) and the W3C traceparent propagator.
  provider.register({ contextManager: new ScopedContextManager() });
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

/**
 * OpenTelemetry's AsyncLocalStorage context manager, switched on only while a scope is open.
 * On Node 20 an enabled AsyncLocalStorage installs async hooks and promise hooks for the whole
 * process, and once the first `context.with` ran it stayed on: every native callback, nextTick and
 * promise of the audio relay paid for it (npm run bench -- --observability --cpu-prof:
 * callbackTrampoline, _propagate, twice the nextTick and GC time). Here the storage is enabled
 * when a `with` starts and disabled when the last open one is done — a synchronous `fn` when it
 * returns, an async one when its promise settles — so calls that open no scope (the fast path's
 * frames, between calls) run without hooks. Work a scope started but did not await loses the
 * context once every scope is done; the stages that need a parent or a link name it explicitly
 * (src/core/tracing.ts).
 */
class ScopedContextManager implements ContextManager {
  private readonly storage = new AsyncLocalStorage<Context>();
  /** Scopes whose `fn` has not returned or whose promise has not settled. */
  private open = 0;
  private readonly closeOne = () => {
    if (--this.open === 0) this.storage.disable();
  };

  active(): Context {
    return this.storage.getStore() ?? ROOT_CONTEXT;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    this.open++;
    let result: ReturnType<F>;
    try {
      result = this.storage.run(ctx, () => fn.apply(thisArg, args));
    } catch (err) {
      this.closeOne();
      throw err;
    }
    if (isThenable(result)) {
      // Closes the scope whichever way it settles; the caller still gets the rejection from `result` itself.
      void result.then(this.closeOne, this.closeOne);
    } else this.closeOne();
    return result;
  }

  /** Functions run in `ctx` wherever they are called; other targets (emitters) are returned as they are. */
  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== "function") return target;
    const fn = target as (...args: unknown[]) => unknown;
    const manager = this;
    return function (this: unknown, ...args: unknown[]) {
      return manager.with(ctx, () => fn.apply(this, args));
    } as T;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    this.storage.disable();
    this.open = 0;
    return this;
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}
