import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { startApp, type App } from "../../src/compose/app.js";
import { loadConfig } from "../../src/config.js";
import { silentLogger } from "../../src/core/log.js";
import { AgentProfileSchema, PartyRole, type AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";

/** A server on 127.0.0.1:0 with the embedded defaults and its data in a temporary folder. */
export interface TestApp {
  app: App;
  port: number;
  baseUrl: string;
  dataDir: string;
  close(): Promise<void>;
}

/**
 * Every test client comes from 127.0.0.1, so per-address limits would count a whole test file as
 * one client; test/security/dos.test.ts sets its own and attacks from other loopback addresses.
 */
const LOOPBACK_CLIENTS = {
  MAX_CONNECTIONS_PER_ADDRESS: "100000",
  MAX_STREAMS_PER_ADDRESS: "1000000",
  ROOM_CREATES_PER_ADDRESS_PER_MINUTE: "1000000",
  ROOM_CREATES_PER_USER_PER_MINUTE: "1000000",
  // A test that misbehaves on purpose (fuzz) is cut off, but the next test's connection is not refused.
  ABUSE_BAN_MS: "0",
};

/** Starts the real app. `env` overrides settings (names as in .env.example); `log` to read its log lines. */
export async function startTestApp(env: Record<string, string> = {}, dataDir?: string, log: Logger = silentLogger): Promise<TestApp> {
  const dir = dataDir ?? (await mkdtemp(path.join(os.tmpdir(), "handshake-test-")));
  const config = loadConfig({ HOST: "127.0.0.1", PORT: "0", DATA_DIR: dir, LOG_LEVEL: "silent", SPEECH_ENGINE: "device", ...LOOPBACK_CLIENTS, ...env });
  const app = await startApp(config, log);
  return {
    app,
    port: app.port,
    baseUrl: `http://127.0.0.1:${app.port}`,
    dataDir: dir,
    async close() {
      await app.close();
      if (!dataDir) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A profile with sensible defaults for tests. */
export function testProfile(init: MessageInitShape<typeof AgentProfileSchema> = {}): AgentProfile {
  return create(AgentProfileSchema, {
    displayName: "Tester",
    role: PartyRole.CLIENT,
    currency: "GBP",
    maxAutoApproveMinor: 50_000n,
    ...init,
  });
}

/** The `authorization` header that carries `token`, for raw HTTP/2 and gRPC-js calls. */
export function bearerHeaders(token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` };
}

/** Adds `authorization: Bearer <token>` to every call. */
export function bearer(token: string): Interceptor {
  const { authorization } = bearerHeaders(token);
  return (next) => (req) => {
    req.header.set("authorization", authorization);
    return next(req);
  };
}

/** A gRPC (HTTP/2) transport to the test app, optionally authenticated. */
export function grpcTransport(baseUrl: string, token?: string): Transport {
  return createGrpcTransport({ baseUrl, interceptors: token ? [bearer(token)] : [] });
}

/** Typed clients of both services over gRPC. */
export function clients(baseUrl: string, token?: string): {
  room: Client<typeof RoomService>;
  contracts: Client<typeof ContractService>;
} {
  const transport = grpcTransport(baseUrl, token);
  return { room: createClient(RoomService, transport), contracts: createClient(ContractService, transport) };
}
