import { execFile } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { build } from "esbuild";
import { chromium, type Browser } from "playwright-core";

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");

/** A throwaway self-signed certificate for localhost and 127.0.0.1, in a temporary folder. */
export interface TestCertificate {
  certFile: string;
  keyFile: string;
  /** The certificate (PEM), for clients that take root certificates (grpc-js `createSsl`). */
  certPem: Buffer;
  /** base64 SHA-256 of the certificate's public key (SPKI), as Chromium's --ignore-certificate-errors-spki-list takes it. */
  spkiSha256: string;
  /** Removes the folder. */
  remove(): Promise<void>;
}

/** Makes a certificate with Debian's `openssl req -x509` (RSA 2048, one day, CN and SAN localhost / 127.0.0.1). */
export async function makeCertificate(): Promise<TestCertificate> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "handshake-tls-"));
  const certFile = path.join(dir, "cert.pem");
  const keyFile = path.join(dir, "key.pem");
  await run("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
    "-subj", "/CN=localhost",
    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-keyout", keyFile, "-out", certFile,
  ]);
  const certPem = await readFile(certFile);
  const spki = new X509Certificate(certPem).publicKey.export({ type: "spki", format: "der" });
  return {
    certFile,
    keyFile,
    certPem,
    spkiSha256: createHash("sha256").update(spki).digest("base64"),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * Headless Chromium that trusts exactly this certificate's key (no blanket ignoreHTTPSErrors: any
 * other certificate, or a name that does not match, is still refused).
 */
export function launchTrustingChromium(cert: TestCertificate): Promise<Browser> {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
      `--ignore-certificate-errors-spki-list=${cert.spkiSha256}`,
    ],
  });
}

/** What the browser's Connect-Web calls saw: the joined user, and the first PanelStream events' seqs and cases. */
export interface BrowserCallResult {
  userId: string;
  seqs: number[];
  cases: string[];
}

let connectBundle: Promise<string> | undefined;

/**
 * A script for a page that defines `window.handshakeJoinAndRead(roomId, headers)`: JoinRoom, then
 * PanelStream until one event, with Connect-Web on the page's own origin (the real transport the
 * browser app uses, bundled by esbuild).
 */
export function connectWebScript(): Promise<string> {
  connectBundle ??= build({
    stdin: {
      contents: `
        import { createClient } from "@connectrpc/connect";
        import { createConnectTransport } from "@connectrpc/connect-web";
        import { RoomService } from "./gen/handshake/v1/room_service_pb.js";
        import { PartyRole } from "./gen/handshake/v1/profile_pb.js";
        window.handshakeJoinAndRead = async (roomId, headers) => {
          const withHeaders = (token) => (next) => (req) => {
            for (const [name, value] of Object.entries(headers)) req.header.set(name, value);
            if (token) req.header.set("authorization", "Bearer " + token);
            return next(req);
          };
          const baseUrl = location.origin;
          const anonymous = createClient(RoomService, createConnectTransport({ baseUrl, interceptors: [withHeaders("")] }));
          const joined = await anonymous.joinRoom({ roomId, profile: { displayName: "Browser", currency: "GBP", role: PartyRole.CLIENT } });
          const room = createClient(RoomService, createConnectTransport({ baseUrl, interceptors: [withHeaders(joined.sessionToken)] }));
          const controller = new AbortController();
          const seqs = [];
          const cases = [];
          try {
            for await (const answer of room.panelStream({ roomId, afterSeq: 0n }, { signal: controller.signal })) {
              seqs.push(Number(answer.event.seq));
              cases.push(answer.event.event.case);
              // Events already on the wire may still be yielded after an abort: stop at the first.
              controller.abort();
              break;
            }
          } catch (err) {
            if (!controller.signal.aborted) throw err;
          }
          return { userId: joined.userId, seqs, cases };
        };
      `,
      resolveDir: ROOT,
      loader: "ts",
    },
    bundle: true,
    write: false,
    platform: "browser",
    format: "iife",
    target: ["es2022"],
    logLevel: "warning",
  }).then((result) => result.outputFiles[0]!.text);
  return connectBundle;
}

/** Opens `origin` (any page the server serves, e.g. /healthz) in `browser` and makes the Connect-Web calls from there. */
export async function browserJoinAndRead(browser: Browser, origin: string, roomId: string, headers: Record<string, string> = {}): Promise<BrowserCallResult> {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const response = await page.goto(`${origin}/healthz`);
    if (!response?.ok()) throw new Error(`${origin}/healthz answered ${response?.status()}`);
    await page.addScriptTag({ content: await connectWebScript() });
    return await page.evaluate(
      ([room, extra]) => (window as unknown as { handshakeJoinAndRead(r: string, h: Record<string, string>): Promise<BrowserCallResult> }).handshakeJoinAndRead(room, extra),
      [roomId, headers] as const,
    );
  } finally {
    await context.close();
  }
}
