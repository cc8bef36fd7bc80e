/**
 * Reads money in texts with the product's own reader (src/language/amounts.ts), for bench/speech.ts,
 * which may not import src/. Input on stdin: a JSON array of { text, currency }. Output on stdout:
 * a JSON array, per text, of { amountMinor (decimal string), currency }.
 * Run: echo '[{"text":"eighty dollars","currency":"GBP"}]' | node --import tsx scripts/read-amounts.ts
 */
import { scanAmounts } from "../src/language/amounts.js";

const chunks: Buffer[] = [];
for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
const texts = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { text: string; currency: string }[];
const amounts = texts.map(({ text, currency }) =>
  scanAmounts(text, currency).money.map((m) => ({ amountMinor: m.amountMinor.toString(), currency: m.currency })),
);
process.stdout.write(`${JSON.stringify(amounts)}\n`);
