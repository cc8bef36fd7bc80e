/**
 * The embedded ledger's account names: the one place they are spelt. The store's `getBalances`
 * reads them and the ledger rail posts to them, so both must agree on every character.
 */
export const ledgerAccounts = {
  /** What a user can spend (may go negative: the embedded ledger lets a payer overdraw). */
  available: (userId: string): string => `user:${userId}:available`,
  /** A payer's money while an escrow hold is open. */
  held: (userId: string): string => `user:${userId}:held`,
  /** What a payee has been paid (captures and immediate payments). */
  received: (userId: string): string => `user:${userId}:received`,
  /** Money entering or leaving the embedded system (top-ups, refunds out). */
  externalFunding: "external:funding",
} as const;
