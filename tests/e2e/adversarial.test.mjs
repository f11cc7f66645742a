// A hostile client against the built Worker (Miniflare, real Redis through redis-rest, the demo
// origin recording what reaches it). For every hole the attack, in several spellings, and the
// defence: limits that cannot be walked around, a cache that cannot be poisoned or leak, an edge
// that cannot be knocked over.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import http from "node:http";
import { after, before, describe, test } from "node:test";

import { clearOfWindowEdge, startStack } from "./support/stack.mjs";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const MAX_BODY = 64 * 1024;
const ORIGIN_SECRET = "origin-shared-secret-for-tests";

const policy = {
  tiers: {
    ANON: { limits: [{ limit: 100000, window: "1h" }] },
    BASIC: { limits: [{ limit: 100000, window: "1h" }] },
    PRO: { limits: [{ limit: 100000, window: "1h" }] },
  },
  redis: { timeout: "3s" },
  cache: { isolate_ttl: "200ms", lock_wait: "2s", origin_timeout: "2s", max_body_bytes: MAX_BODY },
  proxy: { timeout: "1s" },
  cache_classes: { SHORT: { ttl: "1s", jitter: 0, stale: "1h" } },
  cors: { allow_origins: ["*"] },
  routes: [
    { name: "auth", path: "/api/auth*", limits: [{ limit: 3, window: "15m" }] },
    {
      name: "config",
      path: "/api/config/{name}",
      methods: ["GET", "HEAD"],
      upstream: "/config/{name}",
      cache: { class: "STATIC_CONFIG", invalidate_on: ["PUT", "DELETE"] },
    },
    { name: "shared", path: "/api/shared/{name}", methods: ["GET", "HEAD"], upstream: "/echo/shared/{name}", cache: { class: "STATIC_CONFIG" } },
    { name: "short", path: "/api/short/{name}", methods: ["GET", "HEAD"], upstream: "/echo/short/{name}", cache: { class: "SHORT" } },
    { name: "mine", path: "/api/mine/{name}", methods: ["GET"], upstream: "/echo/mine/{name}", cache: { class: "SESSION", scope: "caller" } },
    { name: "rag", path: "/api/rag/context", methods: ["POST"], upstream: "/rag/context", cache: { class: "FREQUENT_DATA", key: "json_body" } },
  ],
};

let stack;
let admin;

const b64url = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
function jwt(claims) {
  const head = b64url({ alg: "HS256", typ: "JWT" });
  const body = b64url({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims });
  const sig = createHmac("sha256", stack.jwtSecret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/**
 * One request with the path sent exactly as written (fetch would resolve `./`, `//` and more
 * before sending). `chunks` sends the body chunked, without Content-Length.
 */
function rawOnce(method, path, { headers = {}, body, chunks } = {}) {
  const url = new URL(stack.url);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(
      { host: url.hostname, port: url.port, method, path, headers, agent: false },
      (res) => {
        answered = true;
        const parts = [];
        res.on("data", (c) => parts.push(c));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(parts).toString() }));
        res.on("error", reject);
      },
    );
    // A server that refuses a body early may close while the rest is still being written: the
    // write fails, but its answer has arrived and is what the test looks at.
    req.on("error", (e) => {
      if (!answered) reject(e);
    });
    if (chunks) {
      for (const c of chunks) req.write(c);
      req.end();
    } else {
      req.end(body);
    }
  });
}

// A server that answers before reading a large body closes the connection with bytes still
// unread, and the peer's reset can reach this client before the answer does (the reset discards
// what was not read yet): that is a race of TCP, not a missing answer, so such a request is sent
// again, at most three times; the answer that does arrive is checked like any other.
async function raw(method, path, options = {}) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await rawOnce(method, path, options);
    } catch (e) {
      const sending = options.body !== undefined || options.chunks !== undefined;
      if (!sending || attempt >= 3 || !["ECONNRESET", "EPIPE"].includes(e.code)) throw e;
    }
  }
}

const get = async (path, init = {}) => {
  const res = await stack.fetch(path, init);
  return { res, text: await res.text() };
};

const originPaths = async () => (await stack.origin.hits()).by_path;
const hits = async (path) => (await originPaths())[path] ?? 0;

function assertProblem(r, status) {
  assert.equal(r.status, status, r.text);
  assert.match(String(r.headers["content-type"] ?? r.headers.get?.("content-type")), /application\/problem\+json/);
  assert.equal(JSON.parse(r.text).status, status);
}

before(async () => {
  stack = await startStack({ policy, vars: { TOLLGATE_ORIGIN_SECRET: ORIGIN_SECRET } });
  admin = { authorization: `Bearer ${stack.adminToken}` };
});

