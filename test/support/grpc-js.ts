import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

/** A JoinRoom answer as grpc-js decodes it with `keepCase` (snake_case fields, 64-bit ints as strings). */
export interface GrpcJsJoined {
  user_id: string;
  session_token: string;
  room: { room_id: string; participants: unknown[] };
}

/** One PanelStream answer as grpc-js decodes it (`event.event` names the oneof case). */
export interface GrpcJsPanelAnswer {
  event: { seq: string; event: string };
}

/**
 * RoomService through `@grpc/grpc-js` with the contracts loaded from proto/ at run time, as a
 * client without generated code would; every call carries `headers` (authorization, handshake-room).
 */
export interface GrpcJsRoomClient {
  joinRoom(roomId: string, displayName: string, headers?: Record<string, string>): Promise<GrpcJsJoined>;
  /** Opens PanelStream; the caller reads it and cancels it. */
  panelStream(roomId: string, headers: Record<string, string>): grpc.ClientReadableStream<GrpcJsPanelAnswer>;
  /** A unary GetRoom, for statuses: resolves with the error's code, or 0 on success. */
  getRoomStatus(roomId: string, headers: Record<string, string>): Promise<{ code: number; details: string }>;
  close(): void;
}

type Unary = (req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;
type ServerStream = (req: object, md: grpc.Metadata) => grpc.ClientReadableStream<GrpcJsPanelAnswer>;

let roomServiceClass: grpc.ServiceClientConstructor | undefined;

function loadRoomService(): grpc.ServiceClientConstructor {
  const definition = protoLoader.loadSync("handshake/v1/room_service.proto", {
    keepCase: true,
    includeDirs: [path.resolve("proto")],
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { handshake: { v1: { RoomService: grpc.ServiceClientConstructor } } };
  return pkg.handshake.v1.RoomService;
}

function metadata(headers: Record<string, string>): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [name, value] of Object.entries(headers)) md.set(name, value);
  return md;
}

/** A grpc-js RoomService client of `address` ("host:port"); TLS with `credentials.createSsl(rootCert)`. */
export function grpcJsRoomClient(address: string, credentials = grpc.credentials.createInsecure(), options: grpc.ClientOptions = {}): GrpcJsRoomClient {
  roomServiceClass ??= loadRoomService();
  const client = new roomServiceClass(address, credentials, options) as unknown as grpc.Client & Record<string, Unary & ServerStream>;
  return {
    joinRoom: (roomId, displayName, headers = {}) =>
      new Promise((resolve, reject) =>
        client.JoinRoom!({ room_id: roomId, profile: { display_name: displayName, currency: "GBP", role: "PARTY_ROLE_CLIENT" } }, metadata(headers), (err, res) =>
          err ? reject(err) : resolve(res as GrpcJsJoined),
        ),
      ),
    panelStream: (roomId, headers) => client.PanelStream!({ room_id: roomId, after_seq: 0 }, metadata(headers)),
    getRoomStatus: (roomId, headers) =>
      new Promise((resolve) => client.GetRoom!({ room_id: roomId }, metadata(headers), (err) => resolve(err ? { code: err.code, details: err.details } : { code: 0, details: "" }))),
    close: () => client.close(),
  };
}
