import { afterEach, beforeEach } from "vitest";
import { tempDir } from "./store.js";

/**
 * A fresh temporary folder for each test of the calling file: made before each test, removed
 * after it. Call at the top level; the returned function gives the current test's folder.
 */
export function tempDirPerTest(): () => string {
  let current: { dir: string; cleanup: () => Promise<void> } | undefined;
  beforeEach(async () => {
    current = await tempDir();
  });
  afterEach(async () => {
    await current?.cleanup();
    current = undefined;
  });
  return () => {
    if (!current) throw new Error("tempDirPerTest: the folder exists only while a test runs");
    return current.dir;
  };
}
