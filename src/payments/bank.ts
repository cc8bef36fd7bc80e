/** A bank balance in minor units. */
export interface BankBalance {
  balanceMinor: bigint;
  currency: string;
}

/** A bank transaction, newest first in listings. */
export interface BankTransaction {
  id: string;
  amountMinor: bigint;
  currency: string;
  description: string;
  createdAtMs: number;
}

/**
 * A person's bank connection (Monzo), read-only: balance and recent transactions. Used by the
 * agents' balance tools and the affordability check before the paying side accepts.
 * Errors are `BankError` with a message fit to show the person.
 */
export interface BankAccount {
  getBalance(): Promise<BankBalance>;
  recentTransactions(limit: number): Promise<BankTransaction[]>;
}

/** A bank call that failed: expired token, not yet approved in the app, unreachable. */
export class BankError extends Error {
  override readonly name = "BankError";
  constructor(
    message: string,
    readonly code: "unauthorized" | "forbidden" | "unavailable" | "bad_response",
  ) {
    super(message);
  }
}
