// Tollgate's live events through the admin API: `GET /_tollgate/events` on the built Worker in
// Miniflare, which subscribes on redis-rest with its own credentials and streams the events
// re-framed (`event: invalidation`, `data: <json>`); and `tollgate monitor --events` on top of it.
//
// Binary for the CLI tests: target/debug/tollgate (`cargo build -p tollgate-cli`), or TOLLGATE_BIN.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";

import { ROOT, startStack } from "./support/stack.mjs";

const BIN = process.env.TOLLGATE_BIN || path.join(ROOT, "target/debug/tollgate");

/** How long an event may take from the invalidation's answer to the listener, ms. */
const WITHIN_MS = 1000;

const POLICY = {
  tiers: {
    ANON: { limits: [{ limit: 500, window: "1h" }] },
    BASIC: { limits: [{ limit: 100, window: "1h" }] },
  },
  routes: [
    {
      name: "config",
      path: "/api/config/{name}",
      methods: ["GET"],
      upstream: "/config/{name}",
      cache: { class: "STATIC_CONFIG", tags: ["config"] },
    },
    // Any path under /warned warns at half of 2 requests an hour: the first request publishes.
    { name: "warned", path: "/warned*", limits: [{ id: "warned-hour", limit: 2, window: "1h", warn_at: [0.5] }] },
  ],
};

let stack;

before(async () => {
  stack = await startStack({ policy: POLICY });
});

after(async () => {
  await stack?.stop();
});

const admin = () => ({ authorization: `Bearer ${stack.adminToken}` });

/**
 * Opens `/_tollgate/events` and reads it event by event. `next(pred, ms)` resolves with the
 * first event (`{event, data}`, comments as `{comment}`) matching `pred` within `ms`.
 */
async function openEvents(query = "") {
  const controller = new AbortController();
  const res = await stack.fetch(`/_tollgate/events${query}`, { headers: admin(), signal: controller.signal });
  if (res.status !== 200) assert.fail(`GET /_tollgate/events → ${res.status}: ${await res.text()}`);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const queue = [];
  let waiter = null;
  const pump = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const item = {};
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) item.comment = line.slice(1).trim();
            else if (line.startsWith("event: ")) item.event = line.slice(7);
            else if (line.startsWith("data: ")) item.data = JSON.parse(line.slice(6));
          }
          queue.push(item);
          waiter?.();
        }
      }
    } catch {
      // aborted
    }
  })();
  async function next(pred, ms = WITHIN_MS) {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = queue.findIndex(pred);
      if (i >= 0) return queue.splice(i, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching event within ${ms} ms; seen ${JSON.stringify(queue)}`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
  return {
    res,
    next,
    async close() {
      controller.abort();
      await pump;
    },
  };
}

async function invalidateTag(tag) {
  const res = await stack.fetch("/_tollgate/invalidate", {
    method: "POST",
    headers: { ...admin(), "content-type": "application/json" },
    body: JSON.stringify({ tag }),
  });
  assert.equal(res.status, 200);
  return res.json();
}

async function openSubscriptions() {
  const res = await fetch(`${stack.redisRest.url}/_rest/levels`, {
    headers: { authorization: `Bearer ${stack.redisRest.token}` },
  });
  return (await res.json()).subscriptions.open;
}

async function eventually(check, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test("the event stream needs the admin token and names only Tollgate's channels", async () => {
  const none = await stack.fetch("/_tollgate/events");
  assert.equal(none.status, 401);
  await none.arrayBuffer();
  const other = await stack.fetch("/_tollgate/events?channels=system:*", { headers: admin() });
  assert.equal(other.status, 400);
  assert.equal(other.headers.get("content-type"), "application/problem+json");
  assert.match((await other.json()).detail, /channels: unknown channel "system:\*"/);
});

test("an invalidation made through the admin API is received within a second", async () => {
  const events = await openEvents();
  try {
    assert.equal(events.res.headers.get("content-type"), "text/event-stream; charset=utf-8");
    const ready = await events.next((e) => e.event === "ready", 5000);
    assert.deepEqual(ready.data.channels, ["invalidation", "quota_warning"]);
    const asked = Date.now();
    const done = await invalidateTag("config");
    const got = await events.next((e) => e.event === "invalidation", WITHIN_MS - (Date.now() - asked));
    const latency = Date.now() - asked;
    assert.deepEqual(
      { kind: got.data.kind, target: got.data.target, at_ms: got.data.at_ms },
      { kind: "tag", target: "config", at_ms: done.at_ms },
    );
    console.log(`# invalidation received ${latency} ms after it was asked for`);
  } finally {
    await events.close();
  }
});

test("a quota warning is passed on, and a stream of one channel gets nothing of the other", async () => {
  const warnings = await openEvents("?channels=quota_warning");
  try {
    const ready = await warnings.next((e) => e.event === "ready", 5000);
    assert.deepEqual(ready.data.channels, ["quota_warning"]);
    await invalidateTag("config");
    const warning = { subject: "user-7", limit: "hourly", used: 90, limit_value: 100 };
    await stack.redisRest.command("PUBLISH", "system:quota_warning", JSON.stringify(warning));
    const got = await warnings.next((e) => e.event === "quota_warning");
    assert.deepEqual(got.data, warning);
    await assert.rejects(warnings.next((e) => e.event === "invalidation", 300), /no matching event/);
  } finally {
    await warnings.close();
  }
});

