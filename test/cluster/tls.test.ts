import https from "node:https";
import type { ConnectionOptions, TLSSocket } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.js";
import { grpcJsRoomClient, type GrpcJsPanelAnswer } from "../support/grpc-js.js";
import { ROOM_HEADER } from "../support/people.js";
import { startRouter, type Router } from "../support/router.js";
import { browserJoinAndRead, launchTrustingChromium, makeCertificate, type TestCertificate } from "../support/tls.js";

let cert: TestCertificate;
let tlsNode: TestApp;
let clearNode: TestApp;
let router: Router;
let browser: Browser;

beforeAll(async () => {
  cert = await makeCertificate();
  tlsNode = await startTestApp({ NODE_ID: "tls-node", TLS_CERT_FILE: cert.certFile, TLS_KEY_FILE: cert.keyFile });
  // Behind the router the node speaks clear text: TLS ends at the router.
  clearNode = await startTestApp({ NODE_ID: "behind-router" });
  router = await startRouter({ nodes: [{ id: "behind-router", port: clearNode.port }], tls: { certFile: cert.certFile, keyFile: cert.keyFile } });
  browser = await launchTrustingChromium(cert);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await router?.stop();
  await Promise.all([tlsNode?.close(), clearNode?.close()]);
  await cert?.remove();
});

/** GET `path` over HTTPS/1.1 trusting only the test certificate; resolves with the status, the ALPN protocol and the body. */
function getHttp1(port: number, path: string): Promise<{ status: number; alpn: string | false | null; body: string }> {
  return new Promise((resolve, reject) => {
    const options: https.RequestOptions & ConnectionOptions = { host: "localhost", port, path, ca: cert.certPem, ALPNProtocols: ["http/1.1"], agent: false };
    const req = https.get(options, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (text: string) => (body += text));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, alpn: (res.socket as TLSSocket).alpnProtocol, body }));
    });
    req.on("error", reject);
  });
}

/** A grpc-js join and a PanelStream's first event over TLS, trusting `rootCert`. */
async function grpcJsOverTls(port: number, roomId: string, rootCert: Buffer | null): Promise<{ seqs: number[]; cases: string[] }> {
  const client = grpcJsRoomClient(`localhost:${port}`, grpc.credentials.createSsl(rootCert));
  try {
    const room = { [ROOM_HEADER]: roomId };
    const joined = await client.joinRoom(roomId, "Ada", room);
    const panel = client.panelStream(roomId, { ...room, authorization: `Bearer ${joined.session_token}` });
    const first = await new Promise<GrpcJsPanelAnswer>((resolve, reject) => {
      panel.once("data", resolve);
      panel.once("error", reject);
    });
    panel.cancel();
    return { seqs: [Number(first.event.seq)], cases: [first.event.event] };
  } finally {
    client.close();
  }
}

describe.each([
  { name: "a single node serving TLS itself", port: () => tlsNode.port },
  { name: "the router terminating TLS", port: () => router.port },
])("$name", ({ name, port }) => {
  const roomId = name.startsWith("a single") ? "tls-node" : "tls-router";

  it("serves grpc-js with the certificate as its root (ALPN h2)", async () => {
    expect(await grpcJsOverTls(port(), `${roomId}-grpc`, cert.certPem)).toEqual({ seqs: [1], cases: ["room_status"] });
  });

  it("is refused by a grpc-js client that does not trust the certificate", async () => {
    // The system's roots do not include a throwaway certificate: the handshake fails, no call is made.
    await expect(grpcJsOverTls(port(), `${roomId}-untrusted`, null)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it("serves HTTPS over HTTP/1.1 to a client that offers only http/1.1", async () => {
    const ready = await getHttp1(port(), "/readyz");
    expect(ready).toMatchObject({ status: 200, alpn: "http/1.1" });
    expect(JSON.parse(ready.body)).toMatchObject({ status: "ready" });
  });

  it("serves Connect-Web in Chromium over https, the certificate trusted by its key", async () => {
    const result = await browserJoinAndRead(browser, `https://localhost:${port()}`, `${roomId}-web`, { [ROOM_HEADER]: `${roomId}-web` });
    expect(result.userId).toMatch(/^usr_/);
    expect(result).toMatchObject({ seqs: [1], cases: ["roomStatus"] });
  });
});

it("Chromium trusts only that key: a node with another certificate is refused", async () => {
  const other = await makeCertificate();
  const stranger = await startTestApp({ TLS_CERT_FILE: other.certFile, TLS_KEY_FILE: other.keyFile });
  try {
    await expect(browserJoinAndRead(browser, `https://localhost:${stranger.port}`, "tls-stranger")).rejects.toThrow(/ERR_CERT_AUTHORITY_INVALID/);
  } finally {
    await stranger.close();
    await other.remove();
  }
});
