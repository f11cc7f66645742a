// The `faults` scenario: a steady load through Tollgate (its default Redis budget and breaker, no
// `redis.timeout`) while Redis is stopped and started again, while redis-rest is 200 ms away
// (the delay proxy of the e2e harness between the Worker and redis-rest), and while the origin
// flaps. It counts, per phase and per failure policy, the answers by status and by
// `X-Tollgate-Mode`, the 5xx Tollgate made itself (not the origin's, passed through), the time
// back to Redis mode, and for callers with a quota whether they were allowed more than it.
//
// Its own stack, on 127.0.0.1 only: redis-server → redis-rest → delay proxy → Tollgate on workerd
// → demo-origin. Bounded: about 35 s of load at `rate` requests per second, at most `maxInFlight`
// at once (requests that would exceed it are counted as skipped, not queued).

import { createHash, randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import path from "node:path";

import { HOST, Proc, freePort, redisCommand, sleep, waitUntil } from "./proc.mjs";
import { startOrigin, startRedisRest, startWorkerd } from "./stack.mjs";

const QUOTA = 100;
const QUOTA_CALLERS = 4;
const ROUTES = ["open", "local", "closed"];
const REQUEST_TIMEOUT_MS = 10_000;
const BACK_TIMEOUT_MS = 15_000;
/** Back in Redis mode = every answer decided in Redis for this long. */
const STABLE_MS = 2_000;

/** The policy: the default tiers and Redis settings; one route per failure policy, a route with
 * a fixed-window quota per caller, and the cached config route. */
export const FAULTS_POLICY = {
  tiers: {
    // Fresh callers per request, and a few callers on the quota route: the tier must not bind.
    ANON: { limits: [{ limit: 100_000_000, window: "1h" }] },
    BASIC: { limits: [{ limit: 100, window: "1h" }] },
    PRO: { limits: [{ limit: 1000, window: "1h" }] },
  },
  routes: [
    { name: "open", path: "/open*", on_redis_failure: "open" },
    { name: "local", path: "/local*", on_redis_failure: "local" },
    { name: "closed", path: "/closed*", on_redis_failure: "closed" },
    {
      name: "quota",
      path: "/quota*",
      on_redis_failure: "local",
      limits: [{ limit: QUOTA, window: "1h", algorithm: "fixed_window" }],
    },
    {
      name: "config",
      path: "/api/config/{name}",
      methods: ["GET"],
      upstream: "/config/{name}",
      cache: { class: "STATIC_CONFIG", key: "path" },
      on_redis_failure: "local",
    },
  ],
};

function spawnRedis(port, dir) {
  return new Proc("redis-server (faults)", "redis-server", [
    "--bind", HOST, "--port", String(port), "--save", "", "--appendonly", "no",
    "--dir", dir, "--protected-mode", "yes", "--daemonize", "no",
  ], { logFile: path.join(dir, "redis-server.log") });
}

async function startRedisOn(port, dir) {
  const proc = spawnRedis(port, dir);
  await waitUntil(proc, "redis-server", async () => (await redisCommand(port, "PING")) === "+PONG");
  return proc;
}

export async function startProxy(root, dir, target) {
  const proc = new Proc("delay-proxy", process.execPath, [
    path.join(root, "tests/e2e/support/delay-proxy.mjs"), "--target", target, "--listen", `${HOST}:0`,
  ], { logFile: path.join(dir, "delay-proxy.log") });
  let url = null;
  await waitUntil(proc, "delay-proxy", async () => {
    url ??= proc.stdoutHead.match(/listening on (http:\/\/\S+)/)?.[1] ?? null;
    return url !== null;
  });
  const control = async (pathname, body) => {
    const res = await fetch(`${url}/_proxy/${pathname}`, { method: body === undefined ? "GET" : "POST", body: body && JSON.stringify(body) });
    if (!res.ok) throw new Error(`delay proxy ${pathname}: HTTP ${res.status} ${await res.text()}`);
    return res.json();
  };
  return { url, proc, settings: (s) => control("settings", s), stats: () => control("stats") };
}

const pct = (xs, p) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
};