after(async () => {
  await stack?.stop();
});

describe("finding 4: one path normalization at the entrance", () => {
  const SPELLINGS = [
    "/api/auth/login",
    "/api/%61uth/login",
    "/api/%61%75%74%68/login",
    "//api/auth/login",
    "/api//auth///login",
    "/api/./auth/login",
    "/api/%2e/auth/login",
    "/api/x/../auth/login",
    "/api/x/%2E%2E/auth/login",
    "/API/auth/login",
    "/Api/AUTH/Login",
  ];

  test("every spelling of the auth path is charged the auth limit once it is exhausted", async () => {
    const ip = { "cf-connecting-ip": "203.0.113.40" };
    await clearOfWindowEdge(15 * 60_000);
    await stack.origin.reset();
    for (let i = 0; i < 3; i++) {
      const r = await raw("POST", "/api/auth/login", { headers: ip, body: "{}" });
      assert.equal(r.status, 200, r.text);
    }
    for (const spelling of SPELLINGS) {
      const r = await raw("POST", spelling, { headers: ip, body: "{}" });
      assert.equal(r.status, 429, `${spelling} dodged the limit: ${r.status} ${r.text}`);
    }
    const reached = Object.entries(await originPaths()).reduce((n, [, c]) => n + c, 0);
    assert.equal(reached, 3, "the origin saw only the three allowed requests");
  });

  test("the normalized path is what reaches the origin; case is forwarded as written", async () => {
    await stack.origin.reset();
    const spellings = { "/api/%61uth/x": "/api/auth/x", "//api/auth//y": "/api/auth/y", "/api/auth/a/../z": "/api/auth/z", "/API/auth/w": "/API/auth/w" };
    let n = 0;
    for (const [spelling, forwarded] of Object.entries(spellings)) {
      const r = await raw("GET", spelling, { headers: { "cf-connecting-ip": `203.0.113.${50 + n++}` } });
      assert.equal(r.status, 200, `${spelling}: ${r.text}`);
      assert.equal(JSON.parse(r.text).path, forwarded, spelling);
    }
    const paths = Object.keys(await originPaths());
    assert.deepEqual(paths.sort(), Object.values(spellings).sort());
  });

  test("ambiguous and broken spellings are refused with 400 problem+json and never reach the origin", async () => {
    await stack.origin.reset();
    for (const spelling of ["/api%2Fauth/login", "/api%2fauth/login", "/api/auth%5Clogin", "/api/auth%5clogin", "/api/%zzuth/login", "/api/auth/login%", "/api/auth/%4"]) {
      const r = await raw("POST", spelling, { headers: { "cf-connecting-ip": "203.0.113.60" }, body: "{}" });
      assertProblem(r, 400);
    }
    assert.equal((await stack.origin.hits()).total, 0);
  });

  test("cached routes key and forward the normalized path", async () => {
    await stack.origin.reset();
    const first = await raw("GET", "/api/config/%61pp-norm");
    const second = await raw("GET", "//api/./config/app-norm");
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    assert.equal(second.headers["x-cache"], "HIT");
    assert.deepEqual(Object.keys(await originPaths()), ["/config/app-norm"]);
  });
});

