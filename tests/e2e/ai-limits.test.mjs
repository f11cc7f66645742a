// AI traffic end to end: the built Worker in Miniflare, real Redis through redis-rest, the demo
// origin's chat completions. Token quotas reserved in the check and settled after the answer
// (JSON and streamed) and shown in flight until they settle, concurrency slots held by leases,
// shadow limits, quota warnings published once, and what all of it costs in Redis round trips.

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";

import { clearOfWindowEdge, startStack } from "./support/stack.mjs";

const CHAT = "/v1/chat/completions";
const tokens = (id, extra = {}) => ({ id, unit: "tokens", limit: 1000, window: "1d", algorithm: "fixed_window", ...extra });
const chatRoute = (name, extra) => ({ name, path: `/${name}/chat`, methods: ["POST"], upstream: CHAT, ...extra });
const json = (reserve) => ({ unit: "tokens", from: "json", pointer: "/usage/total_tokens", reserve });

const policy = {
  tiers: {
    ANON: { limits: [{ limit: 1000, window: "1h" }] },
    BASIC: { limits: [{ limit: 100, window: "1h" }] },
  },
  redis: { timeout: "3s" },
  routes: [
    chatRoute("tokens", { limits: [tokens("tokens-day")], usage: json(400) }),
    chatRoute("burst", { limits: [tokens("burst-day")], usage: json(200) }),
    chatRoute("inflight", { limits: [tokens("inflight-day")], usage: json(250) }),
    chatRoute("counted", {
      limits: [{ id: "counted-1m", limit: 2, window: "1m" }, tokens("counted-day")],
      usage: { unit: "tokens", from: "header", name: "X-Usage-Tokens", reserve: 300 },
    }),
    chatRoute("slots", { concurrency: { limit: 2, lease: "30s" } }),
    chatRoute("aborts", { concurrency: { limit: 2, lease: "3s" } }),
    chatRoute("warn", {
      limits: [tokens("warn-day", { warn_at: [0.8, 1.0] })],
      usage: { unit: "tokens", from: "header", name: "X-Usage-Tokens", reserve: 100 },
    }),
    chatRoute("trips", { limits: [tokens("trips-day", { limit: 100000 })], usage: json(300), concurrency: { limit: 2, lease: "30s" } }),
    { name: "shadow", path: "/shadow*", limits: [{ limit: 5, window: "1m", mode: "shadow" }] },
  ],
};

let stack;
let admin;

before(async () => {
  stack = await startStack({ policy });
  admin = { authorization: `Bearer ${stack.adminToken}` };
});

after(async () => {
  await stack?.stop();
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A chat completion whose usage totals `total` tokens (4 prompt words + `total - 4`). */
function chat(path, caller, total, { stream = false, tokenDelayMs = 0, signal } = {}) {
  return stack.fetch(path, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "cf-connecting-ip": caller,
      ...(tokenDelayMs ? { "x-origin-token-delay-ms": String(tokenDelayMs) } : {}),
    },
    body: JSON.stringify({ messages: [{ role: "user", content: "four words of prompt" }], max_tokens: total - 4, stream }),
    signal,
  });
}

/** The usage an answer reported: its JSON `usage`, or its stream's final usage chunk. */
async function reported(res) {
  const text = await res.text();
  if (!res.headers.get("content-type")?.startsWith("text/event-stream")) return JSON.parse(text).usage.total_tokens;
  const events = text.split("\n\n").filter((e) => e.startsWith("data: {")).map((e) => JSON.parse(e.slice(6)));
  return events.at(-1).usage.total_tokens;
}

/** The limits view of an anonymous caller under the ANON tier. */
async function viewOf(caller) {
  const path = `/_tollgate/limits/ip:${caller}?tier=ANON`;
  // A read that changes nothing: tried once more if the pooled connection was reset under it.
  const res = await stack.fetch(path, { headers: admin }).catch(() => stack.fetch(path, { headers: admin }));
  assert.equal(res.status, 200);
  return res.json();
}

async function limitsOf(caller) {
  return (await viewOf(caller)).limits;
}

async function used(caller, id) {
  const l = (await limitsOf(caller)).find((x) => x.id === id);
  assert.ok(l, `no limit ${id}`);
  return l.used;
}

