import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

/** A Monzo transaction as the API returns it (the fields we use and a few more). */
export interface MonzoTransactionJson {
  id: string;
  amount: number;
  currency: string;
  created: string;
  description: string;
  category: string;
  settled: string;
}

/**
 * A local Monzo Developer API on 127.0.0.1, port 0: `GET /accounts`, `GET /balance`,
 * `GET /transactions` (oldest first, `since` as RFC 3339 time or a transaction id, `limit` ≤ 100),
 * bearer tokens, and Monzo's error bodies for an expired token (401) and a token the person has
 * not yet approved in the app (403).
 */
export interface FakeMonzo {
  url: string;
  /** Token → its state. Unknown tokens are 401. */
  tokens: Map<string, "ok" | "expired" | "unapproved">;
  transactions: MonzoTransactionJson[];
  balanceMinor: number;
  /** Status to answer every request with (e.g. 500), or undefined for normal service. */
  outage: number | undefined;
  requests: { path: string; query: Record<string, string>; authorization: string | undefined }[];
  close(): Promise<void>;
}

/** Starts the fake Monzo API. */
export async function startFakeMonzo(): Promise<FakeMonzo> {
  const state: Omit<FakeMonzo, "url" | "close"> = {
    tokens: new Map(),
    transactions: [],
    balanceMinor: 0,
    outage: undefined,
    requests: [],
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://fake");
    const authorization = req.headers.authorization;
    state.requests.push({ path: url.pathname, query: Object.fromEntries(url.searchParams), authorization });
    const reply = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
      res.end(text);
    };
    if (state.outage) return reply(state.outage, { code: "internal_service", message: "Something went wrong" });
    const token = authorization?.startsWith("Bearer ") ? authorization.slice(7) : undefined;
    const tokenState = token ? state.tokens.get(token) : undefined;
    if (!tokenState || tokenState === "expired") {
      return reply(401, {
        code: "unauthorized.bad_access_token.expired",
        message: "Access token has expired",
        error: "invalid_token",
        error_description: "Access token has expired",
      });
    }
    if (tokenState === "unapproved") {
      return reply(403, { code: "forbidden.insufficient_permissions", message: "Access forbidden due to insufficient permissions" });
    }
    if (req.method !== "GET") return reply(405, { code: "method_not_allowed", message: "Method not allowed" });
    const accountId = url.searchParams.get("account_id");
    switch (url.pathname) {
      case "/accounts":
        return reply(200, {
          accounts: [
            { id: "acc_old", closed: true, description: "old account", created: "2019-01-01T00:00:00.000Z", type: "uk_retail" },
            { id: "acc_1", closed: false, description: "user_000", created: "2020-01-01T00:00:00.000Z", type: "uk_retail" },
          ],
        });
      case "/balance":
        if (accountId !== "acc_1") return reply(400, { code: "bad_request.bad_param.account_id", message: "Bad account_id" });
        return reply(200, { balance: state.balanceMinor, total_balance: state.balanceMinor + 5_000, currency: "GBP", spend_today: -1_250 });
      case "/transactions": {
        if (accountId !== "acc_1") return reply(400, { code: "bad_request.bad_param.account_id", message: "Bad account_id" });
        const limit = Math.min(100, Number(url.searchParams.get("limit") ?? "30"));
        const since = url.searchParams.get("since");
        let list = [...state.transactions].sort((a, b) => a.created.localeCompare(b.created));
        if (since?.startsWith("tx_")) {
          const at = list.findIndex((t) => t.id === since);
          list = at >= 0 ? list.slice(at + 1) : list;
        } else if (since) {
          list = list.filter((t) => t.created >= since);
        }
        return reply(200, { transactions: list.slice(0, limit) });
      }
      default:
        return reply(404, { code: "not_found", message: "Not found" });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const fake = state as FakeMonzo;
  fake.url = `http://127.0.0.1:${port}`;
  fake.close = () =>
    new Promise<void>((resolve, reject) => {
      server.closeAllConnections();
      server.close((err) => (err ? reject(err) : resolve()));
    });
  return fake;
}
