import type { ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { NotFoundError } from "../core/errors.js";

/** Services whose health is reported; "" is the server as a whole. */
const SERVICES = ["", RoomService.typeName, ContractService.typeName];

/** Registers grpc.health.v1.Health. Everything is SERVING until shutdown starts. */
export function registerHealthRoutes(router: ConnectRouter, shutdown: AbortSignal): void {
  const statusOf = (service: string): ServingStatus => {
    if (!SERVICES.includes(service)) throw new NotFoundError(`unknown service "${service}"`);
    return shutdown.aborted ? ServingStatus.NOT_SERVING : ServingStatus.SERVING;
  };
  router.service(Health, {
    check: (req) => ({ status: statusOf(req.service) }),
    async *watch(req, ctx) {
      let status = statusOf(req.service);
      yield { status };
      if (status === ServingStatus.SERVING) {
        await new Promise<void>((resolve) => {
          if (ctx.signal.aborted || shutdown.aborted) return resolve();
          ctx.signal.addEventListener("abort", () => resolve(), { once: true });
          shutdown.addEventListener("abort", () => resolve(), { once: true });
        });
        status = statusOf(req.service);
        if (!ctx.signal.aborted) yield { status };
      }
    },
    list: () => ({
      statuses: Object.fromEntries(SERVICES.map((s) => [s, { status: statusOf(s) }])),
    }),
  });
}