/**
 * Runs the scenario; resolves with its figures (also for the report).
 *
 * @param {object} o
 * @param {string} o.root
 * @param {string} o.tmp     a scratch directory
 * @param {object[]} o.modules  the Tollgate build's workerd modules
 * @param {(…args) => void} o.log
 * @param {number} [o.rate=300]        requests per second
 * @param {number} [o.maxInFlight=96]
 * @param {number} [o.phaseSeconds=5]  length of the fixed phases
 */
export async function runFaults({ root, tmp, modules, log, rate = 300, maxInFlight = 96, phaseSeconds = 5 }) {
  const dir = path.join(tmp, "faults");
  mkdirSync(dir, { recursive: true });
  const procs = [];
  try {
    const redisPort = await freePort();
    let redis = await startRedisOn(redisPort, dir);
    procs.push(() => redis);
    const rest = await startRedisRest(root, dir, redisPort);
    procs.push(() => rest.proc);
    const proxy = await startProxy(root, dir, rest.url);
    procs.push(() => proxy.proc);
    const origin = await startOrigin(root, dir);
    procs.push(() => origin.proc);
    const adminToken = randomBytes(16).toString("hex");
    const worker = await startWorkerd({
      root,
      name: "tollgate-faults",
      dir: path.join(dir, "workerd"),
      modules,
      bindings: {
        UPSTASH_REDIS_REST_URL: proxy.url,
        UPSTASH_REDIS_REST_TOKEN: rest.token,
        ORIGIN_URL: origin.url,
        TOLLGATE_ADMIN_TOKEN: adminToken,
        TOLLGATE_POLICY: JSON.stringify(FAULTS_POLICY),
      },
      readyPath: "/_tollgate/health",
    });
    procs.push(() => worker.proc);
    log(`faults: redis-server :${redisPort} → redis-rest ${rest.url} → delay proxy ${proxy.url} → Tollgate ${worker.url} → origin ${origin.url}`);

    // Warm the hot config names (the cached route must be served through the faults).
    const hot = 8;
    for (let i = 0; i < hot; i += 1) {
      const r = await fetch(`${worker.url}/api/config/faults-hot-${i}`, { headers: { "cf-connecting-ip": "192.0.2.1" } });
      await r.arrayBuffer();
    }

    // ------------------------------------------------------------------ load
    let phase = "baseline";
    let running = true;
    let ipN = 0;
    const freshIp = () => {
      ipN += 1;
      return `10.${(ipN >> 16) & 255}.${(ipN >> 8) & 255}.${ipN & 255}`;
    };
    const answers = [];
    let skipped = 0;
    let inFlight = 0;
    const marks = {}; // phase → Date.now() when it began
    const recoveries = {}; // recovery phase → Date.now() when the fault ended
    // When `route` was back after recovery `name`: the answer time of the first Redis-mode
    // answer after which every answer (to requests sent after the fault ended) was decided in
    // Redis too; null while the latest such answer is not.
    const backAt = (name, route) => {
      const since = recoveries[name];
      let at = null;
      for (const a of answers) {
        if (a.route !== route || a.started < since) continue;
        if (a.mode === "redis") at ??= a.at;
        else at = null;
      }
      return at;
    };

    const request = async (i) => {
      const slot = i % 10;
      let route;
      let pathname;
      let ip;
      if (slot < 6) {
        route = ROUTES[Math.floor(slot / 2)];
        pathname = `/${route}/x`;
        ip = freshIp();
      } else if (slot < 8) {
        route = "config";
        pathname = `/api/config/faults-hot-${i % hot}`;
        ip = freshIp();
      } else if (slot === 8) {
        route = "unrouted";
        pathname = "/anything/faults";
        ip = freshIp();
      } else {
        route = "quota";
        pathname = "/quota/x";
        ip = `198.51.100.${1 + (Math.floor(i / 10) % QUOTA_CALLERS)}`;
      }
      const started = Date.now();
      const startedPhase = phase;
      const a = { route, ip: route === "quota" ? ip : undefined, phase: startedPhase, started };
      try {
        const res = await fetch(`${worker.url}${pathname}`, { headers: { "cf-connecting-ip": ip }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
        const text = await res.text();
        a.status = res.status;
        a.mode = res.headers.get("x-tollgate-mode") ?? "none";
        a.cache = res.headers.get("x-cache");
        if (res.status >= 500) {
          let type = null;
          try {
            type = JSON.parse(text).type ?? null;
          } catch {
            // not JSON
          }
          // The demo origin's problems are "about:blank"; Tollgate's name its problem kind.
          a.source = type === "about:blank" ? "origin" : "tollgate";
          a.problemJson = res.headers.get("content-type") === "application/problem+json";
        }
      } catch (err) {
        a.status = 0;
        a.mode = "none";
        a.error = err.name === "TimeoutError" ? "timeout" : "network";
      }
      a.at = Date.now();
      a.ms = a.at - started;
      answers.push(a);
    };

    const load = (async () => {
      const t0 = performance.now();
      const pending = new Set();
      for (let i = 0; running; i += 1) {
        const wait = t0 + (i * 1000) / rate - performance.now();
        if (wait > 0) await sleep(wait);
        if (inFlight >= maxInFlight) {
          skipped += 1;
          continue;
        }
        inFlight += 1;
        const p = request(i).finally(() => {
          inFlight -= 1;
          pending.delete(p);
        });
        pending.add(p);
      }
      await Promise.all(pending);
    })();

    const mark = (name) => {
      phase = name;
      marks[name] = Date.now();
      log(`faults: phase ${name}`);
    };
    const stable = (name) =>
      ROUTES.every((r) => {
        const at = backAt(name, r);
        return at !== null && Date.now() - at >= STABLE_MS;
      });
    const waitBack = async (name) => {
      recoveries[name] = Date.now();
      const deadline = Date.now() + BACK_TIMEOUT_MS + STABLE_MS;
      while (!stable(name) && Date.now() < deadline) await sleep(100);
    };

    const ms = phaseSeconds * 1000;
    mark("baseline");
    await sleep(ms);

    mark("redis-down");
    // A restart that keeps the data, as a managed Redis would: saved, stopped, loaded again.
    await redisCommand(redisPort, "SAVE");
    await redis.stop();
    await sleep(ms);
    mark("redis-back");
    redis = await startRedisOn(redisPort, dir);
    await waitBack("redis-back");

    mark("slow-200ms");
    await proxy.settings({ delay_ms: 200 });
    await sleep(ms + 3_000);
    mark("slow-back");
    await proxy.settings({ delay_ms: 0 });
    await waitBack("slow-back");

    mark("origin-flap");
    for (let t = 0; t < phaseSeconds; t += 1) {
      await origin.settings({ fail: t % 2 === 0 ? "503" : null });
      await sleep(1_000);
    }
    await origin.settings({ fail: null });
    mark("origin-back");
    await sleep(2_000);

    running = false;
    await load;

    // ------------------------------------------------------------------ figures
    const count = (xs, f) => xs.reduce((acc, x) => {
      const k = f(x);
      acc[k] = (acc[k] ?? 0) + 1;
      return acc;
    }, {});
    const phases = {};
    const order = ["baseline", "redis-down", "redis-back", "slow-200ms", "slow-back", "origin-flap", "origin-back"];
    for (const p of order) {
      const xs = answers.filter((a) => a.phase === p);
      const byRoute = {};
      for (const route of [...ROUTES, "quota", "config", "unrouted"]) {
        const rs = xs.filter((a) => a.route === route);
        byRoute[route] = {
          requests: rs.length,
          status: count(rs, (a) => (a.status === 0 ? a.error : String(a.status))),
          mode: count(rs, (a) => a.mode),
          tollgate_5xx: rs.filter((a) => a.status >= 500 && a.source === "tollgate").length,
          origin_5xx: rs.filter((a) => a.status >= 500 && a.source === "origin").length,
          no_answer: rs.filter((a) => a.status === 0).length,
          ...(route === "config" ? { x_cache: count(rs, (a) => a.cache ?? "none") } : {}),
        };
      }
      const lat = xs.filter((a) => a.status !== 0).map((a) => a.ms);
      const end = order[order.indexOf(p) + 1];
      const seconds = ((end ? marks[end] : Date.now()) - marks[p]) / 1000;
      phases[p] = {
        seconds: Math.round(seconds * 10) / 10,
        requests: xs.length,
        rps: Math.round(xs.length / seconds),
        p50_ms: pct(lat, 0.5),
        p99_ms: pct(lat, 0.99),
        mode: count(xs, (a) => a.mode),
        by_route: byRoute,
      };
    }
    const perPolicy5xx = {};
    for (const route of [...ROUTES, "quota", "config", "unrouted"]) {
      const rs = answers.filter((a) => a.route === route);
      perPolicy5xx[route] = {
        tollgate_5xx: rs.filter((a) => a.status >= 500 && a.source === "tollgate").length,
        tollgate_503_problem: rs.filter((a) => a.status === 503 && a.source === "tollgate" && a.problemJson).length,
        origin_5xx: rs.filter((a) => a.status >= 500 && a.source === "origin").length,
        no_answer: rs.filter((a) => a.status === 0).length,
        requests: rs.length,
      };
    }
    const quota = {};
    for (let k = 1; k <= QUOTA_CALLERS; k += 1) {
      const ip = `198.51.100.${k}`;
      const rs = answers.filter((a) => a.route === "quota" && a.ip === ip);
      quota[ip] = { requests: rs.length, allowed: rs.filter((a) => a.status === 200).length, limit: QUOTA };
    }
    const overAdmitted = Object.values(quota).filter((q) => q.allowed > q.limit).length;
    const back = {};
    for (const name of ["redis-back", "slow-back"]) {
      // Only a return that held (STABLE_MS of Redis-mode answers before the load moved on) counts.
      back[name] = Object.fromEntries(
        ROUTES.map((r) => {
          const at = backAt(name, r);
          const next = order[order.indexOf(name) + 1];
          const held = at !== null && (marks[next] ?? Date.now()) - at >= STABLE_MS;
          return [r, held ? (at - recoveries[name]) / 1000 : null];
        }),
      );
    }
    const health = await (await fetch(`${worker.url}/_tollgate/health`, { headers: { authorization: `Bearer ${adminToken}` } })).json();
    const wire = await proxy.stats();
    const result = {
      title: "Faults under load: Redis stopped and started, Redis 200 ms away, origin flapping",
      policy: "default Redis budget and breaker (no redis.timeout); routes open / local / closed, a 100/h fixed-window quota route (4 callers), the cached config route",
      rate_target: rate,
      max_in_flight: maxInFlight,
      requests: answers.length,
      skipped_client_backlog: skipped,
      phases,
      per_route_5xx: perPolicy5xx,
      back_to_redis_s: back,
      quota,
      quota_callers_over_limit: overAdmitted,
      health_after: { status: health.status, mode: health.mode, breaker: health.redis?.breaker },
      proxy: wire,
      fingerprint: createHash("sha256").update(JSON.stringify(FAULTS_POLICY)).digest("hex").slice(0, 12),
    };
    log(`faults: ${answers.length} answers (${skipped} skipped), back to Redis mode ${JSON.stringify(back)}, quota ${JSON.stringify(Object.values(quota).map((q) => q.allowed))} of ${QUOTA}, 5xx ${JSON.stringify(Object.fromEntries(Object.entries(perPolicy5xx).map(([k, v]) => [k, v.tollgate_5xx])))}`);
    return result;
  } finally {
    await Promise.allSettled(procs.map((get) => get()?.stop()));
  }
}
