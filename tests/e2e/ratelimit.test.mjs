// Tiered rate limiting end to end: the built Worker in Miniflare, real Redis through redis-rest,
// the demo origin. Exact under concurrency, all-or-nothing across limits, one Redis round trip
// per gated request, none for a blocked caller's repeats, a plan for Redis failing, and no raw
// identifier left in Redis.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { clearOfWindowEdge, startStack } from "./support/stack.mjs";

const ALGORITHMS = ["fixed_window", "sliding_window", "token_bucket", "gcra"];

const policy = {
  tiers: {
    ANON: { limits: [{ limit: 1000, window: "1h" }] },
    BASIC: { limits: [{ limit: 100, window: "1h" }] },
    PRO: { limits: [{ limit: 1000, window: "1h" }] },
    TINY: { limits: [{ limit: 10, window: "1m" }] },
  },
  // Generous timeout: exactness is asserted under load on a 2-core machine, where a slow answer
  // must not tip a route into its local fallback.
  redis: { timeout: "3s", breaker_failures: 2, breaker_cooldown: "300ms" },
  routes: [
    ...ALGORITHMS.map((algorithm) => ({ name: algorithm, path: `/${algorithm}*`, limits: [{ limit: 100, window: "1h", algorithm }] })),
    { name: "chat", path: "/api/chat*", limits: [{ limit: 5, window: "1m" }] },
    { name: "heavy", path: "/heavy*", cost: 4, limits: [{ limit: 10, window: "1m" }] },
    { name: "huge", path: "/huge*", cost: 50 },
    { name: "local", path: "/local*", on_redis_failure: "local" },
    { name: "open", path: "/open*", on_redis_failure: "open" },
    { name: "closed", path: "/closed*", on_redis_failure: "closed" },
  ],
};

const SECRETS = { keys: [], jwts: [], ips: [], subjects: [] };

let stack;
let admin;

const b64url = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
function jwt(claims, secret = stack.jwtSecret) {
  const head = b64url({ alg: "HS256", typ: "JWT" });
  const body = b64url({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims });
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  const token = `${head}.${body}.${sig}`;
  SECRETS.jwts.push(token);
  if (claims.sub) SECRETS.subjects.push(claims.sub);
  return token;
}

function ip(addr) {
  SECRETS.ips.push(addr);
  return { "cf-connecting-ip": addr };
}