test("a quota warning the limiter publishes reaches the stream within a second", async () => {
  const warnings = await openEvents("?channels=quota_warning");
  try {
    await warnings.next((e) => e.event === "ready", 5000);
    const asked = Date.now();
    const res = await stack.fetch("/warned/a", { headers: { "cf-connecting-ip": "198.51.100.77" } });
    await res.arrayBuffer();
    const got = await warnings.next((e) => e.event === "quota_warning", WITHIN_MS - (Date.now() - asked));
    assert.deepEqual(
      { limit: got.data.limit, used: got.data.used, quota: got.data.quota, fraction: got.data.fraction },
      { limit: "warned-hour", used: 1, quota: 2, fraction: 0.5 },
    );
    assert.equal(typeof got.data.time, "number");
  } finally {
    await warnings.close();
  }
});

test("a client that goes away closes the Worker's subscription on Redis within a keep-alive", async () => {
  // The runtime learns that a client left when it next writes to it; the Worker writes a
  // keep-alive of its own every 5 s, so the subscription is closed within that (allowing 3 s more on
  // a busy machine).
  const events = await openEvents();
  await events.next((e) => e.event === "ready", 5000);
  assert.ok((await openSubscriptions()) >= 1);
  const closed = Date.now();
  await events.close();
  assert.ok(await eventually(async () => (await openSubscriptions()) === 0, 8000), "the subscription was closed");
  console.log(`# the subscription on Redis closed ${Date.now() - closed} ms after the client left`);
});

test("the Worker sends keep-alives of its own on a quiet stream", async () => {
  const events = await openEvents("?channels=quota_warning");
  try {
    await events.next((e) => e.event === "ready", 5000);
    await events.next((e) => e.comment === "keepalive", 6000);
  } finally {
    await events.close();
  }
});

test("tollgate monitor --events shows an invalidation made with tollgate invalidate within a second", async (t) => {
  if (!existsSync(BIN)) {
    throw new Error(`${BIN} not found: build it with \`cargo build -p tollgate-cli\` or set TOLLGATE_BIN`);
  }
  const env = { ...process.env, NO_COLOR: "1", TOLLGATE_URL: stack.url, TOLLGATE_ADMIN_TOKEN: stack.adminToken };
  const monitor = spawn(BIN, ["monitor", "--events"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env });
  const guard = setTimeout(() => monitor.kill("SIGKILL"), 20_000);
  t.after(() => {
    clearTimeout(guard);
    if (monitor.exitCode === null && monitor.signalCode === null) process.kill(monitor.pid, "SIGKILL");
  });
  let stdout = "";
  let stderr = "";
  const seen = [];
  monitor.stdout.on("data", (chunk) => {
    stdout += chunk;
    seen.push(...String(chunk).split("\n").filter(Boolean).map((line) => ({ line, at: Date.now() })));
  });
  monitor.stderr.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => monitor.once("close", (code, signal) => resolve(code ?? signal)));

  assert.ok(
    await eventually(() => /listening/.test(stderr), 10_000),
    `the monitor says when it listens\n${stdout}\n${stderr}`,
  );
  const started = Date.now();
  const run = spawn(BIN, ["invalidate", "--tag", "config", "--yes"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env });
  const code = await new Promise((resolve) => run.once("close", resolve));
  assert.equal(code, 0);
  assert.ok(
    await eventually(() => seen.some((s) => /\binvalidation\b.*\bconfig\b/.test(s.line)), WITHIN_MS),
    `the invalidation is shown\n--- stdout ---\n${stdout}--- stderr ---\n${stderr}`,
  );
  const shown = seen.find((s) => /\binvalidation\b/.test(s.line));
  const latency = shown.at - started;
  console.log(`# monitor printed the invalidation ${latency} ms after tollgate invalidate started`);
  assert.ok(latency < WITHIN_MS, `shown ${latency} ms after tollgate invalidate started`);
  assert.match(shown.line, /^\d\d:\d\d:\d\d(\.\d+)?\s+invalidation\s+tag config\s+deleted \d+/);

  process.kill(monitor.pid, "SIGINT");
  assert.equal(await exited, 0, `Ctrl-C ends the monitor cleanly\n${stderr}`);
});

test("tollgate monitor --events --json prints each event as one JSON line", async (t) => {
  const env = { ...process.env, NO_COLOR: "1", TOLLGATE_URL: stack.url, TOLLGATE_ADMIN_TOKEN: stack.adminToken };
  const monitor = spawn(BIN, ["monitor", "--events", "--json", "--channels", "invalidation"], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env,
  });
  const guard = setTimeout(() => monitor.kill("SIGKILL"), 20_000);
  t.after(() => {
    clearTimeout(guard);
    if (monitor.exitCode === null && monitor.signalCode === null) process.kill(monitor.pid, "SIGKILL");
  });
  let stdout = "";
  let stderr = "";
  monitor.stdout.on("data", (chunk) => (stdout += chunk));
  monitor.stderr.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => monitor.once("close", (code, signal) => resolve(code ?? signal)));
  assert.ok(await eventually(() => /listening/.test(stderr), 10_000), stderr);
  const done = await invalidateTag("config");
  assert.ok(await eventually(() => stdout.includes("\n"), WITHIN_MS), `${stdout}\n${stderr}`);
  const line = JSON.parse(stdout.split("\n")[0]);
  assert.equal(line.event, "invalidation");
  assert.deepEqual({ kind: line.data.kind, target: line.data.target, at_ms: line.data.at_ms }, {
    kind: "tag",
    target: "config",
    at_ms: done.at_ms,
  });
  assert.equal(typeof line.received_ms, "number");
  process.kill(monitor.pid, "SIGTERM");
  assert.equal(await exited, 0);
});

test("in memory mode the event stream is a 503 problem", async () => {
  const memory = await startStack({ policy: POLICY, redis: false, origin: false });
  try {
    const res = await memory.fetch("/_tollgate/events", { headers: { authorization: `Bearer ${memory.adminToken}` } });
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("content-type"), "application/problem+json");
    await res.arrayBuffer();
  } finally {
    await memory.stop();
  }
});
