import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { PaymentsService } from "../../gen/handshake/v1/payments_service_pb.js";
import { FailedPreconditionError, InvalidArgumentError } from "../core/errors.js";
import type { CallScopes } from "./call-scope.js";
import type { ServerDeps } from "./deps.js";
import { checkContractId } from "./validate.js";

/** A line item id as drafting makes them; anything else cannot name one. */
function checkLineItemId(id: string): string {
  if (!/^[\x21-\x7e]{1,200}$/.test(id)) throw new InvalidArgumentError("line_item_id must be 1–200 printable ASCII characters");
  return id;
}

/** Empty (the caller's default card) or a Stripe payment method id. */
function checkPaymentMethodId(id: string): string {
  if (id !== "" && !/^pm_[A-Za-z0-9_]{1,200}$/.test(id)) throw new InvalidArgumentError("payment_method_id must be empty or a Stripe payment method id (pm_…)");
  return id;
}

/** Registers PaymentsService: the caller's own Stripe setup, and retrying their failed payments. */
export function registerPaymentRoutes(router: ConnectRouter, deps: ServerDeps, scopes: CallScopes): void {
  const callerOf = (ctx: HandlerContext) => scopes.caller(ctx.values);
  const desk = () => {
    if (!deps.payments) throw new FailedPreconditionError("payments are not set up on this server");
    return deps.payments;
  };
  router.service(PaymentsService, {
    async startPayeeOnboarding(_req, ctx) {
      const { userId } = callerOf(ctx);
      const link = await desk().startOnboarding(userId);
      return { url: link.url, expiresAtMs: BigInt(link.expiresAtMs), setup: link.setup };
    },
    async getPaymentSetup(req, ctx) {
      const { userId } = callerOf(ctx);
      return { setup: await desk().getSetup(userId, req.refresh) };
    },
    async startCardSetup(req, ctx) {
      const { userId } = callerOf(ctx);
      return desk().startCardSetup(userId, req.hosted);
    },
    async retryPayment(req, ctx) {
      const { userId } = callerOf(ctx);
      const contract = await desk().retry(userId, checkContractId(req.contractId), checkLineItemId(req.lineItemId), checkPaymentMethodId(req.paymentMethodId));
      return { contract };
    },
  });
}
