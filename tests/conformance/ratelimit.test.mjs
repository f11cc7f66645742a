// Conformance of redis-rest with @upstash/ratelimit (whose Lua scripts carry the Upstash-only
// `#!lua flags=allow-key-locking` shebang), over @upstash/redis with its default settings.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Ratelimit } from "@upstash/ratelimit";
import { Redis } from "@upstash/redis";
import { startStack } from "./support.mjs";

let stack;
let redis;

before(async () => {
  stack = await startStack();
  redis = new Redis({ url: stack.url, token: stack.token });
});

after(async () => {
  await stack?.stop();
});

// Windows long enough that no window boundary falls inside a test run.
const algorithms = {
  fixedWindow: () => Ratelimit.fixedWindow(3, "100 d"),
  slidingWindow: () => Ratelimit.slidingWindow(3, "100 d"),
  tokenBucket: () => Ratelimit.tokenBucket(1, "100 d", 3),
};

for (const [name, limiter] of Object.entries(algorithms)) {
  describe(name, () => {
    test("allows the limit, then denies; getRemaining and resetUsedTokens agree", async () => {
      const rl = new Ratelimit({ redis, limiter: limiter(), prefix: `conf:${name}` });
      const id = `user-${name}`;
      const seen = [];
      for (let i = 0; i < 4; i++) {
        const r = await rl.limit(id);
        await r.pending;
        seen.push([r.success, r.remaining, r.limit]);
      }
      assert.deepEqual(seen.slice(0, 3), [
        [true, 2, 3],
        [true, 1, 3],
        [true, 0, 3],
      ]);
      assert.equal(seen[3][0], false);
      assert.equal(seen[3][1], 0);

      const remaining = await rl.getRemaining(id);
      assert.equal(remaining.remaining, 0);
      assert.equal(remaining.limit, 3);
      assert.ok(remaining.reset > Date.now(), `reset ${remaining.reset}`);

      await rl.resetUsedTokens(id);
      assert.equal((await rl.getRemaining(id)).remaining, 3);
      const again = await rl.limit(id);
      assert.equal(again.success, true);
      assert.equal(again.remaining, 2);
    });

    test("is atomic under concurrent calls", async () => {
      const rl = new Ratelimit({ redis, limiter: limiter(), prefix: `conf:${name}:burst`, ephemeralCache: false });
      const results = await Promise.all(Array.from({ length: 12 }, () => rl.limit("burst")));
      assert.equal(results.filter((r) => r.success).length, 3);
    });

    test("one steady-state limit() costs exactly one HTTP request to redis-rest", async () => {
      const rl = new Ratelimit({ redis, limiter: limiter(), prefix: `conf:${name}:cost` });
      await rl.limit("warm"); // the script is known to Redis (and aliased) from here on
      await stack.resetStats();
      const r = await rl.limit("steady");
      await r.pending;
      assert.equal(r.success, true);
      const stats = await stack.stats();
      assert.deepEqual(
        stats,
        {
          http_requests: { total: 1, single: 0, pipeline: 1, multi_exec: 0, path: 0 },
          commands: { total: 1, by_name: { evalsha: 1 } },
          errors: 0,
        },
        JSON.stringify(stats),
      );
    });
  });
}

describe("rate and identifiers", () => {
  test("a rate consumes several tokens at once", async () => {
    const rl = new Ratelimit({ redis, limiter: Ratelimit.fixedWindow(10, "100 d"), prefix: "conf:rate" });
    const r = await rl.limit("bulk", { rate: 4 });
    assert.equal(r.success, true);
    assert.equal(r.remaining, 6);
    assert.equal((await rl.getRemaining("bulk")).remaining, 6);
  });

  test("unicode identifiers are separate buckets", async () => {
    const rl = new Ratelimit({ redis, limiter: Ratelimit.fixedWindow(1, "100 d"), prefix: "conf:uni" });
    assert.equal((await rl.limit("ユーザー")).success, true);
    assert.equal((await rl.limit("ユーザー")).success, false);
    assert.equal((await rl.limit("user😀")).success, true);
  });
});
