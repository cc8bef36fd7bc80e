import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * A local Stripe for tests: node:http on 127.0.0.1, port 0, speaking the parts of Stripe's v1 API
 * the Stripe rail uses, on the wire (form-encoded bodies with qs-style brackets, JSON answers,
 * Stripe's error envelope, `Idempotency-Key` semantics). Unlike stripe-mock it keeps state, so a
 * PaymentIntent really walks requires_capture → succeeded / canceled.
 *
 * Magic values, like Stripe's test mode: payment method `pm_card_chargeDeclined` → 402
 * card_declined; `pm_card_chargeDeclinedInsufficientFunds` → 402 insufficient_funds;
 * destination `acct_unready` → 400 insufficient_capabilities_for_transfer; a destination not
 * starting with `acct_` → 400 "No such destination". Keys: `sk_test_…` and `rk_test_…` are
 * accepted (any other → 401), `rk_test_denied…` is a restricted key without access (403).
 */
export interface FakeStripe {
  /** e.g. http://127.0.0.1:54321 */
  url: string;
  host: string;
  port: number;
  /** Every request received, in order, replays and scripted faults included. */
  requests: RecordedRequest[];
  /** PaymentIntents by id, as the fake holds them. */
  intents: Map<string, FakeIntent>;
  /** PaymentIntents created (not replays): each is one charge or authorisation attempt. */
  created(): number;
  /**
   * Answers the next `times` matching requests with `status` before they reach the API (like an
   * overloaded front end), so they are not stored under their idempotency key. With `stored`, a
   * 500 comes from inside the API instead, after execution began: Stripe saves it under the key and
   * answers every retry with that key with it (nothing is carried out).
   */
  failNext(fault: { status: 429 | 500 | 503; times?: number; match?: (r: RecordedRequest) => boolean; stored?: boolean }): void;
  /**
   * Never answers the next matching request (the client's timeout must fire). With
   * `afterExecuting`, the request is carried out (and its answer saved under its key) first, as
   * when Stripe did the work but the answer was lost on the way back.
   */
  hangNext(match?: (r: RecordedRequest) => boolean, options?: { afterExecuting?: boolean }): void;
  /** The JSON body Stripe would POST to a webhook endpoint for `type` about the intent `intentId`. */
  eventFor(type: string, intentId: string): string;
  /** Resolves when `count` requests in total have arrived. */
  waitForRequests(count: number): Promise<void>;
  close(): Promise<void>;
}

/** One request as the fake saw it. */
export interface RecordedRequest {
  method: string;
  path: string;
  idempotencyKey: string | undefined;
  authorization: string | undefined;
  stripeVersion: string | undefined;
  /** The decoded form body (or query, for GET), nested as qs would. */
  params: Record<string, unknown>;
  rawBody: string;
  /** True when answered from the idempotency cache. */
  replayed: boolean;
}

/** A PaymentIntent in the fake's memory (the JSON fields the rail reads). */
export interface FakeIntent {
  id: string;
  object: "payment_intent";
  amount: number;
  amount_capturable: number;
  amount_received: number;
  currency: string;
  status: string;
  capture_method: string;
  customer: string | null;
  payment_method: string | null;
  description: string | null;
  metadata: Record<string, string>;
  transfer_data: { destination: string } | null;
  created: number;
  cancellation_reason: string | null;
  last_payment_error: { type: string; code: string; decline_code?: string; message: string } | null;
  latest_charge: string | null;
  livemode: false;
}

interface Answer {
  status: number;
  body: unknown;
}

/** Restricted test keys starting with this are granted nothing: every request is answered 403. */
export const DENIED_KEY_PREFIX = "rk_test_denied";

/** Visa's merchant-initiated authorisation window, which the fake reports as `capture_before`. */
const MIT_WINDOW_SEC = (4 * 24 + 18) * 3600;

/** Starts the fake. `clockMs` gives Stripe's notion of now (for `created`). */
export async function startFakeStripe(options: { clockMs?: () => number } = {}): Promise<FakeStripe> {
  const clockMs = options.clockMs ?? Date.now;
  const requests: RecordedRequest[] = [];
  const intents = new Map<string, FakeIntent>();
  const idempotency = new Map<string, { fingerprint: string; answer: Answer }>();
  const faults: { status: number; times: number; match: (r: RecordedRequest) => boolean; stored: boolean }[] = [];
  const hangs: { match: (r: RecordedRequest) => boolean; afterExecuting: boolean }[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const sockets = new Set<Socket>();
  let createdCount = 0;
  let seq = 0;

  function notify(): void {
    for (const w of [...waiters]) {
      if (requests.length >= w.count) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  }

  function stripeError(status: number, error: Record<string, unknown>): Answer {
    return { status, body: { error } };
  }

  function chargeView(intent: FakeIntent, expand: string[]): unknown {
    if (!intent.latest_charge || !expand.includes("latest_charge")) return intent.latest_charge;
    return {
      id: intent.latest_charge,
      object: "charge",
      payment_method_details: {
        type: "card",
        card: intent.capture_method === "manual" ? { capture_before: intent.created + MIT_WINDOW_SEC } : {},
      },
    };
  }

  function view(intent: FakeIntent, expand: string[]): unknown {
    return { ...intent, latest_charge: chargeView(intent, expand) };
  }

  function createIntent(p: Record<string, unknown>): Answer {
    const amount = Number(p.amount);
    if (!Number.isInteger(amount) || amount <= 0) {
      return stripeError(400, { type: "invalid_request_error", code: "parameter_invalid_integer", param: "amount", message: "Invalid integer: amount" });
    }
    const transfer = p.transfer_data as Record<string, unknown> | undefined;
    const destination = typeof transfer?.destination === "string" ? transfer.destination : undefined;
    if (destination !== undefined && !destination.startsWith("acct_")) {
      return stripeError(400, { type: "invalid_request_error", code: "resource_missing", param: "transfer_data[destination]", message: `No such destination: '${destination}'` });
    }
    if (destination === "acct_unready") {
      return stripeError(400, {
        type: "invalid_request_error",
        code: "insufficient_capabilities_for_transfer",
        param: "transfer_data[destination]",
        message: "Your destination account needs to have at least one of the following capabilities enabled: transfers, crypto_transfers, legacy_payments",
      });
    }
    createdCount++;
    const intent: FakeIntent = {
      id: `pi_fake_${++seq}`,
      object: "payment_intent",
      amount,
      amount_capturable: 0,
      amount_received: 0,
      currency: String(p.currency ?? ""),
      status: "requires_confirmation",
      capture_method: String(p.capture_method ?? "automatic"),
      customer: typeof p.customer === "string" ? p.customer : null,
      payment_method: typeof p.payment_method === "string" ? p.payment_method : null,
      description: typeof p.description === "string" ? p.description : null,
      metadata: (p.metadata as Record<string, string> | undefined) ?? {},
      transfer_data: destination ? { destination } : null,
      created: Math.floor(clockMs() / 1000),
      cancellation_reason: null,
      last_payment_error: null,
      latest_charge: null,
      livemode: false,
    };
    intents.set(intent.id, intent);
    if (p.confirm !== "true") return { status: 200, body: view(intent, expandOf(p)) };
    const decline =
      intent.payment_method === "pm_card_chargeDeclined"
        ? { code: "card_declined", decline_code: "generic_decline", message: "Your card was declined." }
        : intent.payment_method === "pm_card_chargeDeclinedInsufficientFunds"
          ? { code: "card_declined", decline_code: "insufficient_funds", message: "Your card has insufficient funds." }
          : undefined;
    if (decline) {
      intent.status = "requires_payment_method";
      intent.last_payment_error = { type: "card_error", ...decline };
      return stripeError(402, { type: "card_error", ...decline, payment_intent: view(intent, []) });
    }
    intent.latest_charge = `ch_fake_${seq}`;
    if (intent.capture_method === "manual") {
      intent.status = "requires_capture";
      intent.amount_capturable = amount;
    } else {
      intent.status = "succeeded";
      intent.amount_received = amount;
    }
    return { status: 200, body: view(intent, expandOf(p)) };
  }

  function unexpectedState(intent: FakeIntent, action: string): Answer {
    return stripeError(400, {
      type: "invalid_request_error",
      code: "payment_intent_unexpected_state",
      message: `This PaymentIntent could not be ${action} because it has a status of ${intent.status}.`,
      payment_intent: view(intent, []),
    });
  }

  function capture(intent: FakeIntent, p: Record<string, unknown>): Answer {
    if (intent.status !== "requires_capture") return unexpectedState(intent, "captured");
    const amount = p.amount_to_capture === undefined ? intent.amount_capturable : Number(p.amount_to_capture);
    if (!Number.isInteger(amount) || amount <= 0 || amount > intent.amount_capturable) {
      return stripeError(400, { type: "invalid_request_error", code: "amount_too_large", param: "amount_to_capture", message: "The amount to capture must be less than or equal to the amount capturable." });
    }
    intent.status = "succeeded";
    intent.amount_received = amount;
    intent.amount_capturable = 0;
    return { status: 200, body: view(intent, expandOf(p)) };
  }

  function cancel(intent: FakeIntent, p: Record<string, unknown>): Answer {
    if (!["requires_capture", "requires_payment_method", "requires_confirmation", "requires_action"].includes(intent.status)) {
      return unexpectedState(intent, "canceled");
    }
    intent.status = "canceled";
    intent.amount_capturable = 0;
    intent.cancellation_reason = typeof p.cancellation_reason === "string" ? p.cancellation_reason : null;
    return { status: 200, body: view(intent, expandOf(p)) };
  }

  /** Stripe's search query language, the part the rail uses: `metadata['k']:'v'` clauses joined by AND. */
  function search(p: Record<string, unknown>): Answer {
    const query = typeof p.query === "string" ? p.query : "";
    const clauses = query.split(/\s+AND\s+/).map((c) => /^metadata\['([^']+)'\]:'((?:[^'\\]|\\.)*)'$/.exec(c.trim()));
    if (query === "" || clauses.some((c) => !c)) {
      return stripeError(400, { type: "invalid_request_error", code: "parameter_invalid_string", param: "query", message: `Invalid search query: ${query}` });
    }
    const wanted = clauses.map((c) => [c![1]!, c![2]!.replace(/\\(.)/g, "$1")] as const);
    const data = [...intents.values()].filter((i) => wanted.every(([k, v]) => i.metadata[k] === v)).reverse();
    return { status: 200, body: { object: "search_result", url: "/v1/payment_intents/search", has_more: false, next_page: null, data: data.map((i) => view(i, [])) } };
  }

  function route(method: string, path: string, p: Record<string, unknown>): Answer {
    if (method === "POST" && path === "/v1/payment_intents") return createIntent(p);
    if (method === "GET" && path === "/v1/balance") {
      const funds = [{ amount: 0, currency: "gbp", source_types: { card: 0 } }];
      return { status: 200, body: { object: "balance", available: funds, pending: funds, livemode: false } };
    }
    if (method === "GET" && path === "/v1/payment_intents/search") return search(p);
    const m = /^\/v1\/payment_intents\/([^/]+)(?:\/(capture|cancel))?$/.exec(path);
    if (!m) return stripeError(404, { type: "invalid_request_error", message: `Unrecognized request URL (${method}: ${path}).` });
    const intent = intents.get(decodeURIComponent(m[1] ?? ""));
    if (!intent) {
      return stripeError(404, { type: "invalid_request_error", code: "resource_missing", param: "intent", message: `No such payment_intent: '${m[1]}'` });
    }
    if (method === "GET" && !m[2]) return { status: 200, body: view(intent, expandOf(p)) };
    if (method === "POST" && m[2] === "capture") return capture(intent, p);
    if (method === "POST" && m[2] === "cancel") return cancel(intent, p);
    return stripeError(405, { type: "invalid_request_error", message: "Method not allowed" });
  }

  function send(res: ServerResponse, answer: Answer, replayed: boolean): void {
    const body = JSON.stringify(answer.body);
    res.writeHead(answer.status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      "request-id": `req_fake_${requests.length}`,
      ...(replayed ? { "idempotent-replayed": "true" } : {}),
    });
    res.end(body);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const rawBody = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url ?? "/", "http://fake");
    const method = req.method ?? "GET";
    const header = (name: string) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    const record: RecordedRequest = {
      method,
      path: url.pathname,
      idempotencyKey: header("idempotency-key"),
      authorization: header("authorization"),
      stripeVersion: header("stripe-version"),
      params: parseForm(method === "GET" ? url.search.slice(1) : rawBody),
      rawBody,
      replayed: false,
    };
    requests.push(record);
    notify();

    const hangAt = hangs.findIndex((h) => h.match(record));
    const hang = hangAt >= 0 ? hangs.splice(hangAt, 1)[0] : undefined;
    // Never answered; the socket is destroyed at close().
    if (hang && !hang.afterExecuting) return;
    const answer = execute(record, method, url.pathname, rawBody);
    if (!hang) send(res, answer.answer, answer.replayed);
  }

  /** Carries out one request: scripted faults, authentication, idempotency, then the API. */
  function execute(record: RecordedRequest, method: string, pathname: string, rawBody: string): { answer: Answer; replayed: boolean } {
    const fault = faults.find((f) => f.match(record));
    if (fault) {
      if (--fault.times <= 0) faults.splice(faults.indexOf(fault), 1);
    }
    const faultAnswer = (status: number): Answer =>
      stripeError(
        status,
        status === 429
          ? { type: "invalid_request_error", code: "rate_limit", message: "Too many requests hit the API too quickly." }
          : { type: "api_error", message: "An unknown error occurred." },
      );
    if (fault && !fault.stored) return { answer: faultAnswer(fault.status), replayed: false };
    const apiKey = record.authorization?.replace(/^Bearer /, "") ?? "";
    if (!apiKey.startsWith("sk_test_") && !apiKey.startsWith("rk_test_")) {
      return { answer: stripeError(401, { type: "invalid_request_error", message: "Invalid API Key provided." }), replayed: false };
    }
    // A restricted key granted nothing: Stripe answers 403 for any endpoint it lacks access to.
    if (apiKey.startsWith(DENIED_KEY_PREFIX)) {
      return {
        answer: stripeError(403, {
          type: "invalid_request_error",
          message: `The provided key '${apiKey.slice(0, 12)}***' does not have the required permissions for this endpoint on account 'acct_fake_platform'.`,
        }),
        replayed: false,
      };
    }
    const key = record.idempotencyKey;
    if (method === "POST" && key) {
      const fingerprint = `${method} ${pathname} ${rawBody}`;
      const saved = idempotency.get(key);
      if (saved) {
        if (saved.fingerprint !== fingerprint) {
          return {
            answer: stripeError(400, {
              type: "idempotency_error",
              message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`,
            }),
            replayed: false,
          };
        }
        record.replayed = true;
        return { answer: saved.answer, replayed: true };
      }
      const answer = fault ? faultAnswer(fault.status) : route(method, pathname, record.params);
      // Stripe saves the outcome once execution began, failures included (not 400 validation errors).
      if (answer.status !== 400 || (answer.body as { error?: { code?: string } }).error?.code === "payment_intent_unexpected_state") {
        idempotency.set(key, { fingerprint, answer });
      }
      return { answer, replayed: false };
    }
    return { answer: fault ? faultAnswer(fault.status) : route(method, pathname, record.params), replayed: false };
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { type: "api_error", message: String(err) } }));
    });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    host: "127.0.0.1",
    port,
    requests,
    intents,
    created: () => createdCount,
    failNext({ status, times = 1, match = () => true, stored = false }) {
      faults.push({ status, times, match, stored });
    },
    hangNext(match = () => true, options = {}) {
      hangs.push({ match, afterExecuting: options.afterExecuting ?? false });
    },
    eventFor(type, intentId) {
      const intent = intents.get(intentId);
      if (!intent) throw new Error(`no payment intent ${intentId}`);
      return JSON.stringify({
        id: `evt_fake_${++seq}`,
        object: "event",
        api_version: "2026-10-28.endive",
        created: Math.floor(clockMs() / 1000),
        type,
        livemode: false,
        data: { object: view(intent, []) },
      });
    },
    waitForRequests(count) {
      return new Promise((resolve) => {
        waiters.push({ count, resolve });
        notify();
      });
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}

/** Decodes `a[b][0]=c&…` into nested objects and arrays, as Stripe (qs) does. */
export function parseForm(body: string): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  if (!body) return root;
  for (const pair of body.split("&")) {
    if (!pair) continue;
    const eq = pair.indexOf("=");
    const rawKey = eq < 0 ? pair : pair.slice(0, eq);
    const rawValue = eq < 0 ? "" : pair.slice(eq + 1);
    const key = decodeURIComponent(rawKey.replace(/\+/g, " "));
    const value = decodeURIComponent(rawValue.replace(/\+/g, " "));
    const first = /^[^[]+/.exec(key)?.[0] ?? key;
    const path = [first, ...[...key.slice(first.length).matchAll(/\[([^\]]*)\]/g)].map((m) => m[1] ?? "")];
    let node: Record<string, unknown> | unknown[] = root;
    path.forEach((part, i) => {
      const last = i === path.length - 1;
      const container = node as Record<string, unknown>;
      if (last) {
        container[part] = value;
        return;
      }
      const nextIsIndex = /^\d+$/.test(path[i + 1] ?? "");
      if (container[part] === undefined) container[part] = nextIsIndex ? [] : {};
      node = container[part] as Record<string, unknown> | unknown[];
    });
  }
  return root;
}

function expandOf(p: Record<string, unknown>): string[] {
  const expand = p.expand;
  return Array.isArray(expand) ? expand.map(String) : [];
}