/** Polls `probe` until it returns a truthy value (the background settle runs after the answer). */
async function eventually(what, probe, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function originChat() {
  return (await fetch(`${stack.origin.url}/_origin/chat`)).json();
}

async function resetOrigin() {
  await stack.origin.reset();
}

/** The raw counter of a limit's single state key (`fw:<start>:<count>`): the overshoot shows here. */
async function rawCount(id) {
  const keys = await stack.redisRest.command("KEYS", `*:${id}`);
  assert.equal(keys.length, 1, `one state key for ${id}: ${keys}`);
  const value = await stack.redisRest.command("GET", keys[0]);
  return Number(value.split(":")[2]);
}

describe("token quotas: reserve in the check, settle after the answer", () => {
  for (const stream of [false, true]) {
    test(`${stream ? "streamed" : "JSON"} answers of 300 tokens: charged what the origin reported; the 4th is refused before the origin`, async () => {
      const caller = stream ? "10.14.1.2" : "10.14.1.1";
      await resetOrigin();
      let sum = 0;
      for (let i = 1; i <= 3; i++) {
        const res = await chat("/tokens/chat", caller, 300, { stream });
        assert.equal(res.status, 200);
        sum += await reported(res);
        await eventually(`settled ${i}`, async () => (await used(caller, "tokens-day")) === sum);
      }
      assert.equal(sum, 900);
      // 100 tokens left, the reservation is 400.
      const refused = await chat("/tokens/chat", caller, 300, { stream });
      assert.equal(refused.status, 429);
      assert.equal(refused.headers.get("content-type"), "application/problem+json");
      assert.match(refused.headers.get("ratelimit-policy"), /"tokens-day";q=1000;qu="tokens";w=86400/);
      assert.equal((await refused.json()).limit, "tokens-day");
      assert.equal((await originChat()).requests, 3, "the refused request never reached the origin");
      assert.equal(await used(caller, "tokens-day"), 900);
      assert.equal(await used(caller, "tier-anon-1h"), 3, "the token denial consumed no request");
    });
  }

  test("a request-count denial consumes no tokens", async () => {
    const caller = "10.14.1.3";
    await clearOfWindowEdge(60_000);
    for (let i = 0; i < 2; i++) {
      const res = await chat("/counted/chat", caller, 100);
      assert.equal(res.status, 200);
      await res.text();
    }
    await eventually("settled", async () => (await used(caller, "counted-day")) === 200);
    const refused = await chat("/counted/chat", caller, 100);
    assert.equal(refused.status, 429);
    assert.equal((await refused.json()).limit, "counted-1m");
    assert.equal(await used(caller, "counted-day"), 200, "the 300-token reservation was not kept");
  });

  test("50 concurrent requests overshoot by no more than min(slots, ⌊quota / reserve⌋) × (answer − reserve)", async () => {
    const caller = "10.14.1.4";
    await resetOrigin();
    // quota 1000, reserve 200, answers of 300: bound 5 × 100 = 500 over the quota.
    const all = await Promise.all(
      Array.from({ length: 50 }, () => chat("/burst/chat", caller, 300).then(async (res) => ({ status: res.status, body: await res.text() }))),
    );
    const allowed = all.filter((r) => r.status === 200);
    assert.equal(allowed.length + all.filter((r) => r.status === 429).length, 50);
    const sum = allowed.reduce((acc, r) => acc + JSON.parse(r.body).usage.total_tokens, 0);
    const count = await eventually("all settled", async () => {
      const c = await rawCount("burst-day");
      return c === sum ? c : 0;
    });
    assert.equal(count, sum, "Tollgate charged exactly what the origin reported");
    assert.ok(count <= 1000 + 500, `charged ${count}, over the bound`);
    // Truly concurrent, 5 reservations of 200 fit; when the isolate serializes the burst, answers
    // settle (300 each) before later checks run, and ⌊1000 / 300⌋ = 3 fit. Never fewer.
    assert.ok(allowed.length >= 3, `at least the quota's worth of answers passed (${allowed.length})`);
    assert.equal((await originChat()).requests, allowed.length, "the origin saw exactly the admitted requests");
  });
});

describe("reservations in flight", () => {
  test("while a slow streamed completion runs, the limits view shows its one reservation; once it settled, none, and used is what the origin reported", async () => {
    const caller = "10.14.6.1";
    const usedOn = (view) => view.limits.find((l) => l.id === "inflight-day")?.used;
    const idle = [{ unit: "tokens", in_flight: 0, units: 0 }];
    const before = await viewOf(caller);
    assert.deepEqual(before.reservations, idle);
    // 36 completion tokens at 50 ms each: the stream runs for about 1.8 s.
    const res = await chat("/inflight/chat", caller, 40, { stream: true, tokenDelayMs: 50 });
    assert.equal(res.status, 200);
    const during = await viewOf(caller);
    assert.deepEqual(during.reservations, [{ unit: "tokens", in_flight: 1, units: 250 }], JSON.stringify(during.reservations));
    assert.equal(usedOn(during), 250, "used counts the reservation while it is in flight");
    const total = await reported(res);
    assert.equal(total, 40);
    const settled = await eventually("the settlement", async () => {
      const view = await viewOf(caller);
      return view.reservations[0]?.in_flight === 0 ? view : null;
    });
    assert.deepEqual(settled.reservations, idle);
    assert.equal(usedOn(settled), total, "settled at what the origin reported");
  });
});

describe("concurrency slots", () => {
  test("10 concurrent streams from one caller: never more than 2 in flight; slots free when streams end", async () => {
    const caller = "10.14.2.1";
    await resetOrigin();
    const started = await Promise.all(Array.from({ length: 10 }, () => chat("/slots/chat", caller, 24, { stream: true, tokenDelayMs: 50 })));
    const admitted = started.filter((r) => r.status === 200);
    const refused = started.filter((r) => r.status === 429);
    assert.equal(admitted.length, 2);
    assert.equal(refused.length, 8);
    const problem = await refused[0].json();
    assert.equal(problem.limit, "route-slots-concurrency");
    assert.ok(Number(refused[0].headers.get("retry-after")) >= 1);
    assert.match(refused[0].headers.get("ratelimit-policy"), /"route-slots-concurrency";q=2;qu="concurrent-requests"/);
    assert.match(refused[0].headers.get("ratelimit"), /"route-slots-concurrency";r=0/);
    for (const r of refused.slice(1)) await r.text();
    // The limits view counts the leases in flight while the two streams run.
    const view = await (await stack.fetch(`/_tollgate/limits/ip:${caller}?tier=ANON`, { headers: admin })).json();
    assert.deepEqual(view.leases.find((l) => l.route === "slots")?.in_flight, 2, JSON.stringify(view.leases));
    await Promise.all(admitted.map((r) => r.text()));
    assert.equal((await originChat()).max_in_flight, 2, "the origin never had more than 2 in flight");
    const next = await eventually("a slot after the streams ended", async () => {
      const res = await chat("/slots/chat", caller, 8, { stream: true });
      if (res.status === 200) return res;
      await res.text();
      return null;
    }, 5_000);
    await next.text();
  });

  // Under Miniflare the Worker is not told when its caller disconnects mid-stream (a pending write
  // to the caller never settles), so the release at abort is not observed here: the slot frees
  // at its lease deadline, the bound that also covers a vanished isolate.
  test("a client that aborts its stream stops the origin's stream; its slot frees by the lease deadline", async () => {
    const caller = "10.14.2.2";
    await resetOrigin();
    const aborts = [new AbortController(), new AbortController()];
    const held = await Promise.all(aborts.map((a) => chat("/aborts/chat", caller, 200, { stream: true, tokenDelayMs: 100, signal: a.signal })));
    assert.deepEqual(held.map((r) => r.status), [200, 200]);
    for (const r of held) await r.body.getReader().read();
    const full = await chat("/aborts/chat", caller, 8);
    assert.equal(full.status, 429, "both slots are held");
    await full.text();
    const abortedAt = Date.now();
    for (const a of aborts) a.abort();
    await eventually("the origin saw the aborts", async () => (await originChat()).aborted >= 2, 5_000);
    const res = await eventually("a slot after the aborts", async () => {
      const r = await chat("/aborts/chat", caller, 8);
      if (r.status === 200) return r;
      await r.text();
      return null;
    }, 6_000);
    await res.text();
    assert.ok(Date.now() - abortedAt < 5_000, "freed within the 3 s lease (plus polling)");
  });

  test("a lease whose holder vanished frees at its deadline", async () => {
    const caller = "10.14.2.3";
    const first = await chat("/slots/chat", caller, 8);
    assert.equal(first.status, 200);
    await first.text();
    const { subject_hash: hash } = await (await stack.fetch(`/_tollgate/limits/ip:${caller}?tier=ANON`, { headers: admin })).json();
    const key = `factory:ratelimit:v1:{${hash}}:lease:slots`;
    // Two leases of isolates that died mid-request, due in 1.5 s (the script compares deadlines
    // with Redis time).
    const [seconds, micros] = await stack.redisRest.command("TIME");
    const deadline = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) + 1_500;
    await stack.redisRest.command("ZADD", key, deadline, "ghost-a", deadline, "ghost-b");
    await stack.redisRest.command("PEXPIREAT", key, deadline);
    const blocked = await chat("/slots/chat", caller, 8);
    assert.equal(blocked.status, 429, "the ghosts hold both slots");
    await blocked.text();
    await sleep(1_600);
    const res = await chat("/slots/chat", caller, 8);
    assert.equal(res.status, 200, "expired leases do not count");
    await res.text();
  });
});

