// Identity end to end: the built Worker in Miniflare checking ES256, RS256 and EdDSA tokens
// against a key set served on loopback by a second demo origin (the auth provider stand-in),
// Supabase's anon key as the anonymous caller, refused tokens, and keyed identifier hashes in
// Redis.

import assert from "node:assert/strict";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { clearOfWindowEdge, startStack } from "./support/stack.mjs";

const ISSUER = "https://auth.tollgate.test";
const AUDIENCE = "authenticated";
const REFETCH_INTERVAL_MS = 2_000;
const ANON_LIMIT = 5;
const COOKIE = "sb-localproject-auth-token";

const policy = {
  tiers: {
    ANON: { limits: [{ limit: ANON_LIMIT, window: "1m" }] },
    BASIC: { limits: [{ limit: 1000, window: "1h" }] },
    PRO: { limits: [{ limit: 1000, window: "1h" }] },
  },
  routes: [],
  identity: {
    issuers: [ISSUER],
    audiences: [AUDIENCE],
    jwks_refetch_interval: `${REFETCH_INTERVAL_MS / 1000}s`,
    token_cookie: COOKIE,
  },
};

const hashSecret = randomBytes(32).toString("hex");
const IPS = [];

let auth; // the stand-in auth provider: a demo origin serving the key set and minting tokens
let stack;
let admin;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const b64url = (value) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);
const keyed = (kind, raw) => createHmac("sha256", hashSecret).update(`${kind}:${raw}`).digest("hex");
const plain = (text) => createHash("sha256").update(text).digest("hex");

function ip(addr) {
  IPS.push(addr);
  return { "cf-connecting-ip": addr };
}

