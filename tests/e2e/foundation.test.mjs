// The built Worker as users meet it: proxying to the origin, health, configuration errors that
// name the field, an unreachable origin, and memory mode.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { freePort, startStack } from "./support/stack.mjs";

const problem = async (res) => {
  assert.equal(res.headers.get("content-type"), "application/problem+json");
  return res.json();
};

describe("proxying", () => {
  let stack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => stack?.stop());

  test("a request the gate does not own reaches the origin with method, path, query, headers and body", async () => {
    await stack.origin.reset();
    const res = await stack.fetch("/anything/deep?x=1&y=two", {
      method: "PUT",
      headers: { "content-type": "text/plain", "x-custom": "kept", "x-tollgate-tier": "PRO" },
      body: "hello origin",
    });
    assert.equal(res.status, 200);
    const echo = await res.json();
    assert.equal(echo.method, "PUT");
    assert.equal(echo.path, "/anything/deep");
    assert.match(echo.query, /x=1/);
    assert.equal(echo.body, "hello origin");
    assert.equal(echo.headers["x-custom"], "kept");
    // A client cannot forge the identity headers the origin trusts.
    assert.equal(echo.headers["x-tollgate-tier"], "ANON");
    assert.equal(echo.headers["x-tollgate-caller"], "anonymous");
    assert.match(echo.headers["x-tollgate-subject"], /^[0-9a-f]{64}$/);
    assert.equal((await stack.origin.hits()).total, 1);
    // Every gated response carries the rate-limit headers.
    assert.ok(res.headers.get("x-ratelimit-limit"));
    assert.ok(res.headers.get("ratelimit-policy"));
    assert.match(res.headers.get("server-timing"), /redis;dur=\d+.*origin;dur=\d+/);
  });

  test("the origin's status and headers come back unchanged", async () => {
    const res = await stack.fetch("/missing-thing", { headers: { "x-origin-fail": "418" } });
    assert.equal(res.status, 418);
    await res.text();
  });

  test("health answers publicly with its status only, and in full with the admin token", async () => {
    const pub = await stack.fetch("/_tollgate/health");
    assert.equal(pub.status, 200);
    assert.deepEqual(await pub.json(), { status: "ok" });

    const full = await stack.fetch("/_tollgate/health", { headers: { authorization: `Bearer ${stack.adminToken}` } });
    const body = await full.json();
    assert.equal(body.mode, "redis");
    assert.equal(body.redis.reachable, true);
    assert.equal(typeof body.redis.latency_ms, "number");
    assert.equal(body.redis.breaker, "closed");
    assert.deepEqual(body.policy.tiers.sort(), ["ANON", "BASIC", "PRO"]);
  });

  test("the health endpoint is never proxied", async () => {
    await stack.origin.reset();
    await (await stack.fetch("/_tollgate/health")).text();
    assert.equal((await stack.origin.hits()).total, 0);
  });
});

describe("configuration errors", () => {
  test("an invalid TOLLGATE_POLICY answers 500 problem+json naming the field", async () => {
    const stack = await startStack({
      redis: false,
      vars: { TOLLGATE_POLICY: JSON.stringify({ routes: [{ name: "chat", path: "/api/chat*", limits: [{ limit: 0, window: "1m" }] }] }) },
    });
    try {
      const res = await stack.fetch("/api/chat");
      assert.equal(res.status, 500);
      const body = await problem(res);
      assert.match(body.detail, /routes\[0\]\.limits\[0\]\.limit/);
      assert.equal(body.type, "https://tollgate.dev/problems/invalid-config");
    } finally {
      await stack.stop();
    }
  });

  test("a policy given as an object (a TOML table in wrangler.toml) is read, and its errors named", async () => {
    const stack = await startStack({ redis: false, vars: { TOLLGATE_POLICY: { cache_classes: { SESSION: { ttl: "0s" } } } } });
    try {
      const body = await problem(await stack.fetch("/x"));
      assert.match(body.detail, /cache_classes\.SESSION\.ttl/);
    } finally {
      await stack.stop();
    }
  });

  test("an unknown field is named, so typos are caught", async () => {
    const stack = await startStack({ redis: false, vars: { TOLLGATE_POLICY: JSON.stringify({ tiers: { BASIC: { limts: [] } } }) } });
    try {
      const body = await problem(await stack.fetch("/x"));
      assert.match(body.detail, /limts/);
    } finally {
      await stack.stop();
    }
  });
});

describe("an unreachable origin", () => {
  let stack;
  before(async () => {
    const closed = await freePort();
    stack = await startStack({ origin: false, vars: { ORIGIN_URL: `http://127.0.0.1:${closed}` } });
  });
  after(async () => stack?.stop());

  test("a proxied request gets 502 problem+json", async () => {
    const res = await stack.fetch("/anything");
    assert.equal(res.status, 502);
    const body = await problem(res);
    assert.equal(body.status, 502);
    assert.equal(body.type, "https://tollgate.dev/problems/origin-unreachable");
    assert.ok(res.headers.get("x-ratelimit-limit"), "rate-limit headers on the error too");
  });

  test("a never-cached key on a cacheable route gets 502 problem+json", async () => {
    const res = await stack.fetch("/api/config/never-cached");
    assert.equal(res.status, 502);
    await problem(res);
  });
});

describe("memory mode", () => {
  let stack;
  before(async () => {
    stack = await startStack({ redis: false });
  });
  after(async () => stack?.stop());

  test("without Redis the Worker still proxies and limits, and says so", async () => {
    const res = await stack.fetch("/anything");
    assert.equal(res.status, 200);
    await res.text();
    assert.equal(res.headers.get("x-tollgate-mode"), "memory");
    assert.ok(res.headers.get("x-ratelimit-remaining"));
    const health = await (await stack.fetch("/_tollgate/health", { headers: { authorization: `Bearer ${stack.adminToken}` } })).json();
    assert.equal(health.mode, "memory");
    assert.equal(health.redis.configured, false);
    assert.equal(health.redis.reason, "REDIS_ENABLED=false");
  });
});
