import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { createTokenService } from "../auth/tokens.js";
import type { Config } from "../config.js";
import { createContractDesk, PayeeNotReadyError, type ContractDesk } from "../deal/contracts.js";
import { createTemplateDrafter } from "../deal/contract-template.js";
import { createNegotiationSession } from "../deal/negotiation.js";
import { Redis } from "ioredis";
import { RoomManager, singleNodePlacement, type RoomPlacement } from "../room/room-manager.js";
import { createRedisDirectory } from "../room/placement.js";
import { createRedisBus } from "../events/bus.js";
import type { RoomStages } from "../room/room.js";
import { buildServer, type HandshakeServer } from "../server/server.js";
import type { ServerDeps } from "../server/deps.js";
import { createServerMetrics } from "../server/metrics.js";
import { noopStageMetrics } from "../core/metrics.js";
import { openStore } from "../store/open-store.js";
import { withStoreMetrics } from "./store-metrics.js";
import { createTriggerDetector } from "../trigger/trigger-detector.js";
import { EventLogClosedError, panelError } from "../events/event-log.js";
import { startLogRetention } from "../events/retention.js";
import { recoverSettlement } from "../settlement/recovery.js";
import { createEngines } from "./engines.js";

/** A running Handshake: the server plus what it owns, closed in order by `close`. */
export interface App {
  server: HandshakeServer;
  port: number;
  deps: ServerDeps;
  /** Stops accepting, ends streams with a status, destroys rooms, closes the store. Safe twice. */
  close(): Promise<void>;
}

