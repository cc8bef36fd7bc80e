import { once } from "node:events";
import { create, createRegistry, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { anyUnpack, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadRequestSchema, ErrorInfoSchema, file_google_rpc_error_details, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import {
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  type ServerReflectionResponse,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { grpcTransport, startTestApp, testProfile, type TestApp } from "../support/app.js";
import { grpcJsRoomClient } from "../support/grpc-js.js";

const DETAILS = createRegistry(file_google_rpc_error_details);

/** The error a call fails with, as a ConnectError. */
async function failure(call: () => Promise<unknown>): Promise<ConnectError> {
  const outcome = await call().then(
    () => undefined,
    (err: unknown) => ConnectError.from(err),
  );
  if (!outcome) throw new Error("the call should have failed");
  return outcome;
}

describe("errors carry google.rpc details a client can act on", () => {
  let t: TestApp;
  beforeAll(async () => {
    // One new room per minute from this address, so the second is refused with a wait.
    t = await startTestApp({ ROOM_CREATES_PER_ADDRESS_PER_MINUTE: "1" });
  });
  afterAll(async () => {
    await t.close();
  });

  it("INVALID_ARGUMENT from validation: BadRequest naming the field and ErrorInfo, over gRPC and the Connect protocol (connect-node)", async () => {
    for (const transport of [grpcTransport(t.baseUrl), createConnectTransport({ baseUrl: t.baseUrl, httpVersion: "1.1" })]) {
      const room = createClient(RoomService, transport);
      const err = await failure(() => room.joinRoom({ roomId: "no spaces allowed", profile: testProfile() }));
      expect(err.code).toBe(Code.InvalidArgument);
      const [badRequest] = err.findDetails(BadRequestSchema);
      expect(badRequest?.fieldViolations).toEqual([expect.objectContaining({ field: "room_id", reason: "INVALID_FIELD", description: expect.stringContaining("room_id must be") })]);
      expect(err.findDetails(ErrorInfoSchema)).toEqual([expect.objectContaining({ reason: "INVALID_ARGUMENT", domain: "handshake.dev" })]);

      const nested = await failure(() => room.joinRoom({ roomId: "details-room", profile: testProfile({ rates: [{ description: "x", amountMinor: -1n }] }) }));
      expect(nested.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("profile.rates[0].amount_minor");
    }
  });

  it("RESOURCE_EXHAUSTED from a rate limit: RetryInfo with the wait, and ErrorInfo", async () => {
    const room = createClient(RoomService, grpcTransport(t.baseUrl));
    await room.joinRoom({ roomId: "details-first", profile: testProfile() });
    const err = await failure(() => room.joinRoom({ roomId: "details-second", profile: testProfile() }));
    expect(err.code).toBe(Code.ResourceExhausted);
    const [retry] = err.findDetails(RetryInfoSchema);
    const waitMs = Number(retry?.retryDelay?.seconds ?? 0n) * 1000 + (retry?.retryDelay?.nanos ?? 0) / 1e6;
    expect(waitMs).toBeGreaterThan(0);
    expect(waitMs).toBeLessThanOrEqual(60_000);
    expect(err.findDetails(ErrorInfoSchema)).toEqual([expect.objectContaining({ reason: "RESOURCE_EXHAUSTED", domain: "handshake.dev" })]);
  });

  it("on the native gRPC fast path (PanelStream through grpc-js): grpc-status-details-bin holds a google.rpc.Status with ErrorInfo", async () => {
    const client = grpcJsRoomClient(`127.0.0.1:${t.port}`);
    try {
      const stream = client.panelStream("details-first", {});
      stream.on("data", () => {});
      const [err] = (await once(stream, "error")) as [grpc.ServiceError];
      expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
      const [bin] = err.metadata.get("grpc-status-details-bin");
      expect(bin).toBeInstanceOf(Buffer);
      const status = fromBinary(StatusSchema, bin as Buffer);
      expect(status.code).toBe(grpc.status.UNAUTHENTICATED);
      const infos = status.details.map((any) => anyUnpack(any, DETAILS));
      expect(infos).toEqual([expect.objectContaining({ $typeName: "google.rpc.ErrorInfo", reason: "UNAUTHENTICATED", domain: "handshake.dev" })]);
    } finally {
      client.close();
    }
  });
});

describe("gRPC reflection v1alpha (older grpcurl, Postman, Evans) beside v1", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t.close();
  });

  it("answers list_services and file_containing_symbol to a raw grpc-js client of grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", async () => {
    const client = new grpc.Client(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure());
    try {
      const call = client.makeBidiStreamRequest(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        (req: Uint8Array) => Buffer.from(req),
        (bytes: Buffer) => fromBinary(ServerReflectionResponseSchema, bytes),
      );
      const answers: ServerReflectionResponse[] = [];
      call.on("data", (answer: ServerReflectionResponse) => answers.push(answer));
      const ended = once(call, "end");
      const ask = (messageRequest: MessageInitShape<typeof ServerReflectionRequestSchema>) =>
        call.write(toBinary(ServerReflectionRequestSchema, create(ServerReflectionRequestSchema, messageRequest)));
      ask({ messageRequest: { case: "listServices", value: "" } });
      ask({ messageRequest: { case: "fileContainingSymbol", value: "handshake.v1.RoomService" } });
      ask({ messageRequest: { case: "fileContainingSymbol", value: "google.rpc.BadRequest" } });
      call.end();
      await ended;

      expect(answers).toHaveLength(3);
      const [list, room, details] = answers;
      expect(list!.messageResponse.case).toBe("listServicesResponse");
      const names = list!.messageResponse.case === "listServicesResponse" ? list!.messageResponse.value.service.map((s) => s.name) : [];
      expect(names).toEqual(expect.arrayContaining(["handshake.v1.RoomService", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]));
      const fileNames = (answer: ServerReflectionResponse) =>
        answer.messageResponse.case === "fileDescriptorResponse" ? answer.messageResponse.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name) : [];
      expect(fileNames(room!)).toContain("handshake/v1/room_service.proto");
      expect(fileNames(details!)).toEqual(expect.arrayContaining(["google/rpc/error_details.proto", "google/protobuf/duration.proto"]));
      expect(room!.originalRequest?.messageRequest).toEqual({ case: "fileContainingSymbol", value: "handshake.v1.RoomService" });
    } finally {
      client.close();
    }
  });
});