async function createKey(subject, tier) {
  const res = await stack.fetch("/_tollgate/keys", {
    method: "POST",
    headers: { ...admin, "content-type": "application/json" },
    body: JSON.stringify({ subject, tier }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  const body = await res.json();
  SECRETS.keys.push(body.key);
  SECRETS.subjects.push(subject);
  return body.key;
}

/** Fires `n` requests at once; returns the responses (bodies read). */
async function burst(n, path, init = {}) {
  const all = await Promise.all(
    Array.from({ length: n }, () => stack.fetch(path, init).then(async (res) => ({ res, text: await res.text() }))),
  );
  return all;
}

const statuses = (results) =>
  results.reduce((acc, { res }) => ({ ...acc, [res.status]: (acc[res.status] ?? 0) + 1 }), {});

/** redis-rest counters minus the background stats flushes (each carries exactly one HSETNX). */
async function gatedRequests() {
  const s = await stack.redisRest.stats();
  return s.http_requests.total - (s.commands.by_name.hsetnx ?? 0);
}

before(async () => {
  stack = await startStack({ policy });
  admin = { authorization: `Bearer ${stack.adminToken}` };
});

after(async () => {
  await stack?.stop();
});

describe("exact under concurrency", () => {
  test("150 concurrent requests from one BASIC key: exactly 100 proxied and 50 refused", async () => {
    const key = await createKey("user-exact-basic", "BASIC");
    await stack.origin.reset();
    const results = await burst(150, "/anything/exact", { headers: { authorization: `Bearer ${key}`, ...ip("10.9.0.1") } });
    assert.deepEqual(statuses(results), { 200: 100, 429: 50 });
    assert.equal((await stack.origin.hits()).total, 100, "the origin saw exactly the allowed requests");
    for (const { res, text } of results.filter(({ res }) => res.status === 429)) {
      assert.equal(res.headers.get("content-type"), "application/problem+json");
      assert.ok(Number(res.headers.get("retry-after")) >= 1);
      assert.equal(res.headers.get("x-ratelimit-remaining"), "0");
      assert.equal(JSON.parse(text).limit, "tier-basic-1h");
    }
  });

  for (const algorithm of ALGORITHMS) {
    test(`${algorithm}: 150 concurrent requests against its limit of 100 let exactly 100 through`, async () => {
      await stack.origin.reset();
      const results = await burst(150, `/${algorithm}/x`, { headers: ip(`10.1.0.${ALGORITHMS.indexOf(algorithm) + 1}`) });
      assert.deepEqual(statuses(results), { 200: 100, 429: 50 });
      assert.equal((await stack.origin.hits()).total, 100);
      const denied = results.find(({ res }) => res.status === 429);
      assert.match(JSON.parse(denied.text).limit, /^route-/);
    });
  }
});

describe("all or nothing", () => {
  test("a request refused by the route limit consumes nothing from the tier limit", async () => {
    const caller = ip("10.2.0.1");
    await clearOfWindowEdge(60_000);
    for (let i = 0; i < 5; i++) {
      const r = await stack.fetch("/api/chat", { headers: caller });
      await r.text();
      assert.equal(r.status, 200);
    }
    const before = await (await stack.fetch(`/_tollgate/limits/ip:10.2.0.1?tier=ANON`, { headers: admin })).json();
    const tierBefore = before.limits.find((l) => l.scope === "tier").remaining;
    for (let i = 0; i < 7; i++) {
      const r = await stack.fetch("/api/chat", { headers: caller });
      await r.text();
      assert.equal(r.status, 429);
    }
    const afterState = await (await stack.fetch(`/_tollgate/limits/ip:10.2.0.1?tier=ANON`, { headers: admin })).json();
    assert.equal(afterState.limits.find((l) => l.scope === "tier").remaining, tierBefore, "denials charged nothing");
    assert.equal(tierBefore, 1000 - 5);
  });

  test("weighted cost: a route costing 4 against a limit of 10 allows two requests, then refuses without charging", async () => {
    const caller = ip("10.2.0.2");
    await clearOfWindowEdge(60_000);
    const codes = [];
    for (let i = 0; i < 4; i++) {
      const r = await stack.fetch("/heavy", { headers: caller });
      await r.text();
      codes.push(r.status);
      if (i === 1) assert.equal(r.headers.get("x-ratelimit-remaining"), "2");
    }
    assert.deepEqual(codes, [200, 200, 429, 429]);
    const state = await (await stack.fetch(`/_tollgate/limits/ip:10.2.0.2?tier=ANON`, { headers: admin })).json();
    assert.equal(state.limits.find((l) => l.scope === "tier").remaining, 1000 - 8);
  });

  test("a cost above the caller's tier limit itself is refused as never fitting, without Retry-After", async () => {
    const token = jwt({ sub: "user-tiny", app_metadata: { tier: "TINY" } });
    const r = await stack.fetch("/huge", { headers: { authorization: `Bearer ${token}` } });
    const body = await r.json();
    assert.equal(r.status, 429);
    assert.equal(r.headers.get("retry-after"), null);
    assert.match(body.detail, /costs more/);
  });
});

describe("headers", () => {
  test("headers follow the binding limit request by request, in the legacy and IETF draft forms", async () => {
    const caller = ip("10.3.0.1");
    await clearOfWindowEdge(60_000);
    let previous = Infinity;
    for (let i = 0; i < 3; i++) {
      const r = await stack.fetch("/api/chat/headers", { headers: caller });
      await r.text();
      const remaining = Number(r.headers.get("x-ratelimit-remaining"));
      assert.equal(remaining, 4 - i);
      assert.ok(remaining < previous);
      previous = remaining;
      assert.equal(r.headers.get("x-ratelimit-limit"), "5");
      const reset = Number(r.headers.get("x-ratelimit-reset"));
      const now = Date.now() / 1000;
      // A sliding window is whole again once the current window and the next have passed.
      assert.ok(reset > now && reset <= now + 121, `reset ${reset} is within two windows`);
      assert.match(r.headers.get("ratelimit-policy"), /"route-chat-1m";q=5;w=60/);
      assert.match(r.headers.get("ratelimit"), new RegExp(`"route-chat-1m";r=${4 - i};t=\\d+`));
    }
  });

  test("a CORS preflight is answered at the edge and consumes nothing", async () => {
    const caller = ip("10.3.0.2");
    await clearOfWindowEdge(60_000);
    for (let i = 0; i < 3; i++) {
      const r = await stack.fetch("/api/chat", {
        method: "OPTIONS",
        headers: { ...caller, origin: "http://localhost:3000", "access-control-request-method": "POST" },
      });
      assert.equal(r.status, 204);
    }
    const r = await stack.fetch("/api/chat", { headers: caller });
    await r.text();
    assert.equal(r.headers.get("x-ratelimit-remaining"), "4");
  });
});

describe("callers", () => {
  test("a JWT caller is limited by the tier its token names, under its hashed subject", async () => {
    const token = jwt({ sub: "user-jwt-pro", app_metadata: { tier: "PRO" } });
    const r = await stack.fetch("/anything/jwt", { headers: { authorization: `Bearer ${token}` } });
    const echo = await r.json();
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-ratelimit-limit"), "1000");
    assert.equal(echo.headers["x-tollgate-tier"], "PRO");
    assert.equal(echo.headers["x-tollgate-caller"], "jwt");
    assert.equal(echo.headers.authorization, `Bearer ${token}`, "the origin can still verify the JWT itself");
  });

  test("bad, expired and foreign-signed JWTs get 401, never silent anonymity", async () => {
    const expired = jwt({ sub: "user-x", exp: Math.floor(Date.now() / 1000) - 3600 });
    const foreign = jwt({ sub: "user-x" }, "another-secret");
    const none = `${b64url({ alg: "none", typ: "JWT" })}.${b64url({ sub: "user-x", exp: 9999999999 })}.x`;
    for (const token of [expired, foreign, none, "a.b.c"]) {
      const r = await stack.fetch("/anything", { headers: { authorization: `Bearer ${token}` } });
      const body = await r.json();
      assert.equal(r.status, 401, token);
      assert.equal(body.type, "https://tollgate.dev/problems/unauthorized");
    }
  });

  test("an unknown or revoked API key gets 401", async () => {
    const key = await createKey("user-revoke", "PRO");
    const ok = await stack.fetch("/anything", { headers: { "x-api-key": key } });
    await ok.text();
    assert.equal(ok.status, 200);
    const list = await (await stack.fetch("/_tollgate/keys", { headers: admin })).json();
    const id = key.split("_")[1];
    assert.ok(list.keys.some((k) => k.id === id));
    assert.ok(list.keys.every((k) => !("key" in k)), "listings never show a key");
    const del = await stack.fetch(`/_tollgate/keys/${id}`, { method: "DELETE", headers: admin });
    assert.equal(del.status, 204);
    const revoked = await stack.fetch("/anything", { headers: { "x-api-key": key } });
    assert.equal(revoked.status, 401);
    const unknown = await stack.fetch("/anything", { headers: { "x-api-key": `tg_${"0".repeat(12)}_${"A".repeat(43)}` } });
    assert.equal(unknown.status, 401);
  });

  test("a per-subject override takes effect without a redeploy, and DELETE resets it", async () => {
    const key = await createKey("user-override", "BASIC");
    const headers = { authorization: `Bearer ${key}` };
    let r = await stack.fetch("/anything", { headers });
    await r.text();
    assert.equal(r.headers.get("x-ratelimit-limit"), "100");
    const put = await stack.fetch("/_tollgate/limits/user-override", {
      method: "PUT",
      headers: { ...admin, "content-type": "application/json" },
      body: JSON.stringify({ tier: "PRO" }),
    });
    assert.equal(put.status, 200, await put.clone().text());
    r = await stack.fetch("/anything", { headers });
    await r.text();
    assert.equal(r.headers.get("x-ratelimit-limit"), "1000");
    const me = await (await stack.fetch("/_tollgate/me", { headers })).json();
    assert.equal(me.tier, "PRO");
    const meAgain = await (await stack.fetch("/_tollgate/me", { headers })).json();
    assert.deepEqual(
      meAgain.limits.map((l) => l.remaining),
      me.limits.map((l) => l.remaining),
      "looking at one's own state consumes nothing",
    );
    const del = await stack.fetch("/_tollgate/limits/user-override", { method: "DELETE", headers: admin });
    assert.equal(del.status, 204);
    r = await stack.fetch("/anything", { headers });
    await r.text();
    assert.equal(r.headers.get("x-ratelimit-limit"), "100");
    assert.equal(r.headers.get("x-ratelimit-remaining"), "99", "counters were reset too");
  });
});

describe("cost in Redis round trips", () => {
  test("each gated request costs at most one HTTP request to redis-rest", async () => {
    const key = await createKey("user-roundtrips", "PRO");
    const headers = { authorization: `Bearer ${key}` };
    // The key verified (by the check that reads its record), then once the plain check: both
    // scripts are in Redis's script cache, and the key's record in the isolate's.
    for (const path of ["/api/chat/warm", "/api/chat/warm"]) await (await stack.fetch(path, { headers })).text();
    await stack.redisRest.resetStats();
    for (let i = 0; i < 4; i++) await (await stack.fetch("/api/chat/x", { headers })).text();
    for (let i = 0; i < 4; i++) await (await stack.fetch("/anything/y", { headers: ip("10.4.0.1") })).text();
    assert.ok((await gatedRequests()) <= 8, `at most 8 REST requests for 8 gated requests`);
    const s = await stack.redisRest.stats();
    assert.equal(s.commands.by_name.evalsha, 8, "one EVALSHA per gated request, all limits in one script");
  });

  test("a key the isolate has never seen costs one HTTP request to redis-rest: its check reads the record", async () => {
    // Another never-seen key first, so the script is in Redis's script cache (its first run
    // anywhere costs one NOSCRIPT answer more).
    const other = await createKey("user-first-trip-warm", "PRO");
    await (await stack.fetch("/anything/warm", { headers: { authorization: `Bearer ${other}` } })).text();
    const key = await createKey("user-first-trip", "PRO");
    const headers = { authorization: `Bearer ${key}` };
    await stack.redisRest.resetStats();
    const first = await stack.fetch("/anything/first", { headers });
    await first.text();
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-ratelimit-limit"), "1000", "limited by the record's tier");
    assert.equal(await gatedRequests(), 1, "one round trip before the origin, the key's verification included");
    const s = await stack.redisRest.stats();
    assert.equal(s.commands.by_name.get ?? 0, 0, "no lookup of its own");
    // Remembered: the next request is the plain check, on the same subject's limits.
    const second = await stack.fetch("/anything/second", { headers });
    await second.text();
    assert.equal(second.headers.get("x-ratelimit-remaining"), "998");
    assert.equal(await gatedRequests(), 2);
  });

  test("a made-up key checked by its record is refused 401 and nothing is charged to any subject", async () => {
    const madeUp = `tg_${"0".repeat(11)}9_${"A".repeat(43)}`;
    const r = await stack.fetch("/anything/forged", { headers: { authorization: `Bearer ${madeUp}`, ...ip("10.4.0.9") } });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get("content-type"), "application/problem+json");
  });

  test("a blocked caller's repeats cost no Redis request at all", async () => {
    const caller = ip("10.4.0.2");
    await clearOfWindowEdge(60_000);
    for (let i = 0; i < 6; i++) await (await stack.fetch("/api/chat", { headers: caller })).text();
    await stack.redisRest.resetStats();
    for (let i = 0; i < 10; i++) {
      const r = await stack.fetch("/api/chat", { headers: caller });
      await r.text();
      assert.equal(r.status, 429);
      assert.ok(r.headers.get("retry-after"));
    }
    assert.equal(await gatedRequests(), 0);
  });
});

describe("privacy", () => {
  test("no raw API key, JWT, IP address or JWT subject appears in any Redis key or value", async () => {
    const keys = [];
    let cursor = "0";
    do {
      const [next, batch] = await stack.redisRest.command("SCAN", cursor, "COUNT", "1000");
      cursor = String(next);
      keys.push(...batch);
    } while (cursor !== "0");
    assert.ok(keys.length > 10, `scanned ${keys.length} keys`);
    const texts = [];
    for (const key of keys) {
      texts.push(key);
      const type = await stack.redisRest.command("TYPE", key);
      if (type === "string") texts.push(String(await stack.redisRest.command("GET", key)));
      else if (type === "hash") texts.push(JSON.stringify(await stack.redisRest.command("HGETALL", key)));
      else if (type === "set") texts.push(JSON.stringify(await stack.redisRest.command("SMEMBERS", key)));
      else if (type === "zset") texts.push(JSON.stringify(await stack.redisRest.command("ZRANGE", key, "0", "-1")));
      else if (type === "list") texts.push(JSON.stringify(await stack.redisRest.command("LRANGE", key, "0", "-1")));
    }
    const haystack = texts.join("\n");
    const secrets = [...SECRETS.keys, ...SECRETS.jwts, ...SECRETS.ips, ...SECRETS.subjects];
    assert.ok(secrets.length > 20);
    for (const secret of secrets) {
      assert.ok(!haystack.includes(secret), `found a raw identifier in Redis: ${secret.slice(0, 24)}…`);
    }
    for (const key of SECRETS.keys) {
      const secretPart = key.split("_").slice(2).join("_");
      assert.ok(!haystack.includes(secretPart), "no part of a key's secret is stored");
    }
  });
});

describe("when Redis fails", () => {
  test("local and open routes keep serving, closed routes answer 503, and all recover by themselves", async () => {
    const caller = ip("10.5.0.1");
    for (const path of ["/local", "/open", "/closed"]) {
      const r = await stack.fetch(path, { headers: caller });
      await r.text();
      assert.equal(r.status, 200);
    }
    await stack.redis.stop();
    try {
      for (let i = 0; i < 5; i++) {
        const local = await stack.fetch("/local", { headers: caller });
        await local.text();
        assert.equal(local.status, 200);
        assert.equal(local.headers.get("x-tollgate-mode"), "local");
        assert.ok(local.headers.get("x-ratelimit-remaining"), "local limits still report");
        const open = await stack.fetch("/open", { headers: caller });
        await open.text();
        assert.equal(open.status, 200);
        assert.equal(open.headers.get("x-tollgate-mode"), "open");
        const closed = await stack.fetch("/closed", { headers: caller });
        const body = await closed.json();
        assert.equal(closed.status, 503);
        assert.equal(body.type, "https://tollgate.dev/problems/limiter-unavailable");
      }
      const health = await (await stack.fetch("/_tollgate/health")).json();
      assert.equal(health.status, "degraded");
    } finally {
      await stack.redis.start();
    }
    let mode;
    for (let i = 0; i < 50 && mode !== "redis"; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const r = await stack.fetch("/closed", { headers: caller });
      await r.text();
      mode = r.headers.get("x-tollgate-mode");
    }
    assert.equal(mode, "redis", "back to Redis without a restart");
  });
});