async function authPost(path, body) {
  const res = await fetch(`${auth.origin.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `${path}: ${text}`);
  return JSON.parse(text);
}

async function mint(alg, claims = {}, header = undefined) {
  const body = { alg, claims: { iss: ISSUER, aud: AUDIENCE, ...claims }, ...(header ? { header } : {}) };
  return (await authPost("/_origin/tokens", body)).token;
}

async function jwksStatus() {
  const res = await fetch(`${auth.origin.url}/_origin/jwks`);
  return res.json();
}

let callerCounter = 0;

/**
 * GET through the Worker with a bearer token; returns the status, headers and parsed body. Without
 * an address of its own, each call comes from a new one: a refused credential is charged to its
 * address's anonymous limit, and these tests look at the refusal, not at that limit.
 */
async function call(token, extra = {}) {
  callerCounter += 1;
  const own = Object.keys(extra).some((h) => h.toLowerCase() === "cf-connecting-ip");
  const from = own ? {} : ip(`192.0.2.${callerCounter % 250}`);
  const headers = { ...(token ? { authorization: `Bearer ${token}` } : {}), ...from, ...extra };
  const res = await stack.fetch("/profile", { headers });
  const text = await res.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, type: res.headers.get("content-type"), body, text };
}

before(async () => {
  auth = await startStack({ redis: false, worker: false });
  stack = await startStack({
    policy,
    vars: {
      TOLLGATE_JWKS_URL: `${auth.origin.url}/.well-known/jwks.json`,
      TOLLGATE_HASH_SECRET: hashSecret,
    },
  });
  admin = { authorization: `Bearer ${stack.adminToken}` };
});

after(async () => {
  await stack?.stop();
  await auth?.stop();
});

describe("tokens from a key set", () => {
  test("ES256, RS256 and EdDSA tokens are accepted with their subject and tier", async () => {
    const fetchesBefore = (await jwksStatus()).fetches;
    const tokens = {};
    for (const alg of ["ES256", "RS256", "EdDSA"]) {
      tokens[alg] = await mint(alg, { sub: `user-${alg.toLowerCase()}`, app_metadata: { tier: "pro" } });
    }
    // A cold isolate under a burst: every request waits for the one fetch of the key set.
    const burst = await Promise.all(Object.values(tokens).flatMap((t) => [1, 2, 3, 4].map(() => call(t))));
    assert.deepEqual(burst.map((r) => r.status), Array(12).fill(200), burst.map((r) => r.text).join("\n"));
    for (const alg of ["ES256", "RS256", "EdDSA"]) {
      const sub = `user-${alg.toLowerCase()}`;
      const token = tokens[alg];
      const r = await call(token, ip("198.51.100.10"));
      assert.equal(r.status, 200, `${alg}: ${r.text}`);
      assert.equal(r.body.headers["x-tollgate-caller"], "jwt", alg);
      assert.equal(r.body.headers["x-tollgate-tier"], "PRO", alg);
      assert.equal(r.body.headers["x-tollgate-subject"], keyed("user", sub), alg);
      assert.equal(r.body.headers.authorization, `Bearer ${token}`, "the token reaches the origin");
    }
    const basic = await call(await mint("EdDSA", { sub: "user-basic" }));
    assert.equal(basic.status, 200, basic.text);
    assert.equal(basic.body.headers["x-tollgate-tier"], "BASIC", "no tier claim: the default tier");
    assert.equal((await jwksStatus()).fetches - fetchesBefore, 1, "one fetch of the key set for all of them");
  });

  test("a rotated key (a new kid in the key set) is picked up", async () => {
    await call(await mint("ES256", { sub: "warm" }));
    await sleep(REFETCH_INTERVAL_MS + 200);
    const before = (await jwksStatus()).fetches;
    for (const alg of ["ES256", "EdDSA", "RS256"]) {
      const { kid } = await authPost("/_origin/jwks/rotate", { alg });
      const token = await mint(alg, { sub: `rotated-${alg}` });
      assert.equal(JSON.parse(Buffer.from(token.split(".")[0], "base64url")).kid, kid);
      const r = await call(token);
      assert.equal(r.status, 200, `${alg} after rotation: ${r.text}`);
      assert.equal(r.body.headers["x-tollgate-subject"], keyed("user", `rotated-${alg}`));
      await sleep(REFETCH_INTERVAL_MS + 200);
    }
    assert.equal((await jwksStatus()).fetches - before, 3, "one refetch per new kid");
  });

  test("a flood of made-up kids costs at most one key set fetch per interval", async () => {
    await sleep(REFETCH_INTERVAL_MS + 200);
    const before = (await jwksStatus()).fetches;
    const started = Date.now();
    const tokens = await Promise.all(
      Array.from({ length: 40 }, (_, i) => mint("ES256", { sub: "flood" }, { kid: `made-up-${i}` })),
    );
    const burst = await Promise.all(tokens.map((t) => call(t)));
    for (const r of burst) {
      assert.equal(r.status, 401, r.text);
      assert.equal(r.body.reason, "unknown_signing_key");
    }
    // Then a steady stream for a little longer than one interval.
    let n = 0;
    while (Date.now() - started < REFETCH_INTERVAL_MS * 1.5) {
      const r = await call(tokens[n % tokens.length]);
      assert.equal(r.status, 401);
      n += 1;
    }
    const elapsed = Date.now() - started;
    const fetches = (await jwksStatus()).fetches - before;
    const allowed = Math.floor(elapsed / REFETCH_INTERVAL_MS) + 1;
    assert.ok(fetches >= 1 && fetches <= allowed, `${fetches} fetches for ${40 + n} tokens in ${elapsed} ms`);
    // The real keys still work, without a fetch of their own.
    const mid = (await jwksStatus()).fetches;
    assert.equal((await call(await mint("RS256", { sub: "after-flood" }))).status, 200);
    assert.equal((await jwksStatus()).fetches, mid);
  });

  test("an outage of the key server keeps the known keys working", async () => {
    const good = await mint("EdDSA", { sub: "outage" });
    assert.equal((await call(good)).status, 200);
    await authPost("/_origin/jwks", { fail: 503 });
    try {
      await sleep(REFETCH_INTERVAL_MS + 200);
      const before = (await jwksStatus()).fetches;
      const unknown = await call(await mint("ES256", { sub: "outage" }, { kid: "not-published" }));
      assert.equal(unknown.status, 401, unknown.text);
      assert.equal((await jwksStatus()).fetches - before, 1, "the refetch was tried and failed");
      const r = await call(good);
      assert.equal(r.status, 200, r.text);
      const health = await (await stack.fetch("/_tollgate/health", { headers: admin })).json();
      assert.equal(health.identity.jwks[0].last_error, "HTTP status 503");
      assert.ok(health.identity.jwks[0].keys >= 3);
    } finally {
      await authPost("/_origin/jwks", { fail: null });
    }
  });
});

describe("tokens in a cookie", () => {
  test("a Supabase SSR session cookie, whole or chunked, identifies its user when no Authorization is sent", async () => {
    const token = await mint("ES256", { sub: "cookie-user" });
    const value = `base64-${Buffer.from(JSON.stringify({ access_token: token, token_type: "bearer", refresh_token: "r" })).toString("base64url")}`;
    const half = Math.floor(value.length / 2);
    for (const cookie of [
      `theme=dark; ${COOKIE}=${value}`,
      `${COOKIE}.1=${value.slice(half)}; ${COOKIE}.0=${value.slice(0, half)}`,
    ]) {
      const r = await call(null, { cookie });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.headers["x-tollgate-caller"], "jwt");
      assert.equal(r.body.headers["x-tollgate-subject"], keyed("user", "cookie-user"));
      assert.equal(r.body.headers.cookie, cookie, "the cookie reaches the origin");
    }
    const garbage = await call(null, { cookie: `${COOKIE}=base64-bm90IGEgc2Vzc2lvbg` });
    assert.equal(garbage.status, 401, garbage.text);
    assert.equal(garbage.body.reason, "malformed");
  });
});

describe("refused tokens", () => {
  test("wrong aud or iss, expired, none, HS256 with the public key and tampered tokens get 401 problem+json", async () => {
    const hitsBefore = (await stack.origin.hits()).total;
    const jwks = await (await fetch(`${auth.origin.url}/.well-known/jwks.json`)).json();
    const rsa = jwks.keys.find((k) => k.kty === "RSA");
    const hs256WithPublicKey = (secret) => {
      const input = `${b64url({ alg: "HS256", kid: rsa.kid, typ: "JWT" })}.${b64url({ sub: "mallory", iss: ISSUER, aud: AUDIENCE, exp: now() + 600 })}`;
      return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
    };
    const noneInput = `${b64url({ alg: "none", typ: "JWT" })}.${b64url({ sub: "u", iss: ISSUER, aud: AUDIENCE, exp: now() + 600 })}`;
    const good = await mint("ES256", { sub: "victim", app_metadata: { tier: "basic" } });
    const [head, , sig] = good.split(".");
    const cases = [
      ["wrong audience", await mint("ES256", { sub: "u", aud: "another-service" }), "wrong_audience"],
      ["no audience", await mint("RS256", { sub: "u", aud: null }), "wrong_audience"],
      ["wrong issuer", await mint("EdDSA", { sub: "u", iss: "https://evil.example" }), "wrong_issuer"],
      ["expired", await mint("ES256", { sub: "u", exp: now() - 120 }), "expired"],
      ["alg none, no signature", `${noneInput}.`, "malformed"],
      ["alg none, a signature", `${noneInput}.${b64url("sig")}`, "unsupported_alg"],
      ["HS256 with the JWK as secret", hs256WithPublicKey(JSON.stringify(rsa)), "bad_signature"],
      ["HS256 with the modulus as secret", hs256WithPublicKey(Buffer.from(rsa.n, "base64url")), "bad_signature"],
      ["RS256 header on an EC kid", await mint("ES256", { sub: "u" }, { alg: "RS256" }), "key_mismatch"],
      ["tampered payload", `${head}.${b64url({ sub: "victim", iss: ISSUER, aud: AUDIENCE, exp: now() + 600, app_metadata: { tier: "pro" } })}.${sig}`, "bad_signature"],
      ["tampered signature", `${head}.${good.split(".")[1]}.${sig.slice(0, 5)}${sig[5] === "A" ? "B" : "A"}${sig.slice(6)}`, "bad_signature"],
    ];
    // Each refusal is charged to its address's anonymous limit: one address per case.
    for (const [i, [what, token, reason]] of cases.entries()) {
      const r = await call(token, ip(`198.51.100.${20 + i}`));
      assert.equal(r.status, 401, `${what}: ${r.text}`);
      assert.equal(r.type, "application/problem+json", what);
      assert.equal(r.body.status, 401, what);
      assert.equal(r.body.reason, reason, `${what}: ${r.text}`);
    }
    assert.equal((await stack.origin.hits()).total, hitsBefore, "no refused token reached the origin");
    assert.equal((await call(good)).status, 200, "the untampered token passes");
  });
});

describe("Supabase's anon key", () => {
  const anonKey = () => {
    const input = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url({ iss: "supabase", ref: "localproject", role: "anon", iat: now(), exp: now() + 3600 })}`;
    return `${input}.${createHmac("sha256", stack.jwtSecret).update(input).digest("base64url")}`;
  };

  test("is the anonymous caller, limited by IP, and reaches the origin with its headers intact", async () => {
    const key = anonKey();
    await clearOfWindowEdge(60_000);
    const headers = (addr) => ({ authorization: `Bearer ${key}`, apikey: key, ...ip(addr) });
    const first = await call(null, headers("203.0.113.50"));
    assert.equal(first.status, 200, first.text);
    const echoed = first.body.headers;
    assert.equal(echoed.authorization, `Bearer ${key}`);
    assert.equal(echoed.apikey, key);
    assert.equal(echoed["x-tollgate-caller"], "anonymous");
    assert.equal(echoed["x-tollgate-tier"], "ANON");
    assert.equal(echoed["x-tollgate-subject"], keyed("ip", "203.0.113.50"));
    for (let i = 1; i < ANON_LIMIT; i += 1) {
      assert.equal((await call(null, headers("203.0.113.50"))).status, 200, `request ${i + 1}`);
    }
    const over = await call(null, headers("203.0.113.50"));
    assert.equal(over.status, 429, over.text);
    // The same IP without any credential shares the bucket; another IP with the same key does not.
    assert.equal((await call(null, ip("203.0.113.50"))).status, 429);
    assert.equal((await call(null, headers("203.0.113.51"))).status, 200);
  });

  test("a publishable key in the apikey header leaves the caller anonymous", async () => {
    const r = await call(null, { apikey: "sb_publishable_localproject123", ...ip("203.0.113.60") });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.headers.apikey, "sb_publishable_localproject123");
    assert.equal(r.body.headers["x-tollgate-caller"], "anonymous");
  });
});

