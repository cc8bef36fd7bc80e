import {
  context,
  isSpanContextValid,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Link,
  type Span,
} from "@opentelemetry/api";

/**
 * Traces through `@opentelemetry/api` only: the composition root (src/compose/telemetry.ts)
 * registers an SDK when OTEL_EXPORTER_OTLP_ENDPOINT is set; otherwise every call here is the
 * API's no-op. Spans are named by stage; attributes are fixed words, counts and codes, never
 * transcript text, tokens, names, amounts' descriptions or card data.
 */

/** What a span may carry: bounded values only (an outcome, a rail, a count, a status code). */
export type SpanAttributes = Record<string, string | number | boolean>;

/** The tracer of the whole process; a proxy, so a provider registered later is still used. */
const tracer = trace.getTracer("handshake");

/** One stage of a deal or one served call, as a span. */
export interface StageSpan {
  /** Adds a point in time to the span (a negotiation round). */
  event(name: string, attributes?: SpanAttributes): void;
  /** Adds attributes (an outcome, a count). */
  set(attributes: SpanAttributes): void;
  /** Ends the span; with `error`, marked as failed with the error's name (never its message). Safe twice. */
  end(error?: unknown): void;
  /** Runs `fn` with this span active: spans started and lines logged inside belong to it. */
  run<T>(fn: () => T): T;
}

/** How a stage span is placed. */
export interface StageOptions {
  /** The span this one is a child of; default the active span (none: a new trace). */
  parent?: StageSpan | undefined;
  /** Starts a new trace whatever is active (a deal's root at its trigger). */
  root?: boolean;
  /** Links the active span (the RPC that fed this stage) instead of parenting under it. */
  linkActive?: boolean;
  /** Further calls that fed this stage, taken earlier with `activeLink` (a stream whose audio the speech engine heard). */
  links?: readonly (TraceLink | undefined)[];
  attributes?: SpanAttributes;
}

class OtelStageSpan implements StageSpan {
  private ended = false;
  readonly context: Context;

  constructor(readonly span: Span, parent: Context) {
    this.context = trace.setSpan(parent, span);
  }

  event(name: string, attributes?: SpanAttributes): void {
    if (!this.ended) this.span.addEvent(name, attributes);
  }

  set(attributes: SpanAttributes): void {
    if (!this.ended) this.span.setAttributes(attributes);
  }

  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    if (error !== undefined) {
      this.span.setAttribute("error.type", error instanceof Error ? error.name : "unknown");
      this.span.setStatus({ code: SpanStatusCode.ERROR });
    }
    this.span.end();
  }

  run<T>(fn: () => T): T {
    return context.with(this.context, fn);
  }
}

/** A span to link to later, kept by whoever outlives the call (opaque outside this module). */
export type TraceLink = Link;

/** The link to the active span, if one is recording (the RPC being served). */
export function activeLink(): TraceLink | undefined {
  const active = trace.getActiveSpan()?.spanContext();
  return active && isSpanContextValid(active) ? { context: active } : undefined;
}

/** The active span's link and the given ones, each span once. */
function linksOf(options: StageOptions): Link[] {
  const links: Link[] = [];
  for (const link of [options.linkActive ? activeLink() : undefined, ...(options.links ?? [])]) {
    if (link && !links.some((l) => l.context.spanId === link.context.spanId)) links.push(link);
  }
  return links;
}

/** Starts a span named after a deal's stage (`deal`, `negotiation`, `contract.signature`, `payment.pay`). */
export function startStage(name: string, options: StageOptions = {}): StageSpan {
  const parent = options.root ? ROOT_CONTEXT : options.parent instanceof OtelStageSpan ? options.parent.context : context.active();
  const span = tracer.startSpan(
    name,
    { kind: SpanKind.INTERNAL, ...(options.attributes ? { attributes: options.attributes } : {}), links: linksOf(options) },
    parent,
  );
  return new OtelStageSpan(span, parent);
}

/** Runs `work` in a stage span that ends with it (failed when it throws). */
export async function traceStage<T>(name: string, options: StageOptions, work: (span: StageSpan) => Promise<T>): Promise<T> {
  const span = startStage(name, options);
  try {
    const result = await span.run(() => work(span));
    span.end();
    return result;
  } catch (err) {
    span.end(err);
    throw err;
  }
}

/**
 * A server span for one call of `method` (`Service/Method`), continuing a W3C `traceparent` the
 * caller sent (when a propagator is registered); `header` reads one request header.
 */
export function startRpcSpan(method: string, path: string, header: (name: string) => string | null | undefined): StageSpan {
  const parent = propagation.extract(ROOT_CONTEXT, header, {
    keys: () => [],
    get: (read, key) => read(key) ?? undefined,
  });
  const slash = method.indexOf("/");
  const span = tracer.startSpan(
    method,
    {
      kind: SpanKind.SERVER,
      attributes: { "rpc.system": path === "connect" ? "connect_rpc" : "grpc", "rpc.service": method.slice(0, slash), "rpc.method": method.slice(slash + 1), "handshake.path": path },
    },
    parent,
  );
  return new OtelStageSpan(span, parent);
}

/** The trace and span ids of the active span, for log lines; undefined when nothing is traced. */
export function activeTraceIds(): { traceId: string; spanId: string } | undefined {
  const active = trace.getActiveSpan()?.spanContext();
  if (!active || !isSpanContextValid(active)) return undefined;
  return { traceId: active.traceId, spanId: active.spanId };
}
