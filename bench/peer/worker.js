// The PEER: the same gate built the way the official docs show, with @upstash/ratelimit for the
// limits and @upstash/redis for cache-aside. It reads the same TOLLGATE_POLICY document as
// Tollgate (tiers, routes, cache classes) so both enforce the same limits, and proxies the same
// origin through the same redis-rest.
//
// What a user of the official libraries writes, per the docs:
//   - one `Ratelimit` per limit, created once per isolate (module scope) so its ephemeral block
//     cache survives between requests; `analytics` off (the default), `ephemeralCache` on (the
//     default);
//   - the tier limit, then the route's own limit: two `limit()` calls, one after the other; the
//     first consumes even when the second denies;
//   - `ctx.waitUntil(pending)` for each result;
//   - cache-aside: `redis.get(key)` → on a miss fetch the origin → `redis.set(key, value, { ex })`
//     (in `ctx.waitUntil`, so the caller does not wait for the write).
//
// Bindings: UPSTASH_REDIS_REST_URL, UPSTASH_REDIS_REST_TOKEN, ORIGIN_URL, TOLLGATE_POLICY (JSON
// text, optional), PEER_ALGORITHM ("sliding" | "fixed"), PEER_API_KEYS (JSON {key: tier},
// optional: API keys are resolved from this map at no cost, which favours the peer).

import { Ratelimit } from "@upstash/ratelimit";
import { Redis } from "@upstash/redis/cloudflare";

// The built-in defaults of Tollgate (docs/design.md), used for what TOLLGATE_POLICY leaves out.
const DEFAULT_POLICY = {
  tiers: {
    ANON: { limits: [{ limit: 30, window: "1h" }] },
    BASIC: { limits: [{ limit: 100, window: "1h" }] },
    PRO: { limits: [{ limit: 1000, window: "1h" }] },
  },
  anonymous_tier: "ANON",
  default_tier: "BASIC",
  routes: [
    { name: "chat", path: "/api/chat*", limits: [{ limit: 20, window: "1m" }] },
    { name: "auth", path: "/api/auth*", limits: [{ limit: 5, window: "15m" }] },
    { name: "upload", path: "/api/upload*", limits: [{ limit: 5, window: "1m" }] },
    { name: "search", path: "/api/search*", limits: [{ limit: 30, window: "1m" }] },
    {
      name: "config", path: "/api/config/{name}", methods: ["GET"], upstream: "/config/{name}",
      cache: { class: "STATIC_CONFIG", key: "path" },
    },
    {
      name: "rag", path: "/api/rag/context", methods: ["POST"], upstream: "/rag/context",
      cache: { class: "FREQUENT_DATA", key: "json_body" },
    },
  ],
  cache_classes: { SESSION: { ttl: "1h" }, FREQUENT_DATA: { ttl: "5m" }, STATIC_CONFIG: { ttl: "24h" } },
};

const UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
function durationMs(text) {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  if (!m) throw new Error(`bad duration ${text}`);
  return Number(m[1]) * UNITS[m[2]];
}

/** A path pattern of the policy: `/api/chat*` (prefix) or `/api/config/{name}` (segments). */
function compilePattern(pattern) {
  if (pattern.endsWith("*")) {
    const prefix = pattern.slice(0, -1);
    return (path) => (path.startsWith(prefix) ? {} : null);
  }
  const parts = pattern.split("/");
  return (path) => {
    const segs = path.split("/");
    if (segs.length !== parts.length) return null;
    const params = {};
    for (let i = 0; i < parts.length; i += 1) {
      const p = parts[i];
      if (p.startsWith("{") && p.endsWith("}")) {
        if (!segs[i]) return null;
        params[p.slice(1, -1)] = decodeURIComponent(segs[i]);
      } else if (p !== segs[i]) {
        return null;
      }
    }
    return params;
  };
}

/** JSON with object keys sorted, so key order does not change the cache key. */
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// Module scope: built on the first request, reused by every later one in this isolate.
let app = null;

function setup(env) {
  const raw = env.TOLLGATE_POLICY ? JSON.parse(env.TOLLGATE_POLICY) : {};
  const policy = {
    ...DEFAULT_POLICY,
    ...raw,
    cache_classes: { ...DEFAULT_POLICY.cache_classes, ...(raw.cache_classes ?? {}) },
  };
  const algorithm = env.PEER_ALGORITHM === "fixed" ? "fixed" : "sliding";
  const redis = Redis.fromEnv(env);
  const limiter = (limit) => {
    const window = limit.window; // "1h", "1m": the same syntax @upstash/ratelimit accepts
    return algorithm === "fixed" ? Ratelimit.fixedWindow(limit.limit, window) : Ratelimit.slidingWindow(limit.limit, window);
  };
  const tiers = {};
  for (const [name, tier] of Object.entries(policy.tiers)) {
    const first = tier.limits?.[0];
    tiers[name] = first
      ? new Ratelimit({ redis, limiter: limiter(first), prefix: `peer-${algorithm}:tier:${name}` })
      : null;
  }
  const routes = policy.routes.map((route) => ({
    name: route.name,
    match: compilePattern(route.path),
    methods: route.methods ?? null,
    upstream: route.upstream ?? null,
    cache: route.cache
      ? { key: route.cache.key ?? "path", ttlS: Math.round(durationMs(policy.cache_classes[route.cache.class].ttl) / 1000) }
      : null,
    limiter: route.limits?.[0]
      ? new Ratelimit({ redis, limiter: limiter(route.limits[0]), prefix: `peer-${algorithm}:route:${route.name}` })
      : null,
  }));
  const keys = env.PEER_API_KEYS ? JSON.parse(env.PEER_API_KEYS) : {};
  return {
    redis,
    tiers,
    routes,
    keys,
    algorithm,
    anonymousTier: policy.anonymous_tier ?? "ANON",
    defaultTier: policy.default_tier ?? "BASIC",
    origin: (env.ORIGIN_URL ?? "").replace(/\/$/, ""),
  };
}

