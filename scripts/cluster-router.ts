/**
 * The one generator of the router's configuration: fills deploy/haproxy/haproxy.cfg with a bind
 * line and the node list. Used by test/support/router.ts, scripts/cluster.ts, and from the command
 * line for real machines and deploy/compose.yaml:
 *
 *   node --import tsx scripts/cluster-router.ts --bind :8443 --tls /etc/handshake/router.pem \
 *     --node node1=10.0.0.11:8080 --node node2=10.0.0.12:8080 > /etc/haproxy/haproxy.cfg
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

/** The template, next to the compose file and systemd unit that use it. */
export const ROUTER_TEMPLATE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "deploy", "haproxy", "haproxy.cfg");

/** One Handshake node behind the router. */
export interface RouterNode {
  /** The node's name in the router (NODE_ID); what the `handshake-node` response header says. */
  id: string;
  host: string;
  port: number;
}

/** What the router listens on and where it sends calls. */
export interface RouterConfig {
  /** Listen address: "127.0.0.1" in tests and `npm run cluster`, "" (every address) on a real machine. */
  bindHost: string;
  bindPort: number;
  nodes: RouterNode[];
  /** TLS termination: one PEM file holding the certificate chain, then its private key (HAProxy's `crt`). */
  tlsPemFile?: string;
  /** A runtime API socket (`show table nodes`, `disable server nodes/<id>`); none when unset. */
  statsSocket?: string;
  /** Connections one client address may hold open at the router (default 256, the node's own default). */
  maxConnectionsPerAddress?: number;
  /** Log each call to stdout in HAProxy's HTTP format; off by default (tests read no router log). */
  logToStdout?: boolean;
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
/** Connections per client address at the router unless configured: the node's own default (MAX_CONNECTIONS_PER_ADDRESS). */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 256;

/**
 * What a node behind the router sets: its peer is always the router, so limits per address would
 * count every client as one (and a ban would shut everyone out). The router limits per address.
 */
export const NODE_BEHIND_ROUTER_ENV: Readonly<Record<string, string>> = {
  MAX_CONNECTIONS_PER_ADDRESS: "1000000",
  MAX_STREAMS_PER_ADDRESS: "1000000",
  HEALTH_WATCH_PER_ADDRESS: "10000",
  H2_MAX_RESETS_PER_ADDRESS_PER_SECOND: "1000000",
  // The router multiplexes many clients' streams on each of its HTTP/2 connections: their cancels add up.
  H2_MAX_RESETS_PER_SECOND: "100000",
  ROOM_CREATES_PER_ADDRESS_PER_MINUTE: "1000000",
  ABUSE_BAN_MS: "0",
};

/** The configuration text for `haproxy -f`. Throws on a node name or address HAProxy would misread. */
export function renderRouterConfig(config: RouterConfig, template = readFileSync(ROUTER_TEMPLATE, "utf8")): string {
  if (config.nodes.length === 0) throw new Error("the router needs at least one node");
  const ids = new Set<string>();
  for (const node of config.nodes) {
    if (!NAME.test(node.id)) throw new Error(`node id "${node.id}" must be 1-64 letters, digits, '.', '_' or '-'`);
    if (ids.has(node.id)) throw new Error(`node id "${node.id}" is listed twice`);
    if (/\s/.test(node.host) || node.host === "") throw new Error(`node ${node.id}: host "${node.host}" is not an address`);
    if (!Number.isInteger(node.port) || node.port < 1 || node.port > 65535) throw new Error(`node ${node.id}: port ${node.port} is out of range`);
    ids.add(node.id);
  }
  const perAddress = config.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS;
  if (!Number.isInteger(perAddress) || perAddress < 1) throw new Error(`connections per address must be a positive integer, got ${perAddress}`);
  const address = (host: string, port: number) => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`);
  const tls = config.tlsPemFile ? ` ssl crt ${config.tlsPemFile} alpn h2,http/1.1` : "";
  const values: Record<string, string> = {
    global: config.statsSocket ? `    stats socket ${config.statsSocket} mode 600 level admin` : "",
    log: config.logToStdout ? "    log stdout format raw local0\n    option httplog" : "",
    bind: `    bind ${address(config.bindHost, config.bindPort)}${tls}`,
    max_connections_per_address: String(perAddress),
    servers: config.nodes.map((node) => `    server ${node.id} ${address(node.host, node.port)}`).join("\n"),
  };
  return template.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`${ROUTER_TEMPLATE}: unknown placeholder {{${key}}}`);
    return value;
  });
}

/** HAProxy's `crt` file: the certificate (chain) and then its private key, from their PEM texts. */
export function routerPem(certPem: string, keyPem: string): string {
  return `${certPem.trimEnd()}\n${keyPem.trimEnd()}\n`;
}

/** `name=host:port` → a node. */
function parseNode(text: string): RouterNode {
  const match = /^([^=]+)=(.+):(\d+)$/.exec(text);
  if (!match) throw new Error(`--node must be name=host:port, got "${text}"`);
  return { id: match[1]!, host: match[2]!.replace(/^\[(.*)\]$/, "$1"), port: Number(match[3]) };
}

function main(argv: string[]): void {
  const { values } = parseArgs({
    args: argv,
    options: {
      bind: { type: "string", default: ":8080" },
      node: { type: "string", multiple: true, default: [] },
      tls: { type: "string" },
      "stats-socket": { type: "string" },
      "max-connections-per-address": { type: "string" },
      log: { type: "boolean", default: false },
      out: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      "scripts/cluster-router.ts --bind [host]:port --node name=host:port ... [--tls pem] [--stats-socket path] [--max-connections-per-address N] [--log] [--out file]\n" +
        "  prints (or writes to --out) the router's HAProxy configuration: deploy/haproxy/haproxy.cfg filled in\n",
    );
    return;
  }
  const bind = /^(.*):(\d+)$/.exec(values.bind);
  if (!bind) throw new Error(`--bind must be [host]:port, got "${values.bind}"`);
  const text = renderRouterConfig({
    bindHost: bind[1]!,
    bindPort: Number(bind[2]),
    nodes: values.node.map(parseNode),
    ...(values.tls ? { tlsPemFile: values.tls } : {}),
    ...(values["stats-socket"] ? { statsSocket: values["stats-socket"] } : {}),
    logToStdout: values.log,
    ...(values["max-connections-per-address"] ? { maxConnectionsPerAddress: Number(values["max-connections-per-address"]) } : {}),
  });
  if (values.out) writeFileSync(values.out, text);
  else process.stdout.write(text);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) main(process.argv.slice(2));
