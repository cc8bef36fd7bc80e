import { ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import type { PanelEvent } from "../../../gen/handshake/v1/events_pb.js";
import { PaymentsService, type PaymentAction, type PaymentSetup } from "../../../gen/handshake/v1/payments_service_pb.js";
import { h, replace } from "./dom.js";
import type { Endpoint } from "./room-session.js";

/*
 * Stripe in the browser: the payee's onboarding link, saving the payer's card with Stripe.js
 * (loaded from where the server says, js.stripe.com in production: Stripe requires it, and card
 * numbers only ever reach Stripe's own fields), and the payer's answers to payment actions
 * (3-D Secure through Stripe.js, a retry after a decline).
 */

/** The part of Stripe.js (https://docs.stripe.com/js) the app uses. */
interface StripeJs {
  elements(): { create(type: "card"): StripeCardElement };
  confirmCardSetup(clientSecret: string, data: { payment_method: { card: StripeCardElement } }): Promise<{ setupIntent?: { status: string }; error?: { message?: string } }>;
  confirmCardPayment(clientSecret: string, data?: { payment_method?: string }): Promise<{ paymentIntent?: { status: string }; error?: { message?: string } }>;
}

interface StripeCardElement {
  mount(target: HTMLElement): void;
}

declare global {
  interface Window {
    Stripe?: (publishableKey: string) => StripeJs;
  }
}

/** PaymentsService with a user token. */
function paymentsClient(endpoint: Endpoint, token: string): Client<typeof PaymentsService> {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createClient(PaymentsService, createConnectTransport({ baseUrl: endpoint.baseUrl || location.origin, useBinaryFormat: true, interceptors: [auth] }));
}

const loaded = new Map<string, Promise<void>>();

/** Loads Stripe.js from `url` once and makes its client for `publishableKey`. */
async function loadStripeJs(url: string, publishableKey: string): Promise<StripeJs> {
  if (!publishableKey) throw new Error("this server has no Stripe publishable key (STRIPE_PUBLISHABLE_KEY)");
  let loading = loaded.get(url);
  if (!loading) {
    loading = new Promise<void>((resolve, reject) => {
      const script = h("script", { src: url });
      script.addEventListener("load", () => resolve());
      script.addEventListener("error", () => reject(new Error("Stripe.js could not be loaded")));
      document.head.append(script);
    });
    loading.catch(() => loaded.delete(url));
    loaded.set(url, loading);
  }
  await loading;
  if (!window.Stripe) throw new Error("Stripe.js did not load");
  return window.Stripe(publishableKey);
}

function messageOf(err: unknown): string {
  return err instanceof ConnectError ? err.rawMessage : (err as Error).message;
}

function setupText(setup: PaymentSetup): string {
  const paid = !setup.payeeAccountCreated
    ? "Not set up to be paid."
    : setup.chargesEnabled
      ? `You can be paid${setup.payoutsEnabled ? "" : " (payouts to your bank are not on yet)"}.`
      : "Stripe onboarding is not finished yet.";
  return `${paid} ${setup.cardSaved ? "A card is saved to pay with." : "No card saved to pay with."}`;
}

/**
 * The Payments part of the settings sheet for the person `token()` names (undefined before this
 * browser ever joined a room). On the page Stripe sends people back to (`?stripe=return`), the
 * account is read again from Stripe.
 */
export function stripeSettings(endpoint: Endpoint, token: () => string | undefined): HTMLElement {
  const status = h("p", { "data-testid": "stripe-status", role: "status" }, "Checking…");
  const error = h("p", { class: "error", role: "alert", "data-testid": "stripe-error" });
  const cardSlot = h("div", { class: "stripe-card", "data-testid": "stripe-card-element" });
  const save = h("button", { type: "button", "data-testid": "stripe-card-save", hidden: true }, "Save card");
  const onboard = h("button", { type: "button", "data-testid": "stripe-onboard" }, "Connect Stripe to be paid");
  const addCard = h("button", { type: "button", "data-testid": "stripe-card" }, "Save a card to pay with");
  const section = h("fieldset", { class: "payments", "data-testid": "stripe-settings" }, h("legend", {}, "Payments (Stripe)"), status, h("div", { class: "actions" }, onboard, addCard), cardSlot, save, error);
  const userToken = token();
  if (!userToken) {
    status.textContent = "Join a room once: your Stripe setup belongs to the identity this browser gets then.";
    onboard.hidden = addCard.hidden = true;
    return section;
  }
  const payments = paymentsClient(endpoint, userToken);
  const show = (setup: PaymentSetup | undefined) => {
    if (setup) status.textContent = setupText(setup);
  };
  const fail = (err: unknown) => {
    error.textContent = messageOf(err);
  };
  const returned = new URLSearchParams(location.search).get("stripe") === "return";
  let asked = false;
  const ask = () => {
    if (asked) return;
    asked = true;
    payments.getPaymentSetup({ refresh: returned }).then(
      (res) => show(res.setup),
      (err: unknown) => {
        status.textContent = messageOf(err);
        onboard.hidden = addCard.hidden = true;
      },
    );
  };
  // Asked when the sheet it sits in is first opened, not on every visit to the join screen.
  setTimeout(() => {
    const sheet = section.closest("details");
    if (!sheet || sheet.open) return ask();
    sheet.addEventListener("toggle", () => sheet.open && ask());
  }, 0);
  onboard.addEventListener("click", () => {
    error.textContent = "";
    payments.startPayeeOnboarding({}).then((link) => location.assign(link.url), fail);
  });
  addCard.addEventListener("click", () => {
    error.textContent = "";
    addCard.disabled = true;
    void (async () => {
      const setup = await payments.startCardSetup({});
      const stripe = await loadStripeJs(setup.stripeJsUrl, setup.publishableKey);
      const card = stripe.elements().create("card");
      replace(cardSlot);
      card.mount(cardSlot);
      save.hidden = false;
      save.onclick = () => {
        save.disabled = true;
        void stripe.confirmCardSetup(setup.clientSecret, { payment_method: { card } }).then(async (result) => {
          save.disabled = false;
          if (result.error) {
            error.textContent = result.error.message ?? "Stripe refused the card";
            return;
          }
          save.hidden = true;
          replace(cardSlot);
          status.textContent = "Card saved with Stripe; waiting for Stripe to confirm it…";
          // The server records the card from Stripe's webhook, a moment after the device heard.
          for (let i = 0; i < 20; i++) {
            const now = (await payments.getPaymentSetup({})).setup;
            if (now?.cardSaved) return show(now);
            await new Promise((resolve) => setTimeout(resolve, 500));
          }
        }, fail);
      };
    })()
      .catch(fail)
      .finally(() => (addCard.disabled = false));
  });
  return section;
}

/**
 * The payer's payment actions in a room: a 3-D Secure request is answered with Stripe.js on this
 * device (Stripe shows its own authentication window), a declined card can be tried again.
 */
export function createPaymentActions(endpoint: Endpoint, token: () => string): { element: HTMLElement; take(event: PanelEvent): void } {
  const element = h("section", { class: "payment-actions", "data-testid": "payment-actions", "aria-live": "polite" });
  const take = (event: PanelEvent) => {
    if (event.event.case !== "paymentAction") return;
    const action: PaymentAction = event.event.value;
    const payments = paymentsClient(endpoint, token());
    const outcome = h("p", { "data-testid": "payment-action-outcome", role: "status" });
    const label = action.kind === "authenticate" ? "Confirm payment" : "Try again";
    const button = h("button", { type: "button", class: "primary", "data-testid": `payment-action-${action.kind}` }, label);
    const card = h("div", { class: "payment-action", "data-testid": "payment-action", "data-kind": action.kind }, h("p", {}, action.message), button, outcome);
    button.addEventListener("click", () => {
      button.disabled = true;
      void (async () => {
        if (action.kind === "retry") {
          await payments.retryPayment({ contractId: action.contractId, lineItemId: action.lineItemId });
          outcome.textContent = "Trying again…";
          return;
        }
        const { setup } = await payments.getPaymentSetup({});
        const stripe = await loadStripeJs(setup?.stripeJsUrl ?? "", setup?.publishableKey ?? "");
        const result = await stripe.confirmCardPayment(action.clientSecret, action.paymentMethodId ? { payment_method: action.paymentMethodId } : {});
        if (result.error) throw new Error(result.error.message ?? "The payment was not confirmed");
        outcome.textContent = "Payment confirmed.";
      })().catch((err: unknown) => {
        button.disabled = false;
        outcome.textContent = messageOf(err);
      });
    });
    element.append(card);
  };
  return { element, take };
}
