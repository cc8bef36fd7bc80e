import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";

const env = (value?: string) => ({ JWT_SECRET: "x".repeat(32), ...(value === undefined ? {} : { ROOM_LOG_RETENTION: value }) });

describe("ROOM_LOG_RETENTION", () => {
  it("defaults to 7 days and takes a duration with a unit, or milliseconds", () => {
    expect(loadConfig(env()).rooms.logRetentionMs).toBe(7 * 86_400_000);
    expect(loadConfig(env("30d")).rooms.logRetentionMs).toBe(30 * 86_400_000);
    expect(loadConfig(env("12h")).rooms.logRetentionMs).toBe(12 * 3_600_000);
    expect(loadConfig(env("90m")).rooms.logRetentionMs).toBe(90 * 60_000);
    expect(loadConfig(env("45s")).rooms.logRetentionMs).toBe(45_000);
    expect(loadConfig(env("5000")).rooms.logRetentionMs).toBe(5_000);
  });

  it("refuses what is not a duration, or shorter than a second", () => {
    for (const bad of ["7 days", "-1d", "1.5h", "d", "500ms", "99999999d"]) {
      expect(() => loadConfig(env(bad)), bad).toThrow(ConfigError);
    }
  });
});
