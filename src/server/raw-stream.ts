import http2 from "node:http2";
import { createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";
import type http from "node:http";

/**
 * Ends a call from outside its handler, for a reader whose writes no longer drain: HTTP/2 gets
 * RST_STREAM ENHANCE_YOUR_CALM (clients report RESOURCE_EXHAUSTED); HTTP/1.1 loses its socket.
 */
export interface RawStreamControl {
  reset(): void;
}

/** The transport-level control of the current call. */
export const rawStreamKey = createContextKey<RawStreamControl>({ reset: () => {} }, { description: "raw stream control" });

/** Context values for one request, giving handlers a way to reset their own stream. */
export function rawStreamContext(req: http.IncomingMessage | http2.Http2ServerRequest): ContextValues {
  const values = createContextValues();
  values.set(rawStreamKey, {
    reset() {
      if ("stream" in req) {
        if (!req.stream.destroyed) req.stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      } else {
        req.socket.destroy();
      }
    },
  });
  return values;
}
