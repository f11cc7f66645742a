// Cache-aside end to end: the built Worker in Miniflare, real Redis through redis-rest, the demo
// origin counting its hits. Stampedes, round-trip costs, stale serving, invalidation, TTLs.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { startStack } from "./support/stack.mjs";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const policy = {
  tiers: {
    ANON: { limits: [{ limit: 100000, window: "1h" }] },
    BASIC: { limits: [{ limit: 100000, window: "1h" }] },
    PRO: { limits: [{ limit: 100000, window: "1h" }] },
  },
  redis: { timeout: "3s" },
  cache: { isolate_ttl: "300ms", lock_wait: "3s", origin_timeout: "1s" },
  cache_classes: {
    STATIC_CONFIG: { ttl: "24h", jitter: 0.1, stale: "24h" },
    SHORT: { ttl: "1s", jitter: 0, stale: "1h" },
  },
  routes: [
    {
      name: "config",
      path: "/api/config/{name}",
      methods: ["GET", "HEAD"],
      upstream: "/config/{name}",
      cache: { class: "STATIC_CONFIG", key: "path", scope: "global", tags: ["config"], warm: ["app", "features"] },
    },
    {
      name: "rag",
      path: "/api/rag/context",
      methods: ["POST"],
      upstream: "/rag/context",
      cache: { class: "FREQUENT_DATA", key: "json_body", scope: "global", tags: ["rag"] },
    },
    {
      name: "flags",
      path: "/api/flags/{name}",
      methods: ["GET"],
      upstream: "/config/{name}",
      cache: { class: "SHORT", key: "path", scope: "global" },
    },
    {
      name: "profile",
      path: "/api/profile",
      methods: ["GET"],
      upstream: "/profile",
      cache: { class: "SESSION", key: "path", scope: "caller" },
    },
    { name: "config-writes", path: "/api/config/{name}", methods: ["PUT", "PATCH", "DELETE"], upstream: "/config/{name}" },
  ],
};

let stack;
let admin;

const get = async (path, init = {}) => {
  const res = await stack.fetch(path, init);
  return { res, text: await res.text() };
};

const hits = async (path) => (await stack.origin.hits()).by_path[path] ?? 0;

/** redis-rest requests minus the background stats flushes (each carries exactly one HSETNX). */
async function gatedRequests() {
  const s = await stack.redisRest.stats();
  return s.http_requests.total - (s.commands.by_name.hsetnx ?? 0);
}

