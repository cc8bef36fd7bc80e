import type http2 from "node:http2";

/**
 * Which calls skip connect-node, and why this path exists at all: served here, the audio hot path
 * costs about a third of what connect-node's stream chain costs per relayed frame (async
 * iterables, protobuf decode and re-encode, envelopes, writes), and a panel event is encoded once
 * for all its subscribers instead of once each. Only native gRPC (HTTP/2, binary protobuf) calls
 * of the methods listed take this path; every other call, and every browser call (Connect,
 * gRPC-Web), is served by connect-node under the same rules (call-scope.ts, interceptors.ts).
 */

const GRPC_CONTENT_TYPE = /^application\/grpc(\+proto)?(;|$)/i;

/** True when an HTTP/2 stream's request headers are a native gRPC call (POST, binary protobuf) to one of `paths`. */
export function isFastPathCall(headers: http2.IncomingHttpHeaders, paths: ReadonlySet<string>): boolean {
  const path = headers[":path"];
  if (headers[":method"] !== "POST" || path === undefined || !paths.has(path)) return false;
  const type = headers["content-type"];
  return typeof type === "string" && GRPC_CONTENT_TYPE.test(type);
}
