/*
 * The timeline's icons as inline SVG line drawings: emoji depend on the device's fonts (headless
 * and many Linux browsers show empty boxes), SVG draws the same everywhere and follows `color`.
 */

const CIRCLE = "M12 2a10 10 0 1 0 0 20a10 10 0 1 0 0-20";

/** Path data of each icon, on a 24 × 24 grid. */
const PATHS = {
  spark: "M13 2 3 14h9l-1 8 10-12h-9l1-8z",
  chat: "M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z",
  swap: "M4 7h16l-4-4M20 17H4l4 4",
  check: "M20 6 9 17l-5-5",
  cross: "M18 6 6 18M6 6l12 12",
  question: `${CIRCLE}M9.1 9a3 3 0 0 1 5.8 1c0 2-3 3-3 3M12 17h.01`,
  document: "M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8zM14 2v6h6M8 13h8M8 17h5",
  pen: "M12 20h9M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z",
  card: "M2 5h20v14H2zM2 10h20M6 15h4",
  lock: "M5 11h14v10H5zM8 11V7a4 4 0 0 1 8 0v4",
  unlock: "M5 11h14v10H5zM8 11V7a4 4 0 0 1 7.8-1.2",
  undo: "M3 7v6h6M3 13a9 9 0 1 0 3-7.7L3 7",
  flag: "M4 15s1-1 4-1 5 2 8 2 4-1 4-1V3s-1 1-4 1-5-2-8-2-4 1-4 1zM4 22v-7",
  alert: "M12 9v4M12 17h.01M10.3 3.9 1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0z",
  clock: `${CIRCLE}M12 6v6l4 2`,
  done: `${CIRCLE}M8 12l3 3 5-6`,
} as const;

/** The names of the icons there are. */
export type IconName = keyof typeof PATHS;

/** An icon as an `<svg>`, hidden from screen readers: the text beside it says the same. */
export function icon(name: IconName): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", PATHS[name]);
  svg.append(path);
  return svg;
}
