import path from "node:path";
import { existsSync } from "node:fs";
import type { Logger } from "pino";
import type { AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import type { AgentFactory } from "../agents/agent.js";
import { ConfigError, type Config } from "../config.js";
import type { ContractDrafter } from "../deal/contract-drafter.js";
import { createContractExecutor, type ContractExecutor, type ExecutionEvent } from "../settlement/execution.js";
import { createMilestoneService, type MilestoneService } from "../settlement/milestones.js";
import type { PanelEventInit } from "../events/event-log.js";
import type { BankAccount } from "../payments/bank.js";
import { createLedgerRail } from "../payments/ledger-rail.js";
import { createMonzoBank } from "../payments/monzo.js";
import type { PaymentRail } from "../payments/rail.js";
import { noopStageMetrics, type StageMetrics } from "../core/metrics.js";
import { withRailMetrics } from "./rail-metrics.js";
import { createTimedFetch } from "./external-metrics.js";
import { checkStripeKey, createStripeRail, type StripeRailOptions } from "../payments/stripe-rail.js";
import { createStripeWebhookHandler } from "../payments/stripe-webhook.js";
import { createStripeConnect } from "../payments/stripe-connect.js";
import { createPaymentSetupService, type PaymentSetupService } from "../payments/payment-setup.js";
import { createPaymentsDesk, type PaymentsDesk } from "../settlement/payments-desk.js";
import type { SpeechPcmConverter } from "../room/room.js";
import type { AudioInput, RawHttpHandler } from "../server/deps.js";
import type { SpeechEngineFactory } from "../speech/speech-engine.js";
import type { Store } from "../store/store.js";
import type { SmartTriggerDetector } from "../trigger/trigger-detector.js";
import { createAgentEngines } from "./engines-agents.js";
import { createSpeechEngines } from "./engines-speech.js";

/** The engines picked by configuration: the embedded defaults, or remote services when configured. */
export interface Engines {
  agentFactory: AgentFactory;
  smartTrigger: SmartTriggerDetector | undefined;
  /** Undefined means the template drafter. */
  drafter: ContractDrafter | undefined;
  speechFactory: SpeechEngineFactory | undefined;
  toSpeechPcm: SpeechPcmConverter;
  audioInput: AudioInput;
  rail: PaymentRail;
  executor: ContractExecutor;
  milestones: MilestoneService;
  /** People's Stripe setup (onboarding, saved cards); everything refused on the ledger rail. */
  paymentSetup: PaymentSetupService;
  /** PaymentsService's domain: setup plus retrying failed payments. */
  payments: PaymentsDesk;
  bankFor(profile: AgentProfile): BankAccount | undefined;
  httpEndpoints: Map<string, RawHttpHandler>;
  webRoot: string | undefined;
  /** Registers where room events from payments and milestones go. */
  onRoomEvent(listener: (roomId: string, init: PanelEventInit) => void): void;
  close(): Promise<void>;
}

/** Builds the engines for `config`; logs which ones are in use. */
export async function createEngines(config: Config, store: Store, log: Logger, metrics: StageMetrics = noopStageMetrics): Promise<Engines> {
  let publish: (roomId: string, init: PanelEventInit) => void = () => {};
  const onEvent = (event: ExecutionEvent) => publish(event.roomId, toPanelEvent(event));

  const stripeOptions = {
    secretKey: config.payments.stripeSecretKey,
    ...(config.payments.stripeApiBase ? { apiBase: config.payments.stripeApiBase } : {}),
    platformFeeBps: config.payments.platformFeeBps,
    ...(config.payments.stripePlatformCountry ? { platformCountry: config.payments.stripePlatformCountry } : {}),
    log,
  };
  if (config.payments.rail === "stripe") await checkStripeKeyAtStart(stripeOptions, log);
  const rail = withRailMetrics(config.payments.rail === "stripe" ? createStripeRail(stripeOptions) : createLedgerRail(store), config.payments.rail, metrics, log);
  // The store's lock: a contract's money work runs one at a time on every node sharing the store.
  const lock = store.contractLock;
  const executor = createContractExecutor({ store, rail, onEvent, holdExpiryWarningMs: config.payments.holdWarningMs, lock, log });
  const milestones = createMilestoneService({ store, rail, onEvent, lock, log });
  const paymentSetup = createPaymentSetupService({
    store,
    stripe: config.payments.rail === "stripe" ? createStripeConnect(stripeOptions) : undefined,
    urls: { returnUrl: config.payments.stripeReturnUrl, refreshUrl: config.payments.stripeRefreshUrl },
    publishableKey: config.payments.stripePublishableKey,
    stripeJsUrl: config.payments.stripeJsUrl,
    log,
  });

  const httpEndpoints = new Map<string, RawHttpHandler>();
  if (config.payments.stripeWebhookSecret) {
    const webhook = createStripeWebhookHandler({
      store,
      secret: config.payments.stripeWebhookSecret,
      setup: paymentSetup,
      onUpdate: (update) => void executor.reconcile(update.contractId, { reported: update.kind === "payment" ? update.payment : update.hold }).catch((err: unknown) => log.error({ err }, "reconcile after webhook failed")),
      log,
    });
    httpEndpoints.set("/webhooks/stripe", (body, headers) => {
      const signature = headers["stripe-signature"];
      return webhook(body, Array.isArray(signature) ? signature[0] : signature);
    });
  }

  const agents = await createAgentEngines(config, log, metrics);
  const monzoFetch = createTimedFetch("monzo", metrics);
  const speech = await createSpeechEngines(config, log);
  const webRoot = config.webRoot || path.resolve("clients/web/dist");
  log.info(
    { agents: config.agents.engine, speech: speech.name, payments: config.payments.rail, webhook: httpEndpoints.size > 0 },
    "engines",
  );

  return {
    ...agents,
    ...speech,
    rail,
    executor,
    milestones,
    paymentSetup,
    payments: createPaymentsDesk(paymentSetup, executor),
    bankFor: (profile) =>
      profile.monzoAccessToken ? createMonzoBank({ accessToken: profile.monzoAccessToken, baseUrl: config.monzoApiBase, fetch: monzoFetch }) : undefined,
    httpEndpoints,
    webRoot: existsSync(webRoot) ? webRoot : undefined,
    onRoomEvent(listener) {
      publish = listener;
    },
    async close() {
      executor.close();
      await speech.close();
    },
  };
}

/**
 * Stops start-up (ConfigError, exit 2) when Stripe refuses STRIPE_SECRET_KEY (401) or forbids it
 * the check (403), before anyone signs a contract it could not pay. Stripe unreachable is only
 * warned about: payments stay pending and are retried, so a network blip must not keep us down.
 */
async function checkStripeKeyAtStart(options: StripeRailOptions, log: Logger): Promise<void> {
  const check = await checkStripeKey(options);
  if (check.ok) log.info({ livemode: check.livemode }, "stripe key checked");
  else if (check.reason === "unreachable") log.warn({ reason: check.message }, "could not check STRIPE_SECRET_KEY at start");
  else throw new ConfigError(check.message);
}

/** Wraps an execution event in the panel event of its room. */
function toPanelEvent(event: ExecutionEvent): PanelEventInit {
  switch (event.kind) {
    case "step":
      return { event: { case: "executionStep", value: event.step } };
    case "payment":
      return { event: { case: "payment", value: event.payment } };
    case "hold":
      return { event: { case: "escrowHold", value: event.hold } };
    case "milestone":
      return { event: { case: "milestone", value: event.milestone } };
    case "contract":
      return { event: { case: "contract", value: event.contract } };
    case "error":
      return { event: { case: "error", value: event.error } };
    case "action":
      return { event: { case: "paymentAction", value: event.action }, visibleToUserId: event.payerUserId };
  }
}
