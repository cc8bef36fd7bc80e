import type { ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { NotFoundError } from "../core/errors.js";
import type { Store } from "../store/store.js";

/** Services whose health is reported; "" is the server as a whole. */
const SERVICES = ["", RoomService.typeName, ContractService.typeName];

/** Whether the server can do its work now, and if not, why (one reason per failed check). */
export interface Readiness {
  ready: boolean;
  reasons: string[];
}

/** Asks what readiness depends on, each time it is called (no cache: a probe sees the state now). */
export type ReadinessCheck = () => Promise<Readiness>;

/** Something else readiness depends on (Redis in cluster mode): `check` throws, with the reason, when it is not there. */
export interface ReadinessProbe {
  name: string;
  check(): Promise<void>;
}

/** Readiness of a server: not shutting down, its store able to take a write now, and every probe answering. */
export function createReadinessCheck(store: Pick<Store, "checkWritable">, shutdown: AbortSignal, probes: readonly ReadinessProbe[] = []): ReadinessCheck {
  const reason = (err: unknown) => (err instanceof Error ? err.message : String(err));
  return async () => {
    const reasons: string[] = [];
    if (shutdown.aborted) reasons.push("shutting down");
    else {
      await Promise.all([
        store.checkWritable().catch((err: unknown) => reasons.push(`store not writable: ${reason(err)}`)),
        ...probes.map((probe) => probe.check().catch((err: unknown) => reasons.push(`${probe.name} not reachable: ${reason(err)}`))),
      ]);
    }
    return { ready: reasons.length === 0, reasons };
  };
}

/** How often an open Health/Watch asks readiness again when HEALTH_WATCH_INTERVAL_MS is not given. */
export const DEFAULT_HEALTH_WATCH_INTERVAL_MS = 5_000;

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    if (signal.aborted) return done();
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Registers grpc.health.v1.Health: SERVING while `readiness` says ready, NOT_SERVING when it does
 * not (the store cannot be written) and from shutdown on. Watch sends the status when it opens,
 * then each change it sees asking again every `watchIntervalMs`, and ends after shutdown's.
 */
export function registerHealthRoutes(
  router: ConnectRouter,
  shutdown: AbortSignal,
  readiness: ReadinessCheck,
  watchIntervalMs = DEFAULT_HEALTH_WATCH_INTERVAL_MS,
): void {
  const statusOf = async (service: string): Promise<ServingStatus> => {
    if (!SERVICES.includes(service)) throw new NotFoundError(`unknown service "${service}"`);
    if (shutdown.aborted) return ServingStatus.NOT_SERVING;
    return (await readiness()).ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  };
  router.service(Health, {
    check: async (req) => ({ status: await statusOf(req.service) }),
    async *watch(req, ctx) {
      let status = await statusOf(req.service);
      yield { status };
      const stop = AbortSignal.any([ctx.signal, shutdown]);
      while (!stop.aborted) {
        await pause(watchIntervalMs, stop);
        if (ctx.signal.aborted) return;
        const next = await statusOf(req.service);
        if (next !== status) {
          status = next;
          yield { status };
        }
      }
    },
    list: async () => {
      const status = await statusOf("");
      return { statuses: Object.fromEntries(SERVICES.map((s) => [s, { status }])) };
    },
  });
}
