// Smoke test of the e2e harness without the Worker: redis-server, redis-rest and the demo origin
// start on free loopback ports, answer, survive a Redis outage, and stop.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";

import { WORKER_SCRIPT, startStack } from "./support/stack.mjs";

let stack;

before(async () => {
  stack = await startStack({ worker: false });
});

after(async () => {
  await stack?.stop();
});

test("every part listens on loopback", () => {
  assert.match(stack.redisRest.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.match(stack.origin.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(stack.redis.port > 0);
  assert.ok(stack.redis.pid > 0);
  assert.equal(stack.url, null);
});

test("redis-rest runs commands for the bearer token only", async () => {
  assert.equal(await stack.redisRest.command("SET", "smoke:key", "v1"), "OK");
  assert.equal(await stack.redisRest.command("GET", "smoke:key"), "v1");

  const anonymous = await fetch(stack.redisRest.url, {
    method: "POST",
    body: JSON.stringify(["GET", "smoke:key"]),
  });
  assert.equal(anonymous.status, 401);
  await anonymous.arrayBuffer();

  const health = await fetch(`${stack.redisRest.url}/health`);
  assert.equal(health.status, 200);
  await health.arrayBuffer();
});

test("redis-rest exposes resettable stats", async () => {
  await stack.redisRest.resetStats();
  await stack.redisRest.command("PING");
  const stats = await stack.redisRest.stats();
  assert.equal(typeof stats, "object");
  assert.notEqual(stats, null);
});

test("the origin serves configs and counts hits", async () => {
  await stack.origin.reset();
  const res = await fetch(`${stack.origin.url}/config/app`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("cache-control"), "public, max-age=60");
  const doc = await res.json();
  assert.equal(doc.name, "app");
  assert.equal(doc.version, 1);

  const hits = await stack.origin.hits();
  assert.equal(hits.total, 1);
  assert.equal(hits.by_path["/config/app"], 1);
  assert.deepEqual(hits.by_route, { config: 1, rag: 0, echo: 0 });

  assert.deepEqual(await stack.origin.settings({ fail: "503" }), { delay_ms: 0, fail: "503" });
  const failed = await fetch(`${stack.origin.url}/config/app`);
  assert.equal(failed.status, 503);
  assert.equal(failed.headers.get("content-type"), "application/problem+json");
  await failed.arrayBuffer();
  await stack.origin.reset();
  assert.deepEqual(await stack.origin.settings(), { delay_ms: 0, fail: null });
  assert.equal((await stack.origin.hits()).total, 0);
});

test("redis-server stops and starts again on the same port", async () => {
  const port = stack.redis.port;
  await stack.redis.stop();
  assert.equal(stack.redis.pid, null);
  await assert.rejects(stack.redisRest.command("PING"));

  await stack.redis.start();
  assert.equal(stack.redis.port, port);
  assert.ok(stack.redis.pid > 0);
  // redis-rest may need a moment to reconnect.
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      assert.equal(await stack.redisRest.command("PING"), "PONG");
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
});

test(
  "startStack with the Worker fails clearly until build/index.js exists",
  { skip: existsSync(WORKER_SCRIPT) && "build/index.js exists" },
  async () => {
    await assert.rejects(startStack(), /build\/index\.js not found.*scripts\/build-worker/);
  },
);
