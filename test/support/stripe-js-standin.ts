import { createServer } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * A stand-in for Stripe.js, served on 127.0.0.1 for browser tests only (the app loads Stripe.js
 * from STRIPE_JS_URL). It talks to the fake Stripe the way Stripe.js talks to Stripe: form posts
 * with the publishable key as `key` and the intent's client secret. Its "card element" is a
 * choice of test cards (real Stripe.js puts card fields in Stripe's iframe); 3-D Secure opens the
 * intent's next_action page in an iframe, as Stripe.js does in its modal, and waits for the
 * payer's answer there.
 */
export interface StripeJsStandIn {
  /** The script's URL, for STRIPE_JS_URL. */
  url: string;
  close(): Promise<void>;
}

function script(apiBase: string): string {
  return `(() => {
  const api = ${JSON.stringify(apiBase)};
  const idOf = (secret) => secret.slice(0, secret.indexOf("_secret_"));
  async function post(path, params) {
    const res = await fetch(api + path, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(params).toString() });
    return { status: res.status, body: await res.json() };
  }
  window.Stripe = (key) => ({
    elements() {
      return {
        create() {
          const select = document.createElement("select");
          select.setAttribute("data-testid", "standin-card");
          select.setAttribute("aria-label", "Test card");
          for (const card of ["pm_card_visa", "pm_card_authenticationRequired", "pm_card_chargeCustomerFail"]) {
            const option = document.createElement("option");
            option.value = option.textContent = card;
            select.append(option);
          }
          return { mount(target) { target.append(select); }, get token() { return select.value; } };
        },
      };
    },
    async confirmCardSetup(secret, data) {
      const answer = await post("/v1/setup_intents/" + idOf(secret) + "/confirm", { key, client_secret: secret, payment_method: data.payment_method.card.token });
      return answer.status === 200 ? { setupIntent: answer.body } : { error: answer.body.error };
    },
    async confirmCardPayment(secret, data = {}) {
      const id = idOf(secret);
      const answer = await post("/v1/payment_intents/" + id + "/confirm", { key, client_secret: secret, ...(data.payment_method ? { payment_method: data.payment_method } : {}) });
      if (answer.status !== 200) return { error: answer.body.error };
      let intent = answer.body;
      if (intent.status === "requires_action" && intent.next_action && intent.next_action.type === "redirect_to_url") {
        const frame = document.createElement("iframe");
        frame.src = intent.next_action.redirect_to_url.url;
        frame.title = "3D Secure authentication";
        frame.setAttribute("data-testid", "standin-3ds");
        frame.style.cssText = "position:fixed;inset:15%;width:70%;height:50%;background:#fff;border:2px solid #333;z-index:1000";
        document.body.append(frame);
        while (intent.status === "requires_action") {
          await new Promise((resolve) => setTimeout(resolve, 200));
          const res = await fetch(api + "/v1/payment_intents/" + id + "?" + new URLSearchParams({ key, client_secret: secret }));
          intent = await res.json();
        }
        frame.remove();
      }
      return intent.status === "requires_payment_method" ? { error: intent.last_payment_error || { message: "The payment failed" } } : { paymentIntent: intent };
    },
  });
})();
`;
}

/** Serves the stand-in at `<url>` (path /v3/) talking to the fake Stripe at `apiBase`. */
export async function startStripeJsStandIn(apiBase: string): Promise<StripeJsStandIn> {
  const body = script(apiBase);
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    if (req.url !== "/v3/") {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "text/javascript; charset=utf-8", "access-control-allow-origin": "*" });
    res.end(body);
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v3/`,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}
