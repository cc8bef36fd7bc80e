import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, expect, it } from "vitest";

/*
 * `npm run demo` as a person runs it: a server child process on the embedded defaults, two
 * participants, and a summary. The spoken variant streams the synthesized WAV fixtures through
 * AudioStream into the server's PocketSphinx engine.
 */

async function demo(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "clients/cli/demo.ts", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, stdout, stderr };
}

describe("npm run demo", () => {
  it("talks through the spoken dialogue (--audio), agrees, signs, pays and shows the balances", async () => {
    const run = await demo(["--audio", "--timeout", "90"]);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
    const out = run.stdout;
    // PocketSphinx heard the keyword in the homeowner's WAV.
    expect(out).toMatch(/trigger \(keyword\) by Alex Morgan \(homeowner\): "[^"]*handshake[^"]*"/);
    expect(out).toContain("Deal complete.");
    expect(out).toMatch(/sha256: {2}[0-9a-f]{64}/);
    expect(out).toContain("£120.00 Alex Morgan (homeowner) → Sam Price (plumber): succeeded");
    expect(out).toContain("Sam Price (plumber): available £0.00, held £0.00, received £120.00");
    expect(out).toContain("Alex Morgan (homeowner): available -£120.00, held £0.00, received £0.00");
    expect(out.match(/signed [0-9a-f]{16}…/g)).toHaveLength(2);
  }, 120_000);
});