describe("API keys and the scheme spelling", () => {
  test("a Tollgate API key never reaches the origin, however Bearer is spelled", async () => {
    const res = await stack.fetch("/_tollgate/keys", {
      method: "POST",
      headers: { ...admin, "content-type": "application/json" },
      body: JSON.stringify({ subject: "key-owner", tier: "PRO" }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    const { key } = await res.json();
    for (const scheme of ["Bearer", "bearer", "BEARER", "bEaReR"]) {
      const r = await call(null, { authorization: `${scheme} ${key}` });
      assert.equal(r.status, 200, `${scheme}: ${r.text}`);
      assert.equal(r.body.headers["x-tollgate-caller"], "api_key", scheme);
      assert.equal(r.body.headers.authorization, undefined, `${scheme}: the key was forwarded`);
      assert.ok(!r.text.includes(key.split("_")[2]), scheme);
    }
  });
});

describe("health and privacy", () => {
  test("health reports keyed hashing and the key sets; without a hash secret it warns", async () => {
    const health = await (await stack.fetch("/_tollgate/health", { headers: admin })).json();
    assert.equal(health.identity.hash_secret, true);
    assert.deepEqual(health.warnings, []);
    assert.equal(health.identity.jwks.length, 1);
    assert.equal(health.identity.jwks[0].fetched, true);

    const bare = await startStack({ redis: false, origin: false });
    try {
      const h = await (await bare.fetch("/_tollgate/health", { headers: { authorization: `Bearer ${bare.adminToken}` } })).json();
      assert.equal(h.identity.hash_secret, false);
      assert.ok(h.warnings.some((w) => w.includes("TOLLGATE_HASH_SECRET")), JSON.stringify(h.warnings));
    } finally {
      await bare.stop();
    }
  });

  test("Redis holds no raw IP and no IP hash that plain SHA-256 reproduces", async () => {
    const keys = [];
    let cursor = "0";
    do {
      const [next, batch] = await stack.redisRest.command("SCAN", cursor, "COUNT", "1000");
      cursor = String(next);
      keys.push(...batch);
    } while (cursor !== "0");
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
    const addresses = [...new Set(IPS)];
    assert.ok(addresses.length >= 4, `${addresses.length} addresses used`);
    for (const addr of addresses) {
      assert.ok(!haystack.includes(addr), `raw IP ${addr} in Redis`);
      for (const text of [`ip:${addr}`, addr]) {
        assert.ok(!haystack.includes(plain(text)), `plain SHA-256 of ${text} in Redis`);
      }
    }
    // The scan does see the callers: their keyed hashes name their limiter keys.
    assert.ok(haystack.includes(keyed("ip", "203.0.113.50")), "the anonymous caller's keyed hash");
    assert.ok(haystack.includes(keyed("user", "user-es256")), "a JWT caller's keyed hash");
  });
});
