import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

/*
 * Bundles the server into dist/server/main.mjs for `npm start` and the bench; packages stay in
 * node_modules. The running server does not go through tsx: its loader thread and esbuild's
 * keepNames (a defineProperty on every closure created) cost ~45 MB of idle RSS, measured with
 * `npm run bench` (150 MB idle under tsx, 102 MB bundled).
 * Run: node --import tsx scripts/build-server.ts
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Where the bundle goes. */
export const SERVER_BUNDLE = path.join(ROOT, "dist", "server", "main.mjs");

/** Builds the bundle (to `outfile`, default SERVER_BUNDLE: tests build their own copy elsewhere); resolves with its path. */
export async function buildServer(outfile = SERVER_BUNDLE): Promise<string> {
  await build({
    entryPoints: [path.join(ROOT, "src", "main.ts")],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: ["node20"],
    packages: "external",
    sourcemap: true,
    logLevel: "warning",
    legalComments: "none",
  });
  return outfile;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.stdout.write(`built ${path.relative(process.cwd(), await buildServer())}\n`);
}
