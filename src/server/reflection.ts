import { create, fromBinary, toBinary, type DescFile, type MessageInitShape, type Registry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import {
  ServerReflection,
  ServerReflectionResponseSchema,
  type ServerReflectionRequest,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  file_grpc_reflection_v1alpha_reflection,
  ServerReflection as ServerReflectionV1alpha,
  ServerReflectionResponseSchema as ServerReflectionResponseSchemaV1alpha,
  type ServerReflectionRequest as ServerReflectionRequestV1alpha,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";

type ResponseInit = MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"];

/** gRPC status NOT_FOUND, as the reflection protocol reports it in an ErrorResponse. */
const GRPC_NOT_FOUND = 5;
const GRPC_UNIMPLEMENTED = 12;

/**
 * Registers gRPC server reflection v1 from protobuf-es descriptors, so `buf curl` and grpcurl
 * work without a schema. Answers list_services, file_by_filename and file_containing_symbol.
 * v1alpha (the same messages in another package, for older grpcurl, Postman and Evans) is served
 * beside it with the same answers; google/rpc/error_details.proto is served too, so a client can
 * decode the details errors carry.
 */
export function registerReflectionRoutes(router: ConnectRouter, registry: Registry, services: string[]): void {
  const listed = services.includes(ServerReflection.typeName) ? [...services, ServerReflectionV1alpha.typeName] : services;
  const files = new Map<string, DescFile>();
  const collect = (file: DescFile) => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    file.dependencies.forEach(collect);
  };
  for (const type of registry) {
    if (type.kind === "service" || type.kind === "message" || type.kind === "enum") collect(type.file);
  }
  collect(file_grpc_reflection_v1alpha_reflection);
  collect(file_google_rpc_error_details);
  // Symbols of the files served here that the server's registry does not hold.
  const fileOfSymbol = (symbol: string): DescFile | undefined => {
    const type = registry.get(symbol) ?? registry.get(symbol.split(".").slice(0, -1).join("."));
    if (type && "file" in type) return type.file;
    const pkg = (file: DescFile) => file.proto.package;
    for (const file of [file_grpc_reflection_v1alpha_reflection, file_google_rpc_error_details]) {
      if (symbol.startsWith(`${pkg(file)}.`) && [...file.messages, ...file.services, ...file.enums].some((t) => symbol === t.typeName || symbol.startsWith(`${t.typeName}.`))) return file;
    }
    return undefined;
  };

  // A file and everything it depends on, each once, dependencies first is not required by clients.
  const withDependencies = (file: DescFile): Uint8Array[] => {
    const seen = new Set<string>();
    const out: Uint8Array[] = [];
    const visit = (f: DescFile) => {
      if (seen.has(f.proto.name)) return;
      seen.add(f.proto.name);
      out.push(toBinary(FileDescriptorProtoSchema, f.proto));
      f.dependencies.forEach(visit);
    };
    visit(file);
    return out;
  };

  const answer = (req: ServerReflectionRequest | ServerReflectionRequestV1alpha): ResponseInit => {
    const request = req.messageRequest;
    switch (request.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: listed.map((name) => ({ name })) } };
      case "fileByFilename": {
        const file = files.get(request.value);
        if (!file) return notFound(`file ${request.value} not found`);
        return { case: "fileDescriptorResponse", value: { fileDescriptorProto: withDependencies(file) } };
      }
      case "fileContainingSymbol": {
        const symbol = request.value.replace(/^\./, "");
        const file = fileOfSymbol(symbol);
        if (!file) return notFound(`symbol ${symbol} not found`);
        return { case: "fileDescriptorResponse", value: { fileDescriptorProto: withDependencies(file) } };
      }
      case "fileContainingExtension":
      case "allExtensionNumbersOfType":
        return { case: "errorResponse", value: { errorCode: GRPC_UNIMPLEMENTED, errorMessage: "extensions are not supported" } };
      case undefined:
        return notFound("empty reflection request");
    }
  };

  router.service(ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield create(ServerReflectionResponseSchema, {
          validHost: req.host,
          originalRequest: req,
          messageResponse: answer(req),
        });
      }
    },
  });
  router.service(ServerReflectionV1alpha, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        // v1alpha's messages are v1's on the wire: the v1 answer, re-read as v1alpha.
        const v1 = create(ServerReflectionResponseSchema, { validHost: req.host, messageResponse: answer(req) });
        const response = fromBinary(ServerReflectionResponseSchemaV1alpha, toBinary(ServerReflectionResponseSchema, v1));
        response.originalRequest = req;
        yield response;
      }
    },
  });
}

function notFound(errorMessage: string): ResponseInit {
  return { case: "errorResponse", value: { errorCode: GRPC_NOT_FOUND, errorMessage } };
}
