/** Formats minor units for people, e.g. 12050n GBP → "£120.50". Exact: no floats. */
export function formatMoney(amountMinor: bigint, currency: string): string {
  const digits = minorDigits(currency);
  const negative = amountMinor < 0n;
  const abs = negative ? -amountMinor : amountMinor;
  const scale = 10n ** BigInt(digits);
  const major = (abs / scale).toLocaleString("en-GB");
  const minor = digits > 0 ? "." + (abs % scale).toString().padStart(digits, "0") : "";
  const symbol = SYMBOLS[currency];
  const body = symbol ? `${symbol}${major}${minor}` : `${major}${minor} ${currency}`;
  return negative ? `-${body}` : body;
}

const SYMBOLS: Record<string, string> = { GBP: "£", EUR: "€", USD: "$", JPY: "¥" };

/** Minor-unit digits of an ISO 4217 currency (0 for JPY, KRW and the like, else 2). */
export function minorDigits(currency: string): number {
  return ZERO_DECIMAL.has(currency) ? 0 : 2;
}

const ZERO_DECIMAL = new Set(["JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF", "PYG", "RWF"]);

/** True for a well-formed ISO 4217 code from the list the product supports. */
export function isSupportedCurrency(code: string): boolean {
  return SUPPORTED_CURRENCIES.has(code);
}

/** Currencies accepted in profiles and proposals. */
export const SUPPORTED_CURRENCIES: ReadonlySet<string> = new Set([
  "GBP", "EUR", "USD", "CAD", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "JPY", "SGD", "HKD", "INR", "ZAR", "MXN", "BRL",
]);
