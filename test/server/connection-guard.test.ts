import { EventEmitter } from "node:events";
import type net from "node:net";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { silentLogger } from "../../src/core/log.js";
import { createConnectionGuard, DEFAULT_CONNECTION_LIMITS, fileDescriptorLimit } from "../../src/server/connection-guard.js";

/** A socket as the guard sees it: an address, close, destroy. */
function fakeSocket(remoteAddress: string): net.Socket & { destroyed: boolean } {
  const socket = new EventEmitter() as net.Socket & { destroyed: boolean };
  Object.assign(socket, { remoteAddress, destroyed: false });
  socket.destroy = () => {
    if (!socket.destroyed) {
      socket.destroyed = true;
      socket.emit("close");
    }
    return socket;
  };
  return socket;
}

describe("connection guard", () => {
  it("caps connections per address and in all, and frees a slot when a socket closes", () => {
    const guard = createConnectionGuard({ ...DEFAULT_CONNECTION_LIMITS, maxConnections: 16, maxConnectionsPerAddress: 2 }, silentLogger);
    const a = [fakeSocket("10.0.0.1"), fakeSocket("10.0.0.1"), fakeSocket("10.0.0.1")];
    expect(a.map((s) => guard.admit(s))).toEqual([true, true, false]);
    expect(a[2]!.destroyed).toBe(true);
    a[0]!.destroy();
    expect(guard.admit(fakeSocket("10.0.0.1"))).toBe(true);
    // Other addresses up to the total.
    const others = Array.from({ length: 20 }, (_, i) => guard.admit(fakeSocket(`10.0.1.${i}`)));
    expect(others.filter(Boolean)).toHaveLength(16 - 2);
    expect(guard.stats()).toMatchObject({ connections: 16, refusedConnections: 1 + 6 });
  });

  it("stays under the file-descriptor limit it reads (ulimit -n), whatever MAX_CONNECTIONS says", () => {
    const fds = fileDescriptorLimit();
    const guard = createConnectionGuard({ ...DEFAULT_CONNECTION_LIMITS, maxConnections: 1_000_000 }, silentLogger);
    if (fds === undefined) expect(guard.maxConnections).toBe(1_000_000);
    else expect(guard.maxConnections).toBeLessThan(fds);
  });

  it("reads its settings from the environment and refuses a headers timeout longer than the request timeout", () => {
    const config = loadConfig({ MAX_CONNECTIONS: "100", H2_MAX_CONCURRENT_STREAMS: "50", HTTP_HEADERS_TIMEOUT_MS: "2000", SPEECH_MAX_PROCESSES: "4" });
    expect(config.connections).toMatchObject({ maxConnections: 100, maxStreamsPerConnection: 50, httpHeadersTimeoutMs: 2000 });
    expect(config.speech.maxProcesses).toBe(4);
    expect(loadConfig({}).connections).toEqual(DEFAULT_CONNECTION_LIMITS);
    expect(() => loadConfig({ HTTP_HEADERS_TIMEOUT_MS: "5000", HTTP_REQUEST_TIMEOUT_MS: "1000" })).toThrow(ConfigError);
    expect(() => loadConfig({ H2_MAX_RESETS_PER_SECOND: "0" })).toThrow(/H2_MAX_RESETS_PER_SECOND/);
  });
});
