import { Code, ConnectError } from "@connectrpc/connect";

/**
 * A call as a client makes it while a room moves between nodes: UNAVAILABLE (the old owner's
 * lease has not lapsed yet, or the router still tries the dead node; HAProxy's 502/503 arrive as
 * UNAVAILABLE, UNKNOWN or INTERNAL) is retried after a short pause, as the clients do, until `limitMs`.
 */
export async function retryWhileMoving<T>(call: () => Promise<T>, limitMs = 15_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      const code = ConnectError.from(err).code;
      if ((code !== Code.Unavailable && code !== Code.Unknown && code !== Code.Internal) || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
