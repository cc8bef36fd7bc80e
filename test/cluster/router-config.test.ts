import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import { renderRouterConfig, routerPem } from "../../scripts/cluster-router.js";
import { tempDirPerTest } from "../support/temp-dir.js";
import { makeCertificate } from "../support/tls.js";

const run = promisify(execFile);
const dir = tempDirPerTest();

it("renders a configuration HAProxy accepts (`haproxy -c`), with TLS and names that resolve", async () => {
  const cert = await makeCertificate();
  try {
    const pem = path.join(dir(), "router.pem");
    await writeFile(pem, routerPem(cert.certPem.toString(), await readFile(cert.keyFile, "utf8")));
    const text = renderRouterConfig({
      bindHost: "",
      bindPort: 8443,
      tlsPemFile: pem,
      nodes: [
        { id: "web1", host: "127.0.0.1", port: 8081 },
        { id: "web2", host: "localhost", port: 8082 },
        { id: "web3", host: "::1", port: 8083 },
      ],
      maxConnectionsPerAddress: 500,
    });
    expect(text).toContain(`bind :8443 ssl crt ${pem} alpn h2,http/1.1`);
    expect(text).toContain("server web3 [::1]:8083");
    expect(text).toContain("sc0_conn_cur gt 500");
    expect(text).not.toMatch(/\{\{/);
    const cfg = path.join(dir(), "haproxy.cfg");
    await writeFile(cfg, text);
    const checked = await run("haproxy", ["-c", "-f", cfg]);
    expect(checked.stdout).toContain("Configuration file is valid");
  } finally {
    await cert.remove();
  }
});

it("refuses node lists HAProxy would misread", () => {
  const base = { bindHost: "127.0.0.1", bindPort: 8080 };
  expect(() => renderRouterConfig({ ...base, nodes: [] })).toThrow(/at least one node/);
  expect(() => renderRouterConfig({ ...base, nodes: [{ id: "a b", host: "h", port: 1 }] })).toThrow(/node id "a b"/);
  expect(() => renderRouterConfig({ ...base, nodes: [{ id: "a", host: "h", port: 1 }, { id: "a", host: "h", port: 2 }] })).toThrow(/listed twice/);
  expect(() => renderRouterConfig({ ...base, nodes: [{ id: "a", host: "h", port: 70_000 }] })).toThrow(/out of range/);
  expect(() => renderRouterConfig({ ...base, nodes: [{ id: "a", host: "h", port: 1 }], maxConnectionsPerAddress: 0 })).toThrow(/positive integer/);
});