describe("finding 1: bodies are capped before they are read", () => {
  const rag = (size) => JSON.stringify({ query: "x".repeat(Math.max(0, size - 12)) });

  test("JSON-body routes: sizes around cache.max_body_bytes", async () => {
    for (const [size, status] of [[MAX_BODY - 1, 200], [MAX_BODY, 200], [MAX_BODY + 1, 413], [1 << 20, 413], [12 << 20, 413]]) {
      const body = rag(size);
      assert.equal(Buffer.byteLength(body), size);
      const r = await raw("POST", "/api/rag/context", { headers: { "content-type": "application/json" }, body });
      if (status === 413) assertProblem(r, 413);
      else assert.equal(r.status, status, `${size}: ${r.text.slice(0, 200)}`);
    }
  });

  test("chunked bodies are capped while read", async () => {
    const small = rag(2000);
    const ok = await raw("POST", "/api/rag/context", { headers: { "content-type": "application/json" }, chunks: [small.slice(0, 1000), small.slice(1000)] });
    assert.equal(ok.status, 200, ok.text);
    const big = rag(MAX_BODY + 5000);
    const chunks = [];
    for (let i = 0; i < big.length; i += 8192) chunks.push(big.slice(i, i + 8192));
    const r = await raw("POST", "/api/rag/context", { headers: { "content-type": "application/json" }, chunks });
    assertProblem(r, 413);
  });

  test("a Content-Length over the cap is refused before the body is read", async () => {
    // Declares more than the cap and sends almost nothing: a reader would wait for the rest.
    const url = new URL(stack.url);
    const started = Date.now();
    const r = await new Promise((resolve, reject) => {
      const req = http.request(
        { host: url.hostname, port: url.port, method: "POST", path: "/api/rag/context", agent: false, headers: { "content-type": "application/json", "content-length": String(MAX_BODY * 4) } },
        (res) => {
          const parts = [];
          res.on("data", (c) => parts.push(c));
          res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(parts).toString() }));
        },
      );
      req.on("error", reject);
      req.write('{"query":"');
      setTimeout(() => req.destroy(), 5000).unref();
    });
    assertProblem(r, 413);
    assert.ok(Date.now() - started < 4000, "answered without waiting for the body");
  });

  test("admin bodies: no token, no read; with the token, a small cap", async () => {
    const huge = JSON.stringify({ keys: ["x".repeat(2 << 20)] });
    const noToken = await raw("POST", "/_tollgate/warm", { headers: { "content-type": "application/json", "cf-connecting-ip": "203.0.113.70" }, body: huge });
    assertProblem(noToken, 401);
    const tooBig = await raw("POST", "/_tollgate/warm", { headers: { ...admin, "content-type": "application/json" }, body: JSON.stringify({ route: "config", keys: ["x".repeat(100 * 1024)] }) });
    assertProblem(tooBig, 413);
    const fine = await raw("POST", "/_tollgate/warm", { headers: { ...admin, "content-type": "application/json" }, body: JSON.stringify({ route: "config", keys: ["app"] }) });
    assert.equal(fine.status, 200, fine.text);
  });
});

describe("finding 2: HEAD never fills an entry with an empty body", () => {
  test("a cold HEAD fills with GET; the following GETs get the body", async () => {
    for (const name of ["head-a", "head-b"]) {
      const head = await raw("HEAD", `/api/shared/${name}`);
      assert.equal(head.status, 200);
      assert.equal(head.text, "");
      const r = await get(`/api/shared/${name}`);
      assert.equal(r.res.headers.get("x-cache"), "HIT");
      const echo = JSON.parse(r.text);
      assert.equal(echo.method, "GET", "the fill asked the origin with GET");
      assert.equal(echo.path, `/echo/shared/${name}`);
    }
  });

  test("a HEAD during the stale window refreshes with GET", async () => {
    const first = await get("/api/short/stale-head");
    assert.equal(first.res.headers.get("x-cache"), "MISS");
    await sleep(1200);
    const head = await raw("HEAD", "/api/short/stale-head");
    assert.equal(head.headers["x-cache"], "STALE");
    assert.equal(head.text, "");
    await sleep(500);
    const next = await get("/api/short/stale-head");
    assert.notEqual(next.text, "");
    assert.equal(JSON.parse(next.text).method, "GET");
  });
});

describe("finding 3: per-caller entries are never shared by anonymous callers", () => {
  for (const [label, a, b] of [
    ["two cookies on one IPv4", "198.51.100.7", "198.51.100.7"],
    ["two cookies on one IPv6 /64", "2001:db8:1:2::10", "2001:db8:1:2::20"],
  ]) {
    test(label, async () => {
      await stack.origin.reset();
      const name = `anon-${a.length}-${label.length}`;
      const alice = await get(`/api/mine/${name}`, { headers: { "cf-connecting-ip": a, cookie: "sid=alice" } });
      const bob = await get(`/api/mine/${name}`, { headers: { "cf-connecting-ip": b, cookie: "sid=bob" } });
      assert.equal(alice.res.status, 200);
      assert.equal(JSON.parse(alice.text).headers.cookie, "sid=alice");
      assert.equal(JSON.parse(bob.text).headers.cookie, "sid=bob", "Bob got his own answer");
      assert.notEqual(bob.res.headers.get("x-cache"), "HIT");
      assert.equal(await hits(`/echo/mine/${name}`), 2);
    });
  }

  test("authenticated subjects get their own entries", async () => {
    await stack.origin.reset();
    const alice = { authorization: `Bearer ${jwt({ sub: "alice-adv" })}`, "cf-connecting-ip": "198.51.100.8" };
    const bob = { authorization: `Bearer ${jwt({ sub: "bob-adv" })}`, "cf-connecting-ip": "198.51.100.8" };
    const a1 = await get("/api/mine/profile", { headers: alice });
    const b1 = await get("/api/mine/profile", { headers: bob });
    const a2 = await get("/api/mine/profile", { headers: alice });
    assert.equal(a1.res.headers.get("x-cache"), "MISS");
    assert.equal(b1.res.headers.get("x-cache"), "MISS");
    assert.equal(a2.res.headers.get("x-cache"), "HIT");
    assert.equal(JSON.parse(a2.text).headers["x-tollgate-subject"], JSON.parse(a1.text).headers["x-tollgate-subject"]);
    assert.notEqual(JSON.parse(b1.text).headers["x-tollgate-subject"], JSON.parse(a1.text).headers["x-tollgate-subject"]);
  });
});

