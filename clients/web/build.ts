import { copyFile, mkdir, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build, type BuildOptions } from "esbuild";

/*
 * Bundles the browser app with esbuild into clients/web/dist/: app.js (the page), the capture
 * worklet as its own file (worklets load by URL), and the static files from public/.
 * Run: node --import tsx clients/web/build.ts
 */

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Where the bundle goes unless told otherwise: the folder the server serves at "/". */
export const DEFAULT_OUT_DIR = path.join(HERE, "dist");

/** Builds the app into `outDir` (emptied first); resolves with the files written. */
export async function buildWeb(options: { outDir?: string; minify?: boolean } = {}): Promise<string[]> {
  const outDir = options.outDir ?? DEFAULT_OUT_DIR;
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  const common: BuildOptions = {
    bundle: true,
    platform: "browser",
    target: ["es2022"],
    minify: options.minify ?? true,
    sourcemap: true,
    logLevel: "warning",
    legalComments: "none",
  };
  await build({ ...common, entryPoints: [path.join(HERE, "src/main.ts")], format: "esm", outfile: path.join(outDir, "app.js") });
  await build({ ...common, entryPoints: [path.join(HERE, "src/capture-worklet.ts")], format: "iife", outfile: path.join(outDir, "capture-worklet.js") });
  const publicDir = path.join(HERE, "public");
  for (const name of await readdir(publicDir)) await copyFile(path.join(publicDir, name), path.join(outDir, name));
  return (await readdir(outDir)).sort();
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = await buildWeb();
  process.stdout.write(`built ${files.join(", ")} into ${path.relative(process.cwd(), DEFAULT_OUT_DIR) || "."}\n`);
}