describe("shadow limits", () => {
  test("a shadow limit of 5/min with 10 requests: all reach the origin, 5 shadow denials, the header names it", async () => {
    const caller = "10.14.3.1";
    await clearOfWindowEdge(60_000);
    await resetOrigin();
    const named = [];
    for (let i = 0; i < 10; i++) {
      const res = await stack.fetch("/shadow/x", { headers: { "cf-connecting-ip": caller } });
      assert.equal(res.status, 200);
      await res.text();
      named.push(res.headers.get("x-ratelimit-shadow-denied"));
    }
    assert.equal((await stack.origin.hits()).by_path["/shadow/x"], 10);
    assert.deepEqual(named, [null, null, null, null, null, ...Array(5).fill('"route-shadow-1m"')]);
    const stats = await (await stack.fetch("/_tollgate/stats", { headers: admin })).json();
    const row = stats.routes.find((r) => r.route === "shadow" && r.tier === "ANON");
    assert.equal(row.shadow_denied, 5, JSON.stringify(row));
    assert.equal(row.allowed, 10);
  });
});

/** Subscribes to `channel` on redis-server directly; `messages()` are the payloads so far. */
async function subscribe(channel) {
  const socket = net.connect({ host: "127.0.0.1", port: stack.redis.port });
  let buffer = "";
  socket.on("data", (chunk) => {
    buffer += chunk.toString();
  });
  await new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.once("connect", resolve);
  });
  socket.write(`SUBSCRIBE ${channel}\r\n`);
  await eventually("subscribed", async () => buffer.includes("subscribe"));
  return {
    messages: () => [...buffer.matchAll(/^(\{.*\})\r$/gm)].map((m) => JSON.parse(m[1])),
    close: () => socket.destroy(),
  };
}

