// A local OTLP/HTTP trace receiver for measuring tracing's cost: the server exports to it when
// started with OTEL_EXPORTER_OTLP_ENDPOINT=<its url>. It takes POST /v1/traces (JSON as the
// exporter sends it, or protobuf), counts requests and spans (JSON only) and answers 200 like a
// collector; nothing is kept. Run alone: `node --import tsx bench/otlp-sink.ts [port]`.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";

/** A running sink. */
export interface OtlpSink {
  /** http://127.0.0.1:<port>, the value for OTEL_EXPORTER_OTLP_ENDPOINT. */
  url: string;
  /** Export requests received so far. */
  readonly requests: number;
  /** Bytes of request bodies received so far. */
  readonly bytes: number;
  /** Names of the spans received in JSON requests, in order (protobuf bodies are counted only). */
  readonly spanNames: readonly string[];
  close(): Promise<void>;
}

type ExportRequest = { resourceSpans?: { scopeSpans?: { spans?: { name?: string }[] }[] }[] };

/** Starts the sink on 127.0.0.1:`port` (0: any free port). */
export async function startOtlpSink(port = 0): Promise<OtlpSink> {
  let requests = 0;
  let bytes = 0;
  const spanNames: string[] = [];
  const server = http.createServer((req, res) => {
    if (req.method !== "POST" || req.url !== "/v1/traces") {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      requests++;
      bytes += body.length;
      const json = (req.headers["content-type"] ?? "").startsWith("application/json");
      if (json) {
        try {
          const request = JSON.parse(body.toString("utf8")) as ExportRequest;
          for (const resource of request.resourceSpans ?? []) for (const scope of resource.scopeSpans ?? []) for (const span of scope.spans ?? []) spanNames.push(span.name ?? "");
        } catch {
          res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ code: 3, message: "body is not an ExportTraceServiceRequest" }));
          return;
        }
      }
      // An empty ExportTraceServiceResponse: everything accepted.
      res.writeHead(200, { "content-type": json ? "application/json" : "application/x-protobuf" }).end(json ? "{}" : "");
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get requests() {
      return requests;
    },
    get bytes() {
      return bytes;
    },
    spanNames,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const sink = await startOtlpSink(Number(process.argv[2] ?? 4318));
  console.log(`OTLP sink on ${sink.url} (OTEL_EXPORTER_OTLP_ENDPOINT=${sink.url})`);
  const report = setInterval(() => console.log(`${sink.requests} requests, ${sink.spanNames.length} spans, ${sink.bytes} bytes`), 5_000);
  process.on("SIGINT", () => {
    clearInterval(report);
    void sink.close().then(() => process.exit(0));
  });
}