function identify(app, request) {
  const auth = request.headers.get("authorization");
  const key = auth?.startsWith("Bearer ") ? auth.slice(7) : request.headers.get("x-api-key");
  if (key) {
    const tier = app.keys[key];
    if (!tier) return null;
    return { id: `key:${key}`, tier };
  }
  const ip = request.headers.get("cf-connecting-ip") ?? "unknown";
  return { id: `ip:${ip}`, tier: app.anonymousTier };
}

function rateLimitHeaders(result) {
  return {
    "X-RateLimit-Limit": String(result.limit),
    "X-RateLimit-Remaining": String(result.remaining),
    "X-RateLimit-Reset": String(Math.ceil(result.reset / 1000)),
  };
}

function tooMany(result) {
  const retry = Math.max(0, Math.ceil((result.reset - Date.now()) / 1000));
  return new Response(JSON.stringify({ title: "Too Many Requests", status: 429 }), {
    status: 429,
    headers: { "content-type": "application/problem+json", "retry-after": String(retry), ...rateLimitHeaders(result) },
  });
}

function withHeaders(response, extra) {
  const out = new Response(response.body, response);
  for (const [k, v] of Object.entries(extra)) out.headers.set(k, v);
  return out;
}

export default {
  async fetch(request, env, ctx) {
    app ??= setup(env);
    const url = new URL(request.url);
    if (url.pathname === "/__peer/health") return new Response("ok");

    const route = app.routes.find((r) => (!r.methods || r.methods.includes(request.method)) && r.match(url.pathname));
    const params = route ? route.match(url.pathname) : null;

    const caller = identify(app, request);
    if (!caller) return new Response(JSON.stringify({ title: "Unauthorized", status: 401 }), { status: 401 });

    // 1. the tier limit
    const tierLimiter = app.tiers[caller.tier] ?? app.tiers[app.defaultTier];
    let binding = null;
    if (tierLimiter) {
      const result = await tierLimiter.limit(caller.id);
      ctx.waitUntil(result.pending);
      if (!result.success) return tooMany(result);
      binding = result;
    }
    // 2. the route's own limit: a second call
    if (route?.limiter) {
      const result = await route.limiter.limit(caller.id);
      ctx.waitUntil(result.pending);
      if (!result.success) return tooMany(result);
      if (!binding || result.remaining < binding.remaining) binding = result;
    }
    const limitHeaders = binding ? rateLimitHeaders(binding) : {};

    const upstreamPath = route?.upstream
      ? route.upstream.replace(/\{(\w+)\}/g, (_, name) => encodeURIComponent(params[name]))
      : url.pathname;
    const target = `${app.origin}${upstreamPath}${url.search}`;

    // 3. cache-aside
    if (route?.cache) {
      let body = null;
      let key;
      if (route.cache.key === "json_body") {
        body = await request.text();
        let parsed;
        try {
          parsed = JSON.parse(body);
        } catch {
          return new Response("invalid JSON body", { status: 400 });
        }
        key = `peer:cache:${route.name}:${await sha256Hex(canonical(parsed))}`;
      } else {
        key = `peer:cache:${route.name}:${Object.values(params).join("/")}${url.search}`;
      }
      const cached = await app.redis.get(key);
      if (cached) {
        return new Response(cached.body, {
          status: cached.status,
          headers: { "content-type": cached.contentType ?? "application/json", "x-cache": "HIT", ...limitHeaders },
        });
      }
      const originResponse = await fetch(target, {
        method: request.method,
        headers: { "content-type": request.headers.get("content-type") ?? "application/json" },
        body: body ?? undefined,
      });
      const text = await originResponse.text();
      const contentType = originResponse.headers.get("content-type");
      if (originResponse.ok) {
        ctx.waitUntil(app.redis.set(key, { status: originResponse.status, contentType, body: text }, { ex: route.cache.ttlS }));
      }
      return new Response(text, {
        status: originResponse.status,
        headers: { "content-type": contentType ?? "application/json", "x-cache": "MISS", ...limitHeaders },
      });
    }

    // 4. everything else: proxy
    const upstream = await fetch(new Request(target, request));
    return withHeaders(upstream, limitHeaders);
  },
};