async function invalidate(body) {
  const res = await stack.fetch("/_tollgate/invalidate", {
    method: "POST",
    headers: { ...admin, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

before(async () => {
  stack = await startStack({ policy });
  admin = { authorization: `Bearer ${stack.adminToken}` };
});

after(async () => {
  await stack?.stop();
});

describe("stampede protection", () => {
  test("50 concurrent requests for a cold key reach the origin exactly once and all get the same body", async () => {
    await stack.origin.reset();
    await stack.origin.settings({ delay_ms: 150 });
    try {
      const results = await Promise.all(Array.from({ length: 50 }, () => get("/api/config/stampede")));
      assert.ok(results.every(({ res }) => res.status === 200));
      assert.equal(await hits("/config/stampede"), 1, "the origin was called once");
      assert.equal(new Set(results.map(({ text }) => text)).size, 1, "every caller got the same body");
      const statuses = results.map(({ res }) => res.headers.get("x-cache"));
      assert.ok(statuses.includes("MISS"));
    } finally {
      await stack.origin.settings({ delay_ms: 0 });
    }
  });
});

describe("round trips", () => {
  test("a Redis hit costs one request including the rate-limit check; an in-isolate hit costs none", async () => {
    const first = await get("/api/config/roundtrip");
    assert.equal(first.res.headers.get("x-cache"), "MISS");
    await sleep(400); // past the in-isolate lifetime
    await stack.redisRest.resetStats();
    const fromRedis = await get("/api/config/roundtrip");
    assert.equal(fromRedis.res.headers.get("x-cache"), "HIT");
    assert.equal(await gatedRequests(), 1);
    const s = await stack.redisRest.stats();
    assert.equal(s.commands.by_name.evalsha, 1);
    assert.equal(s.commands.by_name.mget ?? 0, 0, "the cache read runs inside the check script: one command");

    await stack.redisRest.resetStats();
    const fromIsolate = await get("/api/config/roundtrip");
    assert.equal(fromIsolate.res.headers.get("x-cache"), "HIT");
    assert.equal(await gatedRequests(), 0);
    assert.ok(fromIsolate.res.headers.get("x-ratelimit-limit"), "still reports the caller's limits");
    assert.equal(fromIsolate.text, first.text);
  });

  test("the same question in another key order or spacing is answered from the same entry", async () => {
    await stack.origin.reset();
    const a = await get("/api/rag/context", { method: "POST", body: '{"query":"what is tollgate","top_k":2}' });
    const b = await get("/api/rag/context", { method: "POST", body: '{ "top_k": 2,\n  "query": "what is tollgate" }' });
    assert.equal(a.res.headers.get("x-cache"), "MISS");
    assert.equal(b.res.headers.get("x-cache"), "HIT");
    assert.equal(a.text, b.text);
    assert.equal(await hits("/rag/context"), 1);
  });

  test("an invalid JSON body on a body-keyed route is 400 problem+json", async () => {
    const r = await get("/api/rag/context", { method: "POST", body: "{not json" });
    assert.equal(r.res.status, 400);
    assert.equal(r.res.headers.get("content-type"), "application/problem+json");
  });
});

describe("HTTP for frontends", () => {
  test("ETag and If-None-Match give 304; Age, Cache-Control and exposed headers are set", async () => {
    const first = await get("/api/config/etag", { headers: { origin: "http://localhost:3000" } });
    const etag = first.res.headers.get("etag");
    assert.match(etag, /^"[0-9a-f]+"$/);
    assert.match(first.res.headers.get("cache-control"), /public, max-age=\d+/);
    // The default allow-list is ["*"]: a literal *, never the caller's Origin reflected.
    assert.equal(first.res.headers.get("access-control-allow-origin"), "*");
    assert.match(first.res.headers.get("access-control-expose-headers"), /X-Cache/);
    const again = await get("/api/config/etag", { headers: { "if-none-match": etag } });
    assert.equal(again.res.status, 304);
    assert.equal(again.text, "");
    assert.ok(Number(again.res.headers.get("age")) >= 0);
  });
});

describe("stale data and a failing origin", () => {
  test("past freshness a stale copy is served at once and refreshed in the background", async () => {
    await stack.origin.reset();
    const a = await get("/api/flags/swr");
    assert.equal(a.res.headers.get("x-cache"), "MISS");
    await sleep(1200);
    const b = await get("/api/flags/swr");
    assert.equal(b.res.headers.get("x-cache"), "STALE");
    let refreshed = false;
    for (let i = 0; i < 30 && !refreshed; i++) {
      await sleep(100);
      refreshed = (await hits("/config/swr")) === 2;
    }
    assert.ok(refreshed, "the background refresh reached the origin");
  });

  test("origin down: a stale entry is served with X-Cache STALE; a never-cached key gets 502", async () => {
    await get("/api/flags/down");
    await sleep(1200);
    await stack.origin.settings({ fail: "503" });
    try {
      const stale = await get("/api/flags/down");
      assert.equal(stale.res.status, 200);
      assert.equal(stale.res.headers.get("x-cache"), "STALE");
      const never = await get("/api/flags/never-cached");
      assert.equal(never.res.status, 502);
      assert.equal(never.res.headers.get("content-type"), "application/problem+json");
    } finally {
      await stack.origin.settings({ fail: null });
    }
  });

  test("an origin slower than its timeout gives 504 for a never-cached key", async () => {
    await stack.origin.settings({ delay_ms: 3000 });
    try {
      const r = await get("/api/config/too-slow");
      assert.equal(r.res.status, 504);
    } finally {
      await stack.origin.settings({ delay_ms: 0 });
    }
  });

  test("errors are never cached", async () => {
    await stack.origin.settings({ fail: "500" });
    const bad = await get("/api/config/flaky");
    assert.equal(bad.res.status, 502);
    await stack.origin.settings({ fail: null });
    const good = await get("/api/config/flaky");
    assert.equal(good.res.status, 200);
    assert.equal(good.res.headers.get("x-cache"), "MISS");
  });
});

describe("invalidation", () => {
  const cold = async (name) => {
    await get(`/api/config/${name}`);
    await sleep(350); // let the in-isolate copy expire so the next read goes to Redis
  };
  const expectMiss = async (name) => {
    const before = await hits(`/config/${name}`);
    const r = await get(`/api/config/${name}`);
    assert.equal(r.res.headers.get("x-cache"), "MISS", name);
    assert.equal(await hits(`/config/${name}`), before + 1, `the origin saw ${name}`);
  };

  test("by key", async () => {
    await cold("inv-key");
    const done = await invalidate({ route: "config", key: "inv-key" });
    assert.equal(done.kind, "key");
    assert.equal(done.deleted, 1);
    await expectMiss("inv-key");
  });

  test("by pattern, with literal glob characters escaped", async () => {
    await cold("pat-a");
    await cold("pat-b");
    await cold("other");
    const done = await invalidate({ route: "config", pattern: "pat-*" });
    assert.equal(done.deleted, 2);
    await expectMiss("pat-a");
    await expectMiss("pat-b");
    const other = await get("/api/config/other");
    assert.equal(other.res.headers.get("x-cache"), "HIT");
  });

  test("by tag", async () => {
    await cold("tag-a");
    const done = await invalidate({ tag: "config" });
    assert.ok(done.deleted >= 1);
    await expectMiss("tag-a");
  });

  test("a whole namespace at once", async () => {
    await cold("ns-a");
    await cold("ns-b");
    const done = await invalidate({ namespace: "config" });
    assert.equal(done.kind, "namespace");
    await expectMiss("ns-a");
    await expectMiss("ns-b");
  });

  test("a PUT through Tollgate invalidates the cached GET, and the next GET shows the new value", async () => {
    const before = JSON.parse((await get("/api/config/editable")).text);
    await sleep(350);
    const put = await get("/api/config/editable", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ theme: "light", edited: true }),
    });
    assert.equal(put.res.status, 200);
    let after;
    for (let i = 0; i < 20; i++) {
      after = JSON.parse((await get("/api/config/editable")).text);
      if (after.version !== before.version) break;
      await sleep(50);
    }
    assert.equal(after.version, before.version + 1);
    assert.deepEqual(after.value, { theme: "light", edited: true });
  });

  test("warming fills the configured hot keys", async () => {
    await invalidate({ namespace: "config" });
    const res = await stack.fetch("/_tollgate/warm", { method: "POST", headers: admin });
    const body = await res.json();
    assert.equal(res.status, 200);
    assert.deepEqual(body.warmed.map((w) => w.key).sort(), ["app", "features"]);
    await sleep(350);
    const r = await get("/api/config/features");
    assert.equal(r.res.headers.get("x-cache"), "HIT");
  });
});

describe("scope", () => {
  const b64url = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const bearer = (sub) => {
    const head = b64url({ alg: "HS256", typ: "JWT" });
    const body = b64url({ sub, exp: Math.floor(Date.now() / 1000) + 3600 });
    const sig = createHmac("sha256", stack.jwtSecret).update(`${head}.${body}`).digest("base64url");
    return `Bearer ${head}.${body}.${sig}`;
  };

  test("two callers never see each other's per-caller entries", async () => {
    const alice = { "cf-connecting-ip": "10.7.0.1", authorization: bearer("alice") };
    const bob = { "cf-connecting-ip": "10.7.0.1", authorization: bearer("bob") };
    const a1 = await get("/api/profile", { headers: alice });
    const b1 = await get("/api/profile", { headers: bob });
    const a2 = await get("/api/profile", { headers: alice });
    assert.equal(a1.res.headers.get("x-cache"), "MISS");
    assert.equal(b1.res.headers.get("x-cache"), "MISS", "Bob does not get Alice's entry");
    assert.equal(a2.res.headers.get("x-cache"), "HIT");
    const subjectA = JSON.parse(a1.text).headers["x-tollgate-subject"];
    const subjectB = JSON.parse(b1.text).headers["x-tollgate-subject"];
    assert.notEqual(subjectA, subjectB);
    assert.equal(JSON.parse(a2.text).headers["x-tollgate-subject"], subjectA);
    assert.match(a1.res.headers.get("cache-control"), /^private/);
  });

  test("anonymous callers bypass per-caller entries: an IP is not a subject", async () => {
    const before = await hits("/profile");
    const one = await get("/api/profile", { headers: { "cf-connecting-ip": "10.7.0.9", cookie: "sid=one" } });
    const two = await get("/api/profile", { headers: { "cf-connecting-ip": "10.7.0.9", cookie: "sid=two" } });
    assert.equal(one.res.status, 200);
    assert.equal(JSON.parse(two.text).headers.cookie, "sid=two");
    assert.notEqual(two.res.headers.get("x-cache"), "HIT");
    assert.equal(await hits("/profile") - before, 2);
  });
});

describe("TTLs", () => {
  test("1000 entries of one class spread across the jitter range, and no Tollgate key lives forever", async () => {
    const names = Array.from({ length: 1000 }, (_, i) => `ttl-${i}`);
    for (let i = 0; i < names.length; i += 50) {
      await Promise.all(names.slice(i, i + 50).map((n) => get(`/api/config/${n}`)));
    }
    const keys = [];
    let cursor = "0";
    do {
      const [next, batch] = await stack.redisRest.command("SCAN", cursor, "MATCH", "*:cache:v1:*", "COUNT", "1000");
      cursor = String(next);
      keys.push(...batch);
    } while (cursor !== "0");
    const entryKeys = keys.filter((k) => k.includes("{c:config}:e:"));
    assert.ok(entryKeys.length >= 1000, `${entryKeys.length} entries`);
    const ttls = [];
    for (const k of entryKeys) ttls.push(Number(await stack.redisRest.command("PTTL", k)));
    // Expiry = fresh TTL (24h ± 10%) + the 24h stale window.
    const day = 24 * 3600 * 1000;
    const lo = day * 0.9 + day;
    const hi = day * 1.1 + day;
    assert.ok(ttls.every((t) => t > lo - 60_000 && t <= hi), "every TTL inside the jitter range");
    const buckets = new Array(10).fill(0);
    for (const t of ttls) buckets[Math.min(9, Math.floor(((t - lo) / (hi - lo)) * 10))]++;
    assert.ok(buckets.every((n) => n > 40), `spread across the range: ${buckets}`);

    const all = [];
    cursor = "0";
    do {
      const [next, batch] = await stack.redisRest.command("SCAN", cursor, "COUNT", "1000");
      cursor = String(next);
      all.push(...batch);
    } while (cursor !== "0");
    const forever = [];
    for (const k of all) {
      // API keys are the one documented exception: they live until revoked.
      if (k.includes(":auth:v1:")) continue;
      if (Number(await stack.redisRest.command("PTTL", k)) === -1) forever.push(k);
    }
    assert.deepEqual(forever, []);
  });
});
