import { create, toBinary, type DescFile, type MessageInitShape, type Registry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import {
  ServerReflection,
  ServerReflectionResponseSchema,
  type ServerReflectionRequest,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";

type ResponseInit = MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"];

/** gRPC status NOT_FOUND, as the reflection protocol reports it in an ErrorResponse. */
const GRPC_NOT_FOUND = 5;
const GRPC_UNIMPLEMENTED = 12;

/**
 * Registers gRPC server reflection v1 from protobuf-es descriptors, so `buf curl` and grpcurl
 * work without a schema. Answers list_services, file_by_filename and file_containing_symbol.
 */
export function registerReflectionRoutes(router: ConnectRouter, registry: Registry, services: string[]): void {
  const files = new Map<string, DescFile>();
  const collect = (file: DescFile) => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    file.dependencies.forEach(collect);
  };
  for (const type of registry) {
    if (type.kind === "service" || type.kind === "message" || type.kind === "enum") collect(type.file);
  }

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

  const answer = (req: ServerReflectionRequest): ResponseInit => {
    const request = req.messageRequest;
    switch (request.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: services.map((name) => ({ name })) } };
      case "fileByFilename": {
        const file = files.get(request.value);
        if (!file) return notFound(`file ${request.value} not found`);
        return { case: "fileDescriptorResponse", value: { fileDescriptorProto: withDependencies(file) } };
      }
      case "fileContainingSymbol": {
        const symbol = request.value.replace(/^\./, "");
        const type = registry.get(symbol) ?? registry.get(symbol.split(".").slice(0, -1).join("."));
        if (!type || !("file" in type)) return notFound(`symbol ${symbol} not found`);
        return { case: "fileDescriptorResponse", value: { fileDescriptorProto: withDependencies(type.file) } };
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
}

function notFound(errorMessage: string): ResponseInit {
  return { case: "errorResponse", value: { errorCode: GRPC_NOT_FOUND, errorMessage } };
}
