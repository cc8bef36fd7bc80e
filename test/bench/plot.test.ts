import { describe, expect, it } from "vitest";
import { capacitySvg } from "../../bench/plot.js";
import { spread } from "../../bench/stats.js";

describe("capacity plot", () => {
  const svg = capacitySvg({
    title: "Audio relay <test> & more",
    p99LimitMs: 20,
    series: [
      { name: "handshake server", color: "#1f6feb", steps: [{ rooms: 100, p99Ms: 12, cpuPct: 30 }, { rooms: 50, p99Ms: 4, cpuPct: 15 }] },
      { name: "http2 floor", color: "#8b949e", steps: [{ rooms: 50, p99Ms: 3, cpuPct: 12 }, { rooms: 100, p99Ms: -1, cpuPct: -1 }] },
      { name: "ws floor", color: "#d29922", steps: [] },
    ],
  });

  it("is one SVG document with the title escaped and a legend entry per series", () => {
    expect(svg.startsWith("<svg xmlns=\"http://www.w3.org/2000/svg\"")).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    expect(svg).toContain("Audio relay &lt;test&gt; &amp; more");
    for (const name of ["handshake server", "http2 floor", "ws floor"]) expect(svg).toContain(`>${name}</text>`);
  });

  it("draws each series on both charts, its steps in room order, leaving out steps that failed to run", () => {
    const lines = [...svg.matchAll(/<polyline points="([^"]+)" fill="none" stroke="([^"]+)"/g)].map((m) => ({ color: m[2], points: m[1]!.split(" ") }));
    // Two charts (p99, CPU) × the two series that have steps; the empty one draws no line.
    expect(lines.map((l) => l.color)).toEqual(["#1f6feb", "#8b949e", "#1f6feb", "#8b949e"]);
    expect(lines.map((l) => l.points.length)).toEqual([2, 1, 2, 1]);
    const xs = lines[0]!.points.map((p) => Number(p.split(",")[0]));
    expect(xs[0]).toBeLessThan(xs[1]!);
    expect(svg.match(/<circle /g)).toHaveLength(6);
  });

  it("draws p99 on a log scale: each tenfold step is the same height", () => {
    const tenfold = capacitySvg({
      title: "t",
      p99LimitMs: 20,
      series: [{ name: "s", color: "#000", steps: [{ rooms: 25, p99Ms: 1, cpuPct: 5 }, { rooms: 50, p99Ms: 10, cpuPct: 10 }, { rooms: 100, p99Ms: 100, cpuPct: 20 }] }],
    });
    const first = /<polyline points="([^"]+)"/.exec(tenfold)![1]!;
    const ys = first.split(" ").map((p) => Number(p.split(",")[1]));
    expect(ys[0]! - ys[1]!).toBeCloseTo(ys[1]! - ys[2]!, 0);
    expect(tenfold).toContain("p99 latency (ms, log scale)");
  });

  it("marks the capacity limit on the p99 chart", () => {
    expect(svg).toContain("capacity limit 20 ms");
    expect(svg.match(/stroke-dasharray/g)).toHaveLength(1);
  });
});

describe("spread over --repeat runs", () => {
  it("gives the median (mean of the middle two for an even count), min and max", () => {
    expect(spread([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3 });
    expect(spread([4, 1, 2, 10])).toEqual({ median: 3, min: 1, max: 10 });
    expect(spread([1.234])).toEqual({ median: 1.23, min: 1.23, max: 1.23 });
    expect(spread([])).toEqual({ median: 0, min: 0, max: 0 });
  });
});