describe("finding 6: shared entries are keyed on everything their fill forwards", () => {
  test("the query string is keyed on path routes and on JSON-body routes", async () => {
    await stack.origin.reset();
    const plain = await get("/api/shared/q");
    const tenant = await get("/api/shared/q?tenant=x");
    const again = await get("/api/shared/q");
    assert.equal(JSON.parse(plain.text).query, "");
    assert.equal(JSON.parse(tenant.text).query, "tenant=x");
    assert.equal(JSON.parse(again.text).query, "", "the plain entry was not poisoned");
    const body = JSON.stringify({ query: "tenants", top_k: 1 });
    const r1 = await get("/api/rag/context", { method: "POST", body });
    const r2 = await get("/api/rag/context?tenant=x", { method: "POST", body });
    const r3 = await get("/api/rag/context", { method: "POST", body });
    assert.equal(r1.res.headers.get("x-cache"), "MISS");
    assert.equal(r2.res.headers.get("x-cache"), "MISS", "another query is another entry");
    assert.equal(r3.res.headers.get("x-cache"), "HIT");
    assert.equal(await hits("/rag/context"), 2);
  });

  test("no caller header reaches a shared fill", async () => {
    await stack.origin.reset();
    const variants = [
      { accept: "text/html", "user-agent": "evil/1.0" },
      { accept: "application/json", "user-agent": "good/2.0" },
      { "accept-language": "fr", cookie: "sid=1", authorization: `Bearer ${jwt({ sub: "fill" })}` },
    ];
    const bodies = [];
    for (const headers of variants) bodies.push((await get("/api/shared/headers", { headers })).text);
    assert.equal(new Set(bodies).size, 1, "one entry for every variant");
    const seen = JSON.parse(bodies[0]).headers;
    for (const name of ["accept", "user-agent", "accept-language", "cookie", "authorization", "x-tollgate-subject"]) {
      assert.equal(seen[name], undefined, `${name} was forwarded on a shared fill`);
    }
    assert.equal(seen["x-tollgate-caller"], "cache");
    assert.equal(await hits("/echo/shared/headers"), 1);
  });

  test("an origin answer that varies on a request header is not stored", async () => {
    await stack.origin.reset();
    for (const vary of ["Accept", "User-Agent", "Cookie", "Accept-Encoding, Accept-Language"]) {
      const path = `/api/shared/vary?_header=${encodeURIComponent(`Vary: ${vary}`)}`;
      const a = await get(path);
      const b = await get(path);
      assert.equal(a.res.headers.get("x-cache"), "MISS", vary);
      assert.equal(b.res.headers.get("x-cache"), "MISS", `${vary}: not stored`);
    }
    const ok = `/api/shared/vary-ok?_header=${encodeURIComponent("Vary: Accept-Encoding")}`;
    await get(ok);
    assert.equal((await get(ok)).res.headers.get("x-cache"), "HIT");
  });
});

describe("finding 11: single-flight never hands one caller's answer to another", () => {
  test("concurrent waiters of a Set-Cookie answer fetch for themselves", async () => {
    await stack.origin.reset();
    await stack.origin.settings({ delay_ms: 150 });
    try {
      const path = `/api/shared/cookie?_header=${encodeURIComponent("Set-Cookie: sid=leader")}`;
      const all = await Promise.all(Array.from({ length: 5 }, () => get(path)));
      assert.ok(all.every(({ res }) => res.status === 200));
      assert.equal(await hits("/echo/shared/cookie"), 5, "each waiter asked the origin itself");
      const plain = await Promise.all(Array.from({ length: 5 }, () => get("/api/shared/no-cookie")));
      assert.ok(plain.every(({ res }) => res.status === 200));
      assert.equal(await hits("/echo/shared/no-cookie"), 1, "a shareable answer is still fetched once");
    } finally {
      await stack.origin.settings({ delay_ms: 0 });
    }
  });
});

