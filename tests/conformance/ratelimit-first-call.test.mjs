// On a fresh server, the first limit() of a script pays EVALSHA → NOSCRIPT → EVAL (two HTTP
// requests); redis-rest's SHA aliasing makes every later call a single EVALSHA request, even
// though the scripts carry a shebang flag stock Redis rejects.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
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

test("first call two requests, then one per call", async () => {
  const rl = new Ratelimit({ redis, limiter: Ratelimit.slidingWindow(100, "100 d"), prefix: "first" });
  const costs = [];
  for (let i = 0; i < 4; i++) {
    await stack.resetStats();
    const r = await rl.limit("id");
    await r.pending;
    assert.equal(r.success, true);
    const s = await stack.stats();
    costs.push([s.http_requests.total, s.commands.by_name]);
  }
  assert.deepEqual(costs, [
    [2, { evalsha: 1, eval: 1 }],
    [1, { evalsha: 1 }],
    [1, { evalsha: 1 }],
    [1, { evalsha: 1 }],
  ]);
});
