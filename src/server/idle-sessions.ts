import type http2 from "node:http2";

/** How long an HTTP/2 connection may stay open with no call on it, when the configuration says nothing. */
export const DEFAULT_IDLE_CONNECTION_MS = 120_000;

/**
 * Closes `session` (GOAWAY, then the socket) once it has had no open stream for `idleMs`. A
 * client that opens a connection per call and never closes it would otherwise hold a socket and
 * its HTTP/2 state here for as long as it likes; a connection with a live stream (a panel that is
 * quiet for minutes) is never idle. Returns nothing: the timer ends with the session.
 */
export function closeWhenIdle(session: http2.ServerHttp2Session, idleMs: number): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    timer = setTimeout(() => {
      // Graceful: a stream that raced the timer still finishes; new ones go to a new connection.
      if (open === 0 && !session.closed && !session.destroyed) session.close();
    }, idleMs).unref();
  };
  session.on("stream", (stream: http2.ServerHttp2Stream) => {
    open++;
    clearTimeout(timer);
    stream.once("close", () => {
      if (--open === 0 && !session.closed) arm();
    });
  });
  session.once("close", () => clearTimeout(timer));
  arm();
}
