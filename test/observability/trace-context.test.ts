import { setImmediate as nextTurn } from "node:timers/promises";
import { trace } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTelemetry, type Telemetry } from "../../src/compose/telemetry.js";
import { activeTraceIds, startStage } from "../../src/core/tracing.js";

describe("the context manager src/compose/telemetry.ts registers (on only while a scope is open)", () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;
  beforeAll(() => {
    telemetry = startTelemetry({ env: {}, exporter })!;
  });
  afterAll(() => telemetry.shutdown());

  const finished = async (name: string) => {
    await telemetry.flush();
    const span = exporter.getFinishedSpans().find((s) => s.name === name);
    expect(span, name).toBeDefined();
    return span!;
  };

  it("keeps a scope's span active across its awaits, for the spans and log lines inside it", async () => {
    const outer = startStage("outer");
    let idsInside: ReturnType<typeof activeTraceIds>;
    await outer.run(async () => {
      await nextTurn();
      await Promise.resolve();
      idsInside = activeTraceIds();
      // A nested scope that ends first leaves the outer one active.
      const inner = startStage("inner");
      await inner.run(async () => {
        await nextTurn();
        startStage("leaf").end();
      });
      inner.end();
      await nextTurn();
      startStage("after-inner").end();
    });
    outer.end();
    const outerSpan = await finished("outer");
    expect(idsInside).toEqual({ traceId: outerSpan.spanContext().traceId, spanId: outerSpan.spanContext().spanId });
    const inner = await finished("inner");
    expect(inner.parentSpanContext?.spanId).toBe(outerSpan.spanContext().spanId);
    expect((await finished("leaf")).parentSpanContext?.spanId).toBe(inner.spanContext().spanId);
    expect((await finished("after-inner")).parentSpanContext?.spanId).toBe(outerSpan.spanContext().spanId);
  });

  it("leaves nothing active once every scope is done, whether it returned, resolved or rejected", async () => {
    const span = startStage("scopes");
    span.run(() => undefined);
    await span.run(async () => nextTurn());
    await expect(
      span.run(async () => {
        await nextTurn();
        throw new Error("refused");
      }),
    ).rejects.toThrow("refused");
    expect(() =>
      span.run(() => {
        throw new Error("thrown");
      }),
    ).toThrow("thrown");
    span.end();
    await nextTurn();
    expect(trace.getActiveSpan()).toBeUndefined();
    startStage("outside").end();
    expect((await finished("outside")).parentSpanContext).toBeUndefined();
    // A scope opened after all were closed propagates again.
    const again = startStage("again");
    await again.run(async () => {
      await nextTurn();
      startStage("again-child").end();
    });
    again.end();
    expect((await finished("again-child")).parentSpanContext?.spanId).toBe((await finished("again")).spanContext().spanId);
  });
});