describe("finding 5: CORS never pairs an origin Tollgate chose with credentials", () => {
  const evil = { origin: "https://evil.example" };

  test("a wildcard allow-list answers a literal *", async () => {
    for (const path of ["/anything/cors", "/api/config/cors"]) {
      const r = await get(path, { headers: evil });
      assert.equal(r.res.headers.get("access-control-allow-origin"), "*", path);
      assert.equal(r.res.headers.get("access-control-allow-credentials"), null);
    }
  });

  test("the origin's own CORS answer and Vary are kept", async () => {
    const withCreds = await get(`/anything/cors?_header=${encodeURIComponent("Access-Control-Allow-Credentials: true")}`, { headers: evil });
    assert.equal(withCreds.res.headers.get("access-control-allow-credentials"), "true");
    assert.equal(withCreds.res.headers.get("access-control-allow-origin"), null, "no origin of Tollgate's beside the origin's credentials");
    const own = `/anything/cors?_header=${encodeURIComponent("Access-Control-Allow-Origin: https://app.example")}&_header=${encodeURIComponent("Vary: Accept-Language")}`;
    const r = await get(own, { headers: evil });
    assert.equal(r.res.headers.get("access-control-allow-origin"), "https://app.example");
    assert.match(r.res.headers.get("vary") ?? "", /Accept-Language/);
    assert.match(r.res.headers.get("access-control-expose-headers") ?? "", /X-RateLimit-Remaining/);
  });
});

describe("finding 9: a hung origin gets a 504, not a held request", () => {
  test("streamed requests time out at proxy.timeout", async () => {
    for (const path of ["/anything/hung", "/api/auth/hung"]) {
      const started = Date.now();
      const r = await raw("GET", path, { headers: { "x-origin-fail": "timeout", "cf-connecting-ip": "203.0.113.90" } });
      assertProblem(r, 504);
      assert.ok(Date.now() - started < 5000, `${path} took ${Date.now() - started} ms`);
    }
  });
});

describe("lows", () => {
  test("only the methods a route lists as writes invalidate its entry", async () => {
    const first = await get("/api/config/writes");
    await sleep(250);
    assert.equal((await get("/api/config/writes")).res.headers.get("x-cache"), "HIT");
    const post = await get("/api/config/writes", { method: "POST", body: "{}" });
    assert.equal(post.res.status, 200, "the origin's catch-all answers a POST");
    await sleep(250);
    assert.equal((await get("/api/config/writes")).res.headers.get("x-cache"), "HIT", "a POST is not a write here");
    const put = await get("/api/config/writes", { method: "PUT", headers: { "content-type": "application/json" }, body: '{"on":false}' });
    assert.equal(put.res.status, 200);
    await sleep(250);
    assert.equal((await get("/api/config/writes")).res.headers.get("x-cache"), "MISS", "a PUT is");
    assert.ok(first.text);
  });

  test("the origin can verify the identity headers with TOLLGATE_ORIGIN_SECRET", async () => {
    const token = jwt({ sub: "signed-user", app_metadata: { tier: "PRO" } });
    const r = await get("/anything/signed?x=1", { headers: { authorization: `Bearer ${token}`, "x-tollgate-signature": "t=1,v1=forged" } });
    const echo = JSON.parse(r.text);
    const sig = echo.headers["x-tollgate-signature"];
    const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(sig);
    assert.ok(m, sig);
    const lines = ["tollgate-v1", m[1], "GET", "/anything/signed?x=1", echo.headers["x-tollgate-subject"], echo.headers["x-tollgate-tier"], echo.headers["x-tollgate-caller"]];
    const expected = createHmac("sha256", ORIGIN_SECRET).update(lines.join("\n")).digest("hex");
    assert.equal(m[2], expected);
    assert.equal(echo.headers["x-tollgate-tier"], "PRO");
    assert.ok(Math.abs(Number(m[1]) - Date.now() / 1000) < 60);
  });

  test("failed admin authentication is throttled", async () => {
    const ip = { "cf-connecting-ip": "203.0.113.99" };
    const statuses = [];
    for (let i = 0; i < 30; i++) {
      const r = await raw("GET", "/_tollgate/stats", { headers: { ...ip, authorization: `Bearer wrong-${i}` } });
      statuses.push(r.status);
    }
    assert.ok(statuses.includes(401));
    assert.ok(statuses.includes(429), `never throttled: ${statuses.join(",")}`);
    const good = await raw("GET", "/_tollgate/stats", { headers: { ...admin, "cf-connecting-ip": "203.0.113.98" } });
    assert.equal(good.status, 200, "the real token from elsewhere still works");
  });
});
