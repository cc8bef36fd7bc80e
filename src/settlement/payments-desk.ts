import type { Contract } from "../../gen/handshake/v1/deal_pb.js";
import type { PaymentSetup } from "../../gen/handshake/v1/payments_service_pb.js";
import type { PaymentSetupService } from "../payments/payment-setup.js";
import type { ContractExecutor } from "./execution.js";

/** What PaymentsService's handlers call: the caller's Stripe setup, and retrying a failed payment. */
export interface PaymentsDesk {
  startOnboarding(userId: string): Promise<{ url: string; expiresAtMs: number; setup: PaymentSetup }>;
  getSetup(userId: string, refresh: boolean): Promise<PaymentSetup>;
  startCardSetup(userId: string, hosted: boolean): Promise<{ clientSecret: string; hostedUrl: string; publishableKey: string; stripeJsUrl: string }>;
  /**
   * Tries the failed payment or hold of `lineItemId` again; with `paymentMethodId`, first makes it
   * the caller's default, which only one of their own saved cards can be (else PermissionDenied,
   * and nothing is charged).
   */
  retry(userId: string, contractId: string, lineItemId: string, paymentMethodId: string): Promise<Contract>;
}

/** Creates the desk over the setup service and the contract executor. */
export function createPaymentsDesk(setup: PaymentSetupService, executor: ContractExecutor): PaymentsDesk {
  return {
    startOnboarding: (userId) => setup.startOnboarding(userId),
    getSetup: (userId, refresh) => setup.getSetup(userId, refresh),
    startCardSetup: (userId, hosted) => setup.startCardSetup(userId, hosted),
    async retry(userId, contractId, lineItemId, paymentMethodId) {
      if (paymentMethodId !== "") await setup.useOwnPaymentMethod(userId, paymentMethodId);
      return executor.retry(contractId, lineItemId, userId);
    },
  };
}
