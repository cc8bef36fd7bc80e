import http2 from "node:http2";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { AudioStreamRequestSchema } from "../../gen/handshake/v1/room_service_pb.js";
import { AUDIO_STREAM_PATH, GrpcMessageReader, grpcMessage } from "../../src/server/grpc-h2/wire.js";

/** The status a call ended with. */
export interface CallStatus {
  code: number;
  message: string;
}

/** An AudioStream call made by hand over `node:http2`, to control every byte and header. */
export interface RawAudioCall {
  stream: http2.ClientHttp2Stream;
  /** Whole gRPC messages received (5-byte prefix included), in order. */
  messages: Buffer[];
  /** Resolves with the n-th message (1-based count) once it has arrived. */
  message(n: number): Promise<Buffer>;
  /** Resolves with the call's status once it ends (trailers, or CANCELLED-like -1 on a reset). */
  status: Promise<CallStatus>;
  send(init: MessageInitShape<typeof AudioStreamRequestSchema>): void;
  sendRaw(bytes: Uint8Array): void;
}

/** Opens one HTTP/2 connection per call, like a separate device. */
export function connectRaw(port: number): http2.ClientHttp2Session {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  return session;
}

/** Encodes an AudioStreamRequest as one gRPC message. */
export function audioRequest(init: MessageInitShape<typeof AudioStreamRequestSchema>): Buffer {
  return grpcMessage(toBinary(AudioStreamRequestSchema, create(AudioStreamRequestSchema, init)));
}

/** Starts an AudioStream on `session` with `headers` added (authorization, grpc-timeout, …). */
export function rawAudioCall(session: http2.ClientHttp2Session, headers: Record<string, string> = {}): RawAudioCall {
  return rawGrpcCall(session, AUDIO_STREAM_PATH, headers);
}

/** Starts a call of `path` on `session`; `send` encodes AudioStreamRequests, `sendRaw` anything. */
export function rawGrpcCall(session: http2.ClientHttp2Session, path: string, headers: Record<string, string> = {}): RawAudioCall {
  const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
  const messages: Buffer[] = [];
  const waiters: { n: number; resolve: (b: Buffer) => void }[] = [];
  const reader = new GrpcMessageReader((buf, start, end) => {
    messages.push(Buffer.from(buf.subarray(start - 5, end)));
    for (const w of [...waiters]) {
      if (messages.length >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(messages[w.n - 1]!);
      }
    }
  });
  stream.on("data", (chunk: Buffer) => reader.push(chunk));
  const status = new Promise<CallStatus>((resolve) => {
    let fromHeaders: CallStatus | undefined;
    stream.on("response", (h) => {
      if (h["grpc-status"] !== undefined) fromHeaders = { code: Number(h["grpc-status"]), message: decodeURIComponent(String(h["grpc-message"] ?? "")) };
    });
    stream.on("trailers", (t) => resolve({ code: Number(t["grpc-status"]), message: decodeURIComponent(String(t["grpc-message"] ?? "")) }));
    stream.on("close", () => resolve(fromHeaders ?? { code: -1, message: `stream closed with rst code ${stream.rstCode}` }));
    stream.on("error", () => {});
  });
  return {
    stream,
    messages,
    message(n) {
      if (messages.length >= n) return Promise.resolve(messages[n - 1]!);
      return new Promise((resolve) => waiters.push({ n, resolve }));
    },
    status,
    send(init) {
      stream.write(audioRequest(init));
    },
    sendRaw(bytes) {
      stream.write(bytes);
    },
  };
}
