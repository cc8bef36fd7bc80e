import { BankError, type BankAccount, type BankBalance, type BankTransaction } from "./bank.js";

/** Options of a Monzo connection. */
export interface MonzoBankOptions {
  /** The person's Monzo bearer token (write-only in their profile). Never logged. */
  accessToken: string;
  /** API root (env MONZO_API_BASE), default https://api.monzo.com. */
  baseUrl?: string;
  /** The fetch to use (tests, proxies); default the global fetch. */
  fetch?: typeof fetch;
  /** Account to read; default the first open account `GET /accounts` lists. */
  accountId?: string;
  /** Per-request timeout, ms (default 10 000). */
  timeoutMs?: number;
  /** Clock, Unix ms (bounds the transaction window). */
  now?: () => number;
}

/** Monzo lets a client read only the last 90 days once 5 minutes have passed since login; stay inside. */
const TRANSACTION_WINDOW_MS = 89 * 24 * 60 * 60 * 1000;
/** Monzo's page size limit. */
const MAX_PAGE = 100;
/** Pages read at most when looking for the newest transactions. */
const MAX_PAGES = 10;

interface MonzoAccount {
  id: string;
  closed?: boolean;
}

/**
 * A read-only Monzo connection: `GET /accounts`, `GET /balance?account_id=…` and
 * `GET /transactions?account_id=…&since=…&limit=…`, bearer-authenticated. Errors are `BankError`s
 * with messages fit to show the person: 401 "Monzo token expired or revoked", 403 "approve access
 * in the Monzo app" (a new token has no permissions until the person approves it), anything else
 * unavailable; a body we cannot read is bad_response.
 */
export function createMonzoBank(options: MonzoBankOptions): BankAccount {
  const base = (options.baseUrl ?? "https://api.monzo.com").replace(/\/+$/, "");
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const now = options.now ?? Date.now;
  let accountId = options.accountId;

  async function get(path: string, query: Record<string, string>): Promise<Record<string, unknown>> {
    const url = `${base}${path}${Object.keys(query).length ? `?${new URLSearchParams(query).toString()}` : ""}`;
    let response: Response;
    try {
      response = await doFetch(url, {
        method: "GET",
        headers: { authorization: `Bearer ${options.accessToken}`, accept: "application/json" },
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
      throw new BankError(timedOut ? "Monzo did not answer in time" : "Could not reach Monzo", "unavailable");
    }
    if (response.status === 401) {
      await response.body?.cancel();
      throw new BankError("Monzo token expired or revoked: connect Monzo again", "unauthorized");
    }
    if (response.status === 403) {
      await response.body?.cancel();
      throw new BankError("Monzo has not allowed access yet: approve access in the Monzo app, then try again", "forbidden");
    }
    if (!response.ok) {
      await response.body?.cancel();
      const what = response.status === 429 ? "Monzo is limiting requests; try again shortly" : `Monzo is unavailable (HTTP ${response.status})`;
      throw new BankError(what, "unavailable");
    }
    let body: unknown;
    try {
      body = await response.json();
    } catch {
      throw new BankError("Monzo sent a response we could not read", "bad_response");
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new BankError("Monzo sent a response we could not read", "bad_response");
    }
    return body as Record<string, unknown>;
  }

  async function account(): Promise<string> {
    if (accountId) return accountId;
    const body = await get("/accounts", {});
    const accounts = Array.isArray(body.accounts) ? (body.accounts as MonzoAccount[]) : undefined;
    if (!accounts) throw new BankError("Monzo sent a response we could not read", "bad_response");
    const open = accounts.find((a) => typeof a?.id === "string" && a.closed !== true);
    if (!open) throw new BankError("This Monzo login has no open account", "bad_response");
    accountId = open.id;
    return open.id;
  }

  return {
    async getBalance(): Promise<BankBalance> {
      const body = await get("/balance", { account_id: await account() });
      return { balanceMinor: minorUnits(body.balance), currency: currencyOf(body.currency) };
    },

    async recentTransactions(limit: number): Promise<BankTransaction[]> {
      const wanted = Math.max(1, Math.min(MAX_PAGE, Math.floor(limit)));
      const id = await account();
      // Monzo pages oldest first from `since`; walk forward and keep the newest `wanted`.
      let since = new Date(now() - TRANSACTION_WINDOW_MS).toISOString();
      let newest: BankTransaction[] = [];
      for (let page = 0; page < MAX_PAGES; page++) {
        const body = await get("/transactions", { account_id: id, since, limit: String(MAX_PAGE) });
        if (!Array.isArray(body.transactions)) throw new BankError("Monzo sent a response we could not read", "bad_response");
        const batch = (body.transactions as unknown[]).map(toTransaction);
        newest = newest.concat(batch).slice(-wanted);
        const last = batch.at(-1);
        if (batch.length < MAX_PAGE || !last) break;
        since = last.id;
      }
      return newest.sort((a, b) => b.createdAtMs - a.createdAtMs);
    },
  };
}

function toTransaction(raw: unknown): BankTransaction {
  if (typeof raw !== "object" || raw === null) throw new BankError("Monzo sent a transaction we could not read", "bad_response");
  const t = raw as Record<string, unknown>;
  const createdAtMs = typeof t.created === "string" ? Date.parse(t.created) : NaN;
  if (typeof t.id !== "string" || Number.isNaN(createdAtMs)) {
    throw new BankError("Monzo sent a transaction we could not read", "bad_response");
  }
  return {
    id: t.id,
    amountMinor: minorUnits(t.amount),
    currency: currencyOf(t.currency),
    description: typeof t.description === "string" ? t.description : "",
    createdAtMs,
  };
}

function minorUnits(value: unknown): bigint {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new BankError("Monzo sent an amount we could not read", "bad_response");
  }
  return BigInt(value);
}

function currencyOf(value: unknown): string {
  if (typeof value !== "string" || !/^[A-Za-z]{3}$/.test(value)) {
    throw new BankError("Monzo sent a currency we could not read", "bad_response");
  }
  return value.toUpperCase();
}