/** Builds every part from the configuration and starts listening on config.host:config.port. */
export async function startApp(config: Config, log: Logger): Promise<App> {
  await mkdir(path.dirname(config.databasePath), { recursive: true });
  let rooms: RoomManager | undefined;
  // Read at each scrape, so it may be made before the room manager it reads.
  const metrics = config.metrics ? createServerMetrics({ roomsLive: () => rooms?.size ?? 0, panelQueueDepth: () => rooms?.panelQueueDepth() ?? 0 }) : undefined;
  const stageMetrics = metrics?.stages ?? noopStageMetrics;
  // DATABASE_URL picks PostgreSQL (nodes share it); else SQLite in DATA_DIR, locked to this process.
  // Each store call is timed when metrics are on.
  const store = withStoreMetrics(await openStore(config, log), stageMetrics);
  const secret = config.auth.jwtSecret || (await store.getOrCreateSecret("jwt_secret", randomBytes(32).toString("base64url")));
  const tokens = createTokenService({
    secret: new TextEncoder().encode(secret.padEnd(32, "\u0000")),
    sessionTtlMs: config.auth.sessionTtlMs,
    userTtlMs: config.auth.userTtlMs,
    ...(config.auth.oidcIssuer
      ? { oidc: { issuer: config.auth.oidcIssuer, jwksUrl: config.auth.oidcJwksUrl, ...(config.auth.oidcAudience ? { audience: config.auth.oidcAudience } : {}) } }
      : {}),
  });
  const engines = await createEngines(config, store, log, stageMetrics);
  const checkedDesk = createContractDesk({
    store,
    drafter: engines.drafter ?? createTemplateDrafter(),
    log,
    metrics: stageMetrics,
    payeeNotReady: async (payeeUserId) => {
      const readiness = await engines.paymentSetup.payeeReadiness(payeeUserId);
      return readiness.ready ? undefined : readiness.reason;
    },
  });
  // A payee who cannot be paid yet hears why in the room (both people do), before anyone signs.
  const desk: ContractDesk = {
    ...checkedDesk,
    draft: (request) =>
      checkedDesk.draft(request).catch((err: unknown) => {
        if (err instanceof PayeeNotReadyError) rooms?.publish(request.roomId, panelError("contract", "payee_not_ready", err.message, false));
        throw err;
      }),
  };
  const stages: RoomStages = {
    createTrigger: ({ keyword, requireBoth, onTrigger, onRefused }) =>
      createTriggerDetector({
        keyword,
        requireBoth,
        dualWindowMs: config.trigger.dualWindowMs,
        ...(engines.smartTrigger ? { smart: engines.smartTrigger } : {}),
        onTrigger,
        ...(onRefused ? { onRefused } : {}),
        armed: false,
        log,
      }),
    createNegotiation: (options) =>
      createNegotiationSession({
        ...options,
        maxRounds: config.negotiation.maxRounds,
        roundTimeoutMs: config.negotiation.roundTimeoutMs,
        totalTimeoutMs: config.negotiation.totalTimeoutMs,
      }),
    saveNegotiation: (negotiation) => store.saveNegotiation(negotiation),
    agentFactory: engines.agentFactory,
    speechFactory: engines.speechFactory,
    toSpeechPcm: engines.toSpeechPcm,
    desk,
    executeContract: async (contract) => {
      await engines.executor.execute(contract);
      rooms?.contractExecuted(contract.roomId, contract.id);
    },
    bankFor: engines.bankFor,
    metrics: stageMetrics,
  };
  const placement = createPlacement(config.cluster, log);
  rooms = new RoomManager(
    stages,
    store,
    {
      maxRooms: config.rooms.maxRooms,
      leaveGraceMs: config.rooms.leaveGraceMs,
      idleRoomMs: config.rooms.idleRoomMs,
      roomCreatesPerAddressPerMinute: config.connections.roomCreatesPerAddressPerMinute,
      roomCreatesPerUserPerMinute: config.connections.roomCreatesPerUserPerMinute,
      eventLogSize: config.rooms.eventLogSize,
      subscriberQueueSize: config.rooms.subscriberQueueSize,
      triggerKeyword: config.trigger.keyword,
      triggerRequireBoth: config.trigger.requireBoth,
    },
    log,
    Date.now,
    placement,
  );
  const roomManager = rooms;
  engines.onRoomEvent((roomId, init) => roomManager.publish(roomId, init));
  // Ended rooms' logs, transcripts included, are deleted after ROOM_LOG_RETENTION.
  const retention = startLogRetention({ store, retentionMs: config.rooms.logRetentionMs, isLive: (roomId) => roomManager.get(roomId) !== undefined, log });

  const deps: ServerDeps = {
    config,
    log,
    store,
    tokens,
    rooms: roomManager,
    desk,
    milestones: engines.milestones,
    payments: engines.payments,
    audio: engines.audioInput,
    httpEndpoints: engines.httpEndpoints,
    webRoot: engines.webRoot,
    ...(config.cluster.redisUrl ? { readinessProbes: [{ name: "redis", check: () => placement.directory.checkReachable(1_000) }] } : {}),
    ...(metrics ? { metrics } : {}),
  };
  const server = buildServer(deps);
  const port = await server.listen(config.port, config.host);
  // Payments, captures and releases interrupted by a crash are finished with the same idempotency
  // keys, records are squared with the rail and each other, and holds in escrow are watched again.
  void recoverSettlement({ store, executor: engines.executor, milestones: engines.milestones, log }).catch((err: unknown) =>
    log.error({ err }, "recovering payments failed"),
  );

  let closing: Promise<void> | undefined;
  return {
    server,
    port,
    deps,
    close() {
      closing ??= (async () => {
        retention.stop();
        await roomManager.shutdown(new EventLogClosedError("server is shutting down"));
        await placement.directory.close();
        await placement.bus.close();
        await server.close();
        await engines.close();
        await store.close();
      })();
      return closing;
    },
  };
}

/**
 * The room directory and bus: in Redis when REDIS_URL is set (more than one node), else this
 * process's own. The bus listens on a connection of its own, as Redis requires of a subscriber.
 */
function createPlacement(cluster: Config["cluster"], log: Logger): RoomPlacement {
  if (!cluster.redisUrl) return singleNodePlacement(cluster.nodeId);
  const connect = (role: string) => {
    const redis = new Redis(cluster.redisUrl, { maxRetriesPerRequest: 2, connectionName: `handshake-${role}-${cluster.nodeId}` });
    redis.on("error", (err: Error) => log.warn({ err: { message: err.message }, role }, "redis connection error"));
    return redis;
  };
  log.info({ nodeId: cluster.nodeId, roomLeaseMs: cluster.roomLeaseMs }, "cluster mode: rooms placed through Redis");
  const commands = connect("directory");
  return {
    directory: createRedisDirectory({ redis: commands, nodeId: cluster.nodeId, leaseMs: cluster.roomLeaseMs }),
    bus: createRedisBus({ publisher: commands, subscriber: connect("bus"), log }),
    rebuildsOnCall: true,
  };
}
