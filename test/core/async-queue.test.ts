import { describe, expect, it } from "vitest";
import { createAsyncQueue } from "../../src/core/async-queue.js";

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of it) out.push(item);
  return out;
}

describe("createAsyncQueue", () => {
  it("hands on the initial items, then what is pushed while the reader waits, then ends", async () => {
    const q = createAsyncQueue([1, 2]);
    const read = collect(q.drain());
    q.push(3);
    await Promise.resolve();
    q.push(4);
    q.end();
    q.push(5); // after end: ignored
    expect(await read).toEqual([1, 2, 3, 4]);
    expect(q.closed).toBe(true);
  });

  it("drops what is queued on fail and throws the first error to the reader", async () => {
    const q = createAsyncQueue<string>();
    q.push("a");
    expect(q.size).toBe(1);
    q.fail(new Error("first"));
    q.fail(new Error("second"));
    expect(q.size).toBe(0);
    q.push("b");
    await expect(collect(q.drain())).rejects.toThrow("first");
  });

  it("ends quietly when the signal aborts, after what is already queued", async () => {
    const q = createAsyncQueue<number>();
    const abort = new AbortController();
    const read = collect(q.drain(abort.signal));
    q.push(1);
    abort.abort();
    expect(await read).toEqual([1]);
  });

  it("returns at once for a signal aborted before reading, still yielding the backlog", async () => {
    const q = createAsyncQueue([7]);
    expect(await collect(q.drain(AbortSignal.abort()))).toEqual([7]);
  });

  it("keeps items that are falsy", async () => {
    const q = createAsyncQueue([0, "", undefined]);
    q.end();
    expect(await collect(q.drain())).toEqual([0, "", undefined]);
  });
});