describe("quota warnings", () => {
  test("crossing 80% and 100% of a daily quota publishes exactly two messages, however many cross together", async () => {
    const sub = await subscribe("system:quota_warning");
    try {
      const caller = "10.14.4.1";
      // 15 concurrent requests of 100 tokens against a 1000-token quota.
      const all = await Promise.all(Array.from({ length: 15 }, () => chat("/warn/chat", caller, 100).then(async (r) => (await r.text(), r.status))));
      assert.equal(all.filter((s) => s === 200).length, 10);
      await eventually("settled", async () => (await used(caller, "warn-day")) === 1000);
      await sleep(300);
      const got = sub.messages().filter((m) => m.limit === "warn-day");
      assert.deepEqual(got.map((m) => m.fraction).sort(), [0.8, 1]);
      for (const m of got) {
        assert.equal(m.unit, "tokens");
        assert.equal(m.quota, 1000);
        assert.equal(m.window_ms, 86_400_000);
        assert.match(m.subject, /^[0-9a-f]{64}$/, "the subject as its hash, never the IP");
        assert.ok(m.used >= (m.fraction === 1 ? 1000 : 800));
        assert.ok(m.time > 1_600_000_000_000);
      }
    } finally {
      sub.close();
    }
  });
});

describe("cost in Redis round trips", () => {
  test("a metered, slotted request: one round trip before the origin, one in the background after it", async () => {
    const caller = "10.14.5.1";
    const warm = await chat("/trips/chat", caller, 100, { stream: true });
    await warm.text();
    await sleep(300);
    await stack.redisRest.resetStats();
    const res = await chat("/trips/chat", caller, 100, { stream: true });
    assert.equal(res.status, 200);
    await res.text();
    const s = await eventually("the settlement", async () => {
      const st = await stack.redisRest.stats();
      return (st.commands.by_name.evalsha ?? 0) >= 3 ? st : null;
    });
    const flushes = s.commands.by_name.hsetnx ?? 0;
    assert.equal(s.commands.by_name.evalsha, 3, "check, then settle + release");
    assert.equal(s.http_requests.total - flushes, 2, "two REST requests: the check, and the settlement with the release");
  });
});
