// Reliability end to end: the built Worker in Miniflare, real Redis through redis-rest, and the
// delay proxy between them playing a database 0, 40 or 200 ms away. Exact limits on a cold
// isolate under a burst, one origin fill for a cold stampede, limits held across a Redis outage
// with headers that agree, the failure policies while Redis is down and the time back to Redis
// mode, read-your-writes through the gate, and stats equal to what redis-rest counted.
//
// Tollgate runs with its default Redis budget and breaker here (no `redis.timeout`): the point is
// that the defaults hold where users run it.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { describe, test } from "node:test";

import { startStack } from "./support/stack.mjs";

const policy = {
  // Tiers are the defaults: ANON 30/h per IP, BASIC 100/h, PRO 1000/h.
  routes: [
    { name: "open", path: "/open*", on_redis_failure: "open" },
    { name: "local", path: "/local*", on_redis_failure: "local" },
    { name: "closed", path: "/closed*", on_redis_failure: "closed" },
    {
      name: "quota",
      path: "/quota*",
      on_redis_failure: "local",
      limits: [{ limit: 60, window: "1h", algorithm: "fixed_window" }],
    },
    {
      name: "config",
      path: "/api/config/{name}",
      methods: ["GET"],
      upstream: "/config/{name}",
      cache: { class: "STATIC_CONFIG", key: "path" },
    },
    { name: "config-writes", path: "/api/config/{name}", methods: ["PUT", "PATCH", "DELETE"], upstream: "/config/{name}" },
  ],
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const REQUEST_TIMEOUT_MS = 15_000;

let ipCounter = 0;
/** A caller address never used before in this run (the anonymous tier is 30/h per IP). */
const freshIp = () => {
  ipCounter += 1;
  return `10.${(ipCounter >> 16) & 255}.${(ipCounter >> 8) & 255}.${ipCounter & 255}`;
};

function jwt(stack, claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims });
  const sig = createHmac("sha256", stack.jwtSecret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

const adminHeaders = (stack) => ({ authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" });

async function createKey(stack, subject, tier) {
  const res = await stack.fetch("/_tollgate/keys", { method: "POST", headers: adminHeaders(stack), body: JSON.stringify({ subject, tier }) });
  const text = await res.text();
  assert.equal(res.status, 201, text);
  return JSON.parse(text).key;
}

async function health(stack) {
  const res = await stack.fetch("/_tollgate/health", { headers: adminHeaders(stack) });
  return res.json();
}

/** One request through the Worker; never throws: a failed fetch is `{status: 0, error}`. */
async function call(stack, path, init = {}) {
  const started = Date.now();
  try {
    const res = await stack.fetch(path, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    const text = await res.text();
    const h = (name) => res.headers.get(name);
    return {
      path,
      started,
      at: Date.now(),
      status: res.status,
      text,
      contentType: h("content-type"),
      mode: h("x-tollgate-mode"),
      cache: h("x-cache"),
      limit: h("x-ratelimit-limit"),
      remaining: h("x-ratelimit-remaining"),
      reset: h("x-ratelimit-reset"),
      ratelimit: h("ratelimit"),
      policy: h("ratelimit-policy"),
      retryAfter: h("retry-after"),
    };
  } catch (err) {
    return { path, started, at: Date.now(), status: 0, error: err.message };
  }
}

const tally = (results, key) =>
  results.reduce((acc, r) => ({ ...acc, [r[key] ?? "none"]: (acc[r[key] ?? "none"] ?? 0) + 1 }), {});

/**
 * Starts `request(i)` at `rate` per second until `running()` turns false; resolves with every
 * answer once the last is in.
 */
async function paced(rate, running, request) {
  const results = [];
  const inFlight = new Set();
  const t0 = performance.now();
  for (let i = 0; running(); i += 1) {
    const wait = t0 + (i * 1000) / rate - performance.now();
    if (wait > 0) await sleep(wait);
    if (!running()) break;
    const p = request(i).then((r) => results.push(r));
    inFlight.add(p);
    p.finally(() => inFlight.delete(p));
  }
  await Promise.all(inFlight);
  return results;
}

/**
 * The rate-limit headers of one answer agree with each other and stay inside the window of the
 * binding limit: Retry-After = RateLimit's t on a refusal, X-RateLimit-Reset no sooner than t and
 * no later than one window ahead (and equal to t for a fixed window). Returns a problem or null.
 */
function headerProblem(r, { fixedWindowIds = [] } = {}) {
  if (r.reset === null) return null;
  const now = r.at / 1000;
  const reset = Number(r.reset);
  const m = r.ratelimit?.match(/^"([^"]+)";r=(\d+)(?:;t=(\d+))?/);
  if (!m) return `unreadable RateLimit ${r.ratelimit}`;
  const [, id, , tText] = m;
  const w = r.policy?.match(new RegExp(`"${id.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}";q=\\d+;w=(\\d+)`))?.[1];
  if (!w) return `RateLimit-Policy ${r.policy} does not name the binding limit ${id}`;
  const window = Number(w);
  const ahead = reset - now;
  const where = `${r.path} ${r.status} mode=${r.mode} reset=+${ahead.toFixed(1)}s RateLimit=${r.ratelimit} Retry-After=${r.retryAfter} window=${window}s`;
  if (ahead > window + 1) return `X-RateLimit-Reset points past the window: ${where}`;
  if (tText !== undefined) {
    const t = Number(tText);
    if (t > window + 1) return `RateLimit t points past the window: ${where}`;
    if (ahead < t - 1.5) return `X-RateLimit-Reset is sooner than RateLimit's t: ${where}`;
    if (fixedWindowIds.includes(id) && Math.abs(ahead - t) > 1.5) return `fixed window: X-RateLimit-Reset and t disagree: ${where}`;
    if (r.retryAfter !== null && Math.abs(Number(r.retryAfter) - t) > 1) return `Retry-After and RateLimit's t disagree: ${where}`;
  } else if (r.status === 429) {
    return `a refusal without RateLimit's t: ${where}`;
  }
  if (r.retryAfter !== null && Number(r.retryAfter) > window + 1) return `Retry-After points past the window: ${where}`;
  return null;
}

/** Runs `fn` on a stack of its own (the policy above, `options` on top), stopped afterwards. */
async function withStack(options, fn) {
  const stack = await startStack({ policy, ...options });
  try {
    return await fn(stack);
  } finally {
    await stack.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Exact on a cold isolate, at 0, 40 and 200 ms per round trip.

for (const delayMs of [0, 40, 200]) {
  // Each test on a stack of its own: a fresh isolate, and no breaker state from another test.
  describe(`Redis ${delayMs} ms away`, () => {
    test("150 concurrent requests from a key created just before: exactly 100 × 200 and 50 × 429, all decided in Redis", (t) => withStack({ redisDelayMs: delayMs }, async (stack) => {
      const key = await createKey(stack, `burst-${delayMs}`, "BASIC");
      await stack.origin.reset();
      stack.redisProxy.resetStats();
      const headers = { authorization: `Bearer ${key}`, "cf-connecting-ip": "10.200.0.1" };
      const results = await Promise.all(Array.from({ length: 150 }, () => call(stack, "/anything/burst", { headers })));
      const statuses = tally(results, "status");
      const modes = tally(results, "mode");
      const limits = tally(results, "limit");
      const originHits = (await stack.origin.hits()).total;
      const h = await health(stack);
      const wire = stack.redisProxy.stats();
      t.diagnostic(`statuses ${JSON.stringify(statuses)} modes ${JSON.stringify(modes)} X-RateLimit-Limit ${JSON.stringify(limits)} origin ${originHits} breaker ${h.redis?.breaker} status ${h.status} round trips ${wire.round_trips} commands ${wire.commands}`);
      assert.deepEqual(statuses, { 200: 100, 429: 50 });
      assert.deepEqual(limits, { 100: 150 }, "every answer is limited as the BASIC key, never as anonymous");
      assert.deepEqual(modes, { redis: 150 }, "every answer was decided in Redis");
      assert.equal(originHits, 100, "the origin saw exactly the allowed requests");
      assert.equal(h.redis?.breaker, "closed", "a burst of slow successes does not open the breaker");
      assert.equal(h.status, "ok");
    }));

    test("50 concurrent cold requests for one config key reach the origin once; the next request is a HIT", (t) => withStack({ redisDelayMs: delayMs }, async (stack) => {
      const name = `cold-${delayMs}`;
      await stack.origin.reset();
      const results = await Promise.all(
        Array.from({ length: 50 }, () => call(stack, `/api/config/${name}`, { headers: { "cf-connecting-ip": freshIp() } })),
      );
      const originHits = (await stack.origin.hits()).by_path[`/config/${name}`] ?? 0;
      const next = await call(stack, `/api/config/${name}`, { headers: { "cf-connecting-ip": freshIp() } });
      const h = await health(stack);
      t.diagnostic(`statuses ${JSON.stringify(tally(results, "status"))} x-cache ${JSON.stringify(tally(results, "cache"))} origin ${originHits} next ${next.status} ${next.cache} breaker ${h.redis?.breaker}`);
      assert.deepEqual(tally(results, "status"), { 200: 50 });
      assert.equal(originHits, 1, "one origin fill for the whole stampede");
      assert.equal(next.status, 200);
      assert.equal(next.cache, "HIT");
      assert.equal(h.redis?.breaker, "closed");
    }));

    test("the next GET after a PUT through Tollgate shows the new value", () => withStack({ redisDelayMs: delayMs }, async (stack) => {
      const path = `/api/config/editable-${delayMs}`;
      const ip = { "cf-connecting-ip": "10.201.0.1" };
      const first = await call(stack, path, { headers: ip });
      assert.equal(first.status, 200, first.text);
      const cached = await call(stack, path, { headers: ip });
      assert.equal(cached.cache, "HIT", "the entry is cached before the write");
      const value = { edited: delayMs, at: Date.now() };
      const put = await call(stack, path, {
        method: "PUT",
        headers: { ...ip, "content-type": "application/json" },
        body: JSON.stringify(value),
      });
      assert.equal(put.status, 200, put.text);
      const next = await call(stack, path, { headers: ip });
      assert.equal(next.status, 200);
      const doc = JSON.parse(next.text);
      assert.deepEqual(doc.value, value, `the GET right after the PUT answered ${next.cache} with ${next.text}`);
      assert.equal(doc.version, JSON.parse(first.text).version + 1);
    }));
  });
}

describe("read-your-writes when round trips vary", () => {
  test("the next GET after a PUT shows the new value even when the read travels faster than the write", () => withStack({ redisDelayMs: 0 }, async (stack) => {
    // The write's round trips take 200 ms, the read right after it none: an invalidation that
    // runs after the response would land in Redis after the read.
    const path = "/api/config/editable-race";
    const ip = { "cf-connecting-ip": "10.202.0.1" };
    const first = await call(stack, path, { headers: ip });
    assert.equal(first.status, 200, first.text);
    const cached = await call(stack, path, { headers: ip });
    assert.equal(cached.cache, "HIT", "the entry is cached before the write");
    const value = { edited: "race", at: Date.now() };
    stack.redisProxy.setDelay(200);
    const put = await call(stack, path, {
      method: "PUT",
      headers: { ...ip, "content-type": "application/json" },
      body: JSON.stringify(value),
    });
    stack.redisProxy.setDelay(0);
    assert.equal(put.status, 200, put.text);
    const next = await call(stack, path, { headers: ip });
    assert.equal(next.status, 200);
    assert.deepEqual(JSON.parse(next.text).value, value, `the GET right after the PUT answered ${next.cache} with ${next.text}`);
  }));
});

// ---------------------------------------------------------------------------------------------
// Redis stopping and returning, 40 ms away.

describe("Redis stops and starts mid-run, 40 ms away", () => {
  test("no limit admits more than its quota across the outage, and the headers agree and stay in the window", (t) => withStack({ redisDelayMs: 40 }, async (stack) => {
    // redis-server is saved and stopped, then started on its data: a restart that loses nothing,
    // as Upstash's would. Whatever the fallback admits meanwhile must fit the quota.
    const key = await createKey(stack, "outage-basic", "BASIC");
    const keyHeaders = { authorization: `Bearer ${key}`, "cf-connecting-ip": "10.210.0.1" };
    const warm = await call(stack, "/local/warm", { headers: keyHeaders });
    assert.equal(warm.status, 200, "the key is verified before the outage");
    const token = jwt(stack, { sub: "outage-pro", app_metadata: { tier: "PRO" } });
    const quotaHeaders = { authorization: `Bearer ${token}`, "cf-connecting-ip": "10.210.0.2" };

    let phase = "before";
    const phases = (async () => {
      await sleep(1_500);
      await stack.redis.stop({ keepData: true });
      phase = "outage";
      await sleep(3_000);
      await stack.redis.start();
      phase = "after";
      await sleep(3_500);
      phase = "done";
    })();
    const running = () => phase !== "done";
    const tag = (p) => p.then((r) => ({ ...r, phase }));
    const [quota, basic] = await Promise.all([
      paced(12, running, () => tag(call(stack, "/quota/x", { headers: quotaHeaders }))),
      paced(20, running, () => tag(call(stack, "/local/x", { headers: keyHeaders }))),
      phases,
    ]);

    const quotaAllowed = quota.filter((r) => r.status === 200).length;
    const basicAllowed = basic.filter((r) => r.status === 200).length + 1; // + the warm-up
    const problems = [...quota, ...basic]
      .map((r) => headerProblem(r, { fixedWindowIds: ["route-quota-1h"] }))
      .filter(Boolean);
    const byPhase = (rs) => Object.fromEntries(["before", "outage", "after"].map((p) => [p, { status: tally(rs.filter((r) => r.phase === p), "status"), mode: tally(rs.filter((r) => r.phase === p), "mode") }]));
    t.diagnostic(`quota route (60/h, fixed window): ${quota.length} requests, ${quotaAllowed} allowed; ${JSON.stringify(byPhase(quota))}`);
    t.diagnostic(`BASIC key on a local route (100/h): ${basic.length + 1} requests, ${basicAllowed} allowed; ${JSON.stringify(byPhase(basic))}`);
    const kinds = problems.reduce((acc, p) => ({ ...acc, [p.split(":")[0]]: (acc[p.split(":")[0]] ?? 0) + 1 }), {});
    t.diagnostic(`header problems: ${problems.length} of ${quota.length + basic.length} answers ${JSON.stringify(kinds)}${problems.length ? `; first: ${problems[0]}` : ""}`);
    assert.ok(quota.length > 60 && basic.length > 100, "enough load to exhaust both quotas");
    assert.ok(quotaAllowed <= 60, `the 60/h route admitted ${quotaAllowed}`);
    assert.ok(basicAllowed <= 100, `the 100/h BASIC tier admitted ${basicAllowed}`);
    assert.equal(quota.filter((r) => r.status === 0).length + basic.filter((r) => r.status === 0).length, 0, "every request was answered");
    assert.deepEqual(problems, []);
  }));

  test("while Redis is down open/local routes answer no 5xx and closed routes 503 problem+json; back to Redis mode within 10 s", (t) => withStack({ redisDelayMs: 40 }, async (stack) => {
    const ROUTES = ["open", "local", "closed"];
    const STABLE_MS = 2_000;
    let phase = "before";
    let stoppedAt = 0;
    let returnedAt = 0;
    let restBackAt = 0;
    const seen = [];
    // When a route is back: the answer time of the first Redis-mode answer after which every
    // answer (to requests sent after Redis returned) was decided in Redis too; null while the
    // last answer is not in Redis mode.
    const backAt = (route) => {
      let since = null;
      for (const r of seen) {
        if (r.route !== route || r.started < returnedAt) continue;
        if (r.mode === "redis") since ??= r.at;
        else since = null;
      }
      return since;
    };
    const stable = (route) => {
      const since = backAt(route);
      return since !== null && Date.now() - since >= STABLE_MS;
    };
    const phases = (async () => {
      await sleep(2_500);
      await stack.redis.stop();
      stoppedAt = Date.now();
      phase = "outage";
      await sleep(4_000);
      await stack.redis.start();
      returnedAt = Date.now();
      phase = "after";
      // How long redis-rest itself takes to answer again (part of the stack, not of Tollgate).
      for (;;) {
        try {
          await stack.redisRest.command("PING");
          restBackAt = Date.now();
          break;
        } catch {
          if (Date.now() - returnedAt > 12_000) break;
          await sleep(50);
        }
      }
      const deadline = returnedAt + 12_000 + STABLE_MS;
      while (Date.now() < deadline && !ROUTES.every(stable)) await sleep(100);
      phase = "done";
    })();
    const running = () => phase !== "done";
    const [results] = await Promise.all([
      paced(60, running, async (i) => {
        const route = ROUTES[i % 3];
        const r = { ...(await call(stack, `/${route}/x`, { headers: { "cf-connecting-ip": freshIp() } })), route };
        r.phase = returnedAt && r.started >= returnedAt ? "after" : stoppedAt && r.at >= stoppedAt ? "outage" : "before";
        seen.push(r);
        return r;
      }),
      phases,
    ]);

    const of = (route, p) => results.filter((r) => r.route === route && (!p || r.phase === p));
    const p50 = (rs) => {
      const ms = rs.map((r) => r.at - r.started).sort((a, b) => a - b);
      return ms.length ? ms[Math.floor(ms.length / 2)] : null;
    };
    for (const route of ROUTES) {
      t.diagnostic(`${route}: ${["before", "outage", "after"].map((p) => `${p} status ${JSON.stringify(tally(of(route, p), "status"))} mode ${JSON.stringify(tally(of(route, p), "mode"))} p50 ${p50(of(route, p))} ms`).join("; ")}`);
    }
    const back = Object.fromEntries(ROUTES.map((r) => [r, stable(r) ? (backAt(r) - returnedAt) / 1000 : null]));
    t.diagnostic(`redis-rest answered again ${restBackAt ? ((restBackAt - returnedAt) / 1000).toFixed(2) : "never (12 s)"} s after redis-server returned; back in Redis mode for good (s after Redis returned; null = not within 12 s): ${JSON.stringify(back)}`);

    // Healthy Redis 40 ms away: everything decided in Redis, closed routes serve.
    for (const route of ROUTES) {
      const before = of(route, "before");
      assert.ok(before.length > 0, `${route}: no answer came back in the 2.5 s before Redis stopped`);
      assert.deepEqual(tally(before, "mode"), { redis: before.length }, `${route} before the outage`);
    }
    for (const route of ["open", "local"]) {
      const bad = of(route).filter((r) => r.status === 0 || r.status >= 500);
      assert.deepEqual(bad.map((r) => `${r.phase} ${r.status} ${r.error ?? r.text.slice(0, 80)}`), [], `${route} answered 5xx or nothing`);
    }
    const wrong = of("closed").filter((r) => !(r.status === 503 && r.contentType === "application/problem+json") && !(r.status < 500 && r.mode === "redis"));
    assert.deepEqual(wrong.map((r) => `${r.phase} ${r.status} ${r.mode} ${r.contentType}`), [], "closed answers are Redis decisions or 503 problem+json");
    assert.ok(of("closed", "outage").some((r) => r.status === 503), "the closed route refused while Redis was down");
    assert.ok(of("local", "outage").some((r) => r.mode === "local"), "the local route decided locally while Redis was down");
    for (const route of ROUTES) {
      assert.ok(back[route] !== null && back[route] <= 10, `${route} back in Redis mode for good ${back[route]} s after Redis returned`);
    }
  }));
});

// ---------------------------------------------------------------------------------------------
// Stats equal to the wire.

describe("stats over several flushes", () => {
  test("/_tollgate/stats agrees with redis-rest's own counters within 2% after at least three flushes", (t) => withStack({ redisDelayMs: 40 }, async (stack) => {
    // The flush interval is a constant of the Worker (10 s): ~35 s of mixed traffic gives four.
    const started = Date.now();
    const key = await createKey(stack, "stats-basic", "BASIC");
    // A cold burst first: where the counts went wrong.
    await Promise.all(Array.from({ length: 30 }, () => call(stack, "/anything/cold", { headers: { authorization: `Bearer ${key}` } })));
    let n = 0;
    const mixed = await paced(15, () => Date.now() - started < 35_000, async () => {
      n += 1;
      const ip = { "cf-connecting-ip": freshIp() };
      switch (n % 6) {
        case 0:
          return call(stack, `/api/config/stats-hot`, { headers: ip });
        case 1:
          return call(stack, `/api/config/stats-${n}`, { headers: ip });
        case 2:
          return call(stack, "/local/x", { headers: { authorization: `Bearer ${key}` } });
        case 3:
          return call(stack, "/anything/same", { headers: { "cf-connecting-ip": "10.220.0.1" } });
        case 4:
          return call(stack, "/api/config/stats-hot", {
            method: "PUT",
            headers: { ...ip, "content-type": "application/json" },
            body: JSON.stringify({ n }),
          });
        default:
          return call(stack, "/quota/x", { headers: ip });
      }
    });
    await sleep(500); // background work (invalidations, flushes) lands
    const res = await stack.fetch("/_tollgate/stats", { headers: adminHeaders(stack) });
    const ours = await res.json();
    assert.equal(res.status, 200, JSON.stringify(ours));
    const wire = await stack.redisRest.stats();
    const proxied = stack.redisProxy.stats();
    const flushes = wire.commands.by_name.hsetnx ?? 0;
    const within = (a, b) => Math.abs(a - b) <= 0.02 * Math.max(a, b);
    t.diagnostic(`${mixed.length + 31} requests in ${((Date.now() - started) / 1000).toFixed(1)} s (${JSON.stringify(tally(mixed, "status"))}); flushes ${flushes}`);
    t.diagnostic(`Tollgate stats: ${ours.redis?.requests} REST requests, ${ours.redis?.commands} commands, ${ours.totals?.requests} requests; redis-rest: ${wire.http_requests.total} requests, ${wire.commands.total} commands; proxy: ${proxied.round_trips} round trips, ${proxied.commands} commands`);
    assert.ok(flushes >= 3, `at least three flushes (HSETNX seen ${flushes} times)`);
    assert.ok(within(ours.redis.requests, wire.http_requests.total), `REST requests: Tollgate ${ours.redis.requests}, redis-rest ${wire.http_requests.total}`);
    assert.ok(within(ours.redis.commands, wire.commands.total), `commands: Tollgate ${ours.redis.commands}, redis-rest ${wire.commands.total}`);
  }));
});
