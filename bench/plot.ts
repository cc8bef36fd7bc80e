/**
 * The capacity picture of `npm run bench -- --capacity --plot FILE`: p99 latency and CPU against
 * rooms, one line per service, as a self-contained SVG (written by hand: no plotting dependency).
 */

/** One capacity step of one service, as bench/run.ts records it (-1 marks a step that failed to run). */
export interface PlotStep {
  rooms: number;
  p99Ms: number;
  cpuPct: number;
}

/** One line on both charts. */
export interface PlotSeries {
  name: string;
  /** Any SVG colour. */
  color: string;
  steps: readonly PlotStep[];
}

const WIDTH = 900;
const CHART_HEIGHT = 300;
const MARGIN = { left: 64, right: 24, top: 48, bottom: 44 };
const GAP = 56;

/** The SVG text of two stacked charts (p99 on top, CPU below), sharing the rooms axis. */
export function capacitySvg(input: { title: string; series: readonly PlotSeries[]; p99LimitMs: number }): string {
  const series = input.series.map((s) => ({ ...s, steps: s.steps.filter((p) => p.p99Ms >= 0).sort((a, b) => a.rooms - b.rooms) }));
  const all = series.flatMap((s) => s.steps);
  const maxRooms = niceCeiling(Math.max(1, ...all.map((p) => p.rooms)));
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const height = MARGIN.top + 2 * CHART_HEIGHT + GAP + MARGIN.bottom + 24;
  const x = (rooms: number) => MARGIN.left + (rooms / maxRooms) * plotWidth;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600">${escape(input.title)}</text>`,
  ];
  // p99 spans milliseconds to seconds once a machine saturates: a log scale keeps both readable.
  const charts = [
    { label: "p99 latency (ms, log scale)", value: (p: PlotStep) => p.p99Ms, limit: input.p99LimitMs, log: true },
    { label: "CPU (% of one core)", value: (p: PlotStep) => p.cpuPct, limit: undefined, log: false },
  ];
  charts.forEach((chart, c) => {
    const top = MARGIN.top + c * (CHART_HEIGHT + GAP);
    const maxValue = niceCeiling(Math.max(1, chart.limit ?? 0, ...all.map(chart.value)));
    const minValue = chart.log ? niceFloor(Math.max(0.01, Math.min(maxValue / 10, ...all.map(chart.value).filter((v) => v > 0)))) : 0;
    const share = (v: number) =>
      chart.log ? (Math.log10(Math.max(minValue, Math.min(v, maxValue))) - Math.log10(minValue)) / (Math.log10(maxValue) - Math.log10(minValue)) : Math.min(v, maxValue) / maxValue;
    const y = (v: number) => top + CHART_HEIGHT - share(v) * CHART_HEIGHT;
    parts.push(`<rect x="${MARGIN.left}" y="${top}" width="${plotWidth}" height="${CHART_HEIGHT}" fill="none" stroke="#d0d7de"/>`);
    for (const tick of chart.log ? logTicks(minValue, maxValue) : ticks(maxValue)) {
      parts.push(
        `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotWidth}" y1="${y(tick)}" y2="${y(tick)}" stroke="#eaeef2"/>`,
        `<text x="${MARGIN.left - 6}" y="${y(tick) + 4}" text-anchor="end" fill="#57606a">${tick}</text>`,
      );
    }
    for (const tick of ticks(maxRooms)) {
      parts.push(`<text x="${x(tick)}" y="${top + CHART_HEIGHT + 16}" text-anchor="middle" fill="#57606a">${tick}</text>`);
    }
    parts.push(
      `<text x="16" y="${top + CHART_HEIGHT / 2}" transform="rotate(-90 16 ${top + CHART_HEIGHT / 2})" text-anchor="middle">${chart.label}</text>`,
      `<text x="${MARGIN.left + plotWidth / 2}" y="${top + CHART_HEIGHT + 34}" text-anchor="middle">rooms (2 participants each)</text>`,
    );
    if (chart.limit !== undefined) {
      parts.push(
        `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotWidth}" y1="${y(chart.limit)}" y2="${y(chart.limit)}" stroke="#cf222e" stroke-dasharray="6 4"/>`,
        `<text x="${MARGIN.left + plotWidth - 4}" y="${y(chart.limit) - 5}" text-anchor="end" fill="#cf222e">capacity limit ${chart.limit} ms</text>`,
      );
    }
    for (const s of series) {
      if (s.steps.length === 0) continue;
      const points = s.steps.map((p) => `${x(p.rooms).toFixed(1)},${y(chart.value(p)).toFixed(1)}`);
      parts.push(`<polyline points="${points.join(" ")}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
      for (const p of s.steps) parts.push(`<circle cx="${x(p.rooms).toFixed(1)}" cy="${y(chart.value(p)).toFixed(1)}" r="3" fill="${s.color}"/>`);
    }
  });
  const legendY = height - 14;
  series.forEach((s, i) => {
    const lx = MARGIN.left + i * 200;
    parts.push(
      `<line x1="${lx}" x2="${lx + 24}" y1="${legendY - 4}" y2="${legendY - 4}" stroke="${s.color}" stroke-width="3"/>`,
      `<text x="${lx + 30}" y="${legendY}">${escape(s.name)}</text>`,
    );
  });
  parts.push("</svg>", "");
  return parts.join("\n");
}

/** The smallest 1, 2 or 5 × 10^k at or above `n`. */
function niceCeiling(n: number): number {
  const power = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 5, 10]) if (m * power >= n) return m * power;
  return 10 * power;
}

/** The largest 1, 2 or 5 × 10^k at or below `n`. */
function niceFloor(n: number): number {
  const power = 10 ** Math.floor(Math.log10(n));
  for (const m of [5, 2, 1]) if (m * power <= n) return m * power;
  return power;
}

/** 1, 2, 5 × 10^k ticks from `min` to `max`. */
function logTicks(min: number, max: number): number[] {
  const out: number[] = [];
  for (let power = 10 ** Math.floor(Math.log10(min)); power <= max; power *= 10) {
    for (const m of [1, 2, 5]) {
      const v = Math.round(m * power * 1000) / 1000;
      if (v >= min && v <= max) out.push(v);
    }
  }
  return out;
}

/** Five evenly spaced ticks from 0 to `max`. */
function ticks(max: number): number[] {
  return Array.from({ length: 6 }, (_, i) => Math.round(((max * i) / 5) * 100) / 100);
}

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
