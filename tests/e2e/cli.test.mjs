// The `tollgate` CLI against the real stack: the built Worker in Miniflare, redis-server behind
// redis-rest, and the demo origin. Every command is run as a user runs it, with TOLLGATE_URL and
// TOLLGATE_ADMIN_TOKEN in the environment, and judged by its exit code and output.
//
// Binary: target/debug/tollgate (`cargo build -p tollgate-cli`), or TOLLGATE_BIN.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";

import { ROOT, startStack } from "./support/stack.mjs";

const BIN = process.env.TOLLGATE_BIN || path.join(ROOT, "target/debug/tollgate");
const RUN_TIMEOUT_MS = 30_000;

// Limits differ per tier so a response's X-RateLimit-Limit tells which tier the caller got.
// The in-isolate cache layer and the API-key lookup cache are off, so an invalidation or a
// revocation shows on the very next request.
const POLICY = {
  tiers: {
    ANON: { limits: [{ limit: 500, window: "1h" }] },
    BASIC: { limits: [{ limit: 100, window: "1h" }] },
    PRO: { limits: [{ limit: 1000, window: "1h" }] },
  },
  routes: [
    {
      name: "config",
      path: "/api/config/{name}",
      methods: ["GET"],
      upstream: "/config/{name}",
      cache: { class: "STATIC_CONFIG", tags: ["config"], warm: ["app"] },
    },
  ],
  identity: { api_key_cache: "0ms" },
  cache: { isolate_ttl: "0ms" },
};

let stack;

before(async () => {
  if (!existsSync(BIN)) {
    throw new Error(`${BIN} not found: build it with \`cargo build -p tollgate-cli\` or set TOLLGATE_BIN`);
  }
  stack = await startStack({ policy: POLICY });
});

after(async () => {
  await stack?.stop();
});

/** Runs the CLI with the stack's URL and admin token (unless overridden); never throws. */
function tollgate(args, { env = {}, stdin = "ignore" } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, {
      cwd: ROOT,
      stdio: [stdin, "pipe", "pipe"],
      env: {
        ...process.env,
        NO_COLOR: "1",
        TOLLGATE_URL: stack.url,
        TOLLGATE_ADMIN_TOKEN: stack.adminToken,
        ...env,
      },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal, stdout, stderr });
    });
  });
}

/** Runs the CLI with --json, expects exit 0 and returns the parsed stdout. */
async function tollgateJson(args) {
  const run = await tollgate([...args, "--json"]);
  assert.equal(run.code, 0, describe(args, run));
  try {
    return JSON.parse(run.stdout);
  } catch (err) {
    throw new Error(`${describe(args, run)}\nstdout is not JSON: ${err.message}`);
  }
}

function describe(args, run) {
  return `tollgate ${args.join(" ")} → exit ${run.code}\n--- stdout ---\n${run.stdout}--- stderr ---\n${run.stderr}`;
}

async function getConfig(name, headers = {}) {
  const res = await stack.fetch(`/api/config/${name}`, { headers });
  await res.arrayBuffer();
  return res;
}

test("health reports ok, redis mode, the policy and the build", async () => {
  const run = await tollgate(["health"]);
  assert.equal(run.code, 0, describe(["health"], run));
  assert.match(run.stdout, /^status\s+ok$/m);
  assert.match(run.stdout, /^mode\s+redis$/m);
  assert.match(run.stdout, /^redis\s+reachable/m);
  assert.match(run.stdout, /^policy\s+\S+ \(3 tiers: /m);
  assert.match(run.stdout, /^build\s+tollgate /m);

  const health = await tollgateJson(["health"]);
  assert.equal(health.status, "ok");
  assert.equal(health.mode, "redis");
  assert.equal(health.redis.reachable, true);
  assert.deepEqual([...health.policy.tiers].sort(), ["ANON", "BASIC", "PRO"]);
});

test("health without a token shows the public status only", async () => {
  const run = await tollgate(["health"], { env: { TOLLGATE_ADMIN_TOKEN: "" } });
  assert.equal(run.code, 0, describe(["health"], run));
  assert.equal(run.stdout, "status   ok\n");
});

test("a wrong token exits 3 with one line", async () => {
  for (const args of [["stats"], ["keys", "list"]]) {
    const run = await tollgate(args, { env: { TOLLGATE_ADMIN_TOKEN: "wrong-token" } });
    assert.equal(run.code, 3, describe(args, run));
    assert.equal(run.stderr, "error: 401 unauthorized: check TOLLGATE_ADMIN_TOKEN\n");
    assert.equal(run.stdout, "");
  }
});

test("stats count traffic per route and tier", async () => {
  for (let i = 0; i < 3; i += 1) {
    const res = await getConfig("app");
    assert.equal(res.status, 200);
  }
  const stats = await tollgateJson(["stats"]);
  const row = stats.routes.find((r) => r.route === "config" && r.tier === "ANON");
  assert.ok(row, `no config/ANON row in ${JSON.stringify(stats.routes)}`);
  assert.ok(row.allowed >= 3, JSON.stringify(row));
  assert.ok(row.hit >= 1, JSON.stringify(row));
  assert.ok(stats.totals.requests >= 3, JSON.stringify(stats.totals));
  assert.ok(stats.redis.commands > 0, JSON.stringify(stats.redis));

  const run = await tollgate(["stats"]);
  assert.equal(run.code, 0, describe(["stats"], run));
  assert.match(run.stdout, /^ROUTE\s+TIER\s+REQUESTS\s+ALLOWED\s+DENIED\s+HIT\s+MISS\s+STALE\s+BYPASS\s+HIT RATE\s+SHADOW\s+WARNED$/m);
  assert.match(run.stdout, /^config\s+ANON\s+\d+/m);
  assert.match(run.stdout, /^TOTAL\s+\d+/m);
  assert.match(run.stdout, /^redis\s+\d+ REST requests, \d+ commands: /m);
});

test("keys: create, use, list, revoke, and the key is refused", async () => {
  const created = await tollgateJson(["keys", "create", "--subject", "cli_e2e_user", "--tier", "pro", "--name", "e2e"]);
  assert.match(created.key, /^tg_/);
  assert.equal(created.tier, "PRO");
  const { id, key } = created;

  const withKey = await getConfig("app", { authorization: `Bearer ${key}` });
  assert.equal(withKey.status, 200);
  assert.equal(withKey.headers.get("x-ratelimit-limit"), "1000", "the key's caller is in PRO");

  const listed = await tollgateJson(["keys", "list"]);
  const entry = listed.keys.find((k) => k.id === id);
  assert.ok(entry, `${id} not in ${JSON.stringify(listed.keys)}`);
  assert.equal(entry.tier, "PRO");
  assert.equal(entry.name, "e2e");
  assert.ok(!JSON.stringify(listed).includes(key), "keys list never shows a key");

  const table = await tollgate(["keys", "list"]);
  assert.equal(table.code, 0, describe(["keys", "list"], table));
  assert.match(table.stdout, new RegExp(`^${id}\\s+PRO\\s+e2e\\s`, "m"));

  const revoked = await tollgate(["keys", "revoke", id]);
  assert.equal(revoked.code, 0, describe(["keys", "revoke", id], revoked));
  assert.equal(revoked.stdout, `revoked key ${id}\n`);

  const refused = await getConfig("app", { authorization: `Bearer ${key}` });
  assert.equal(refused.status, 401);

  const again = await tollgate(["keys", "revoke", id]);
  assert.equal(again.code, 1, describe(["keys", "revoke", id], again));
  assert.match(again.stderr, /^error: 404 /);
});

test("keys create prints the key once, with a warning", async () => {
  const run = await tollgate(["keys", "create", "--subject", "cli_e2e_human", "--tier", "BASIC"]);
  assert.equal(run.code, 0, describe(["keys", "create"], run));
  assert.match(run.stdout, /^created key \S+ for "cli_e2e_human" \(tier BASIC\)$/m);
  assert.match(run.stdout, /^ {4}tg_\S+$/m);
  assert.match(run.stderr, /^warning: this is the only time the key is shown/m);
});

test("limits: show, override, enforce, reset", async () => {
  const subject = "cli_e2e_limited";
  const { key } = await tollgateJson(["keys", "create", "--subject", subject, "--tier", "BASIC"]);
  const auth = { authorization: `Bearer ${key}` };

  const before = await tollgateJson(["limits", "show", subject]);
  assert.equal(before.tier, "BASIC");
  assert.equal(before.override, null);
  assert.ok(before.limits.length > 0, JSON.stringify(before));
  const asPro = await tollgateJson(["limits", "show", subject, "--tier", "PRO"]);
  assert.equal(asPro.tier, "PRO");

  const shown = await tollgate(["limits", "show", subject]);
  assert.equal(shown.code, 0, describe(["limits", "show"], shown));
  assert.match(shown.stdout, /^tier\s+BASIC$/m);
  assert.match(shown.stdout, /^override\s+none$/m);
  assert.match(shown.stdout, /^ID\s+SCOPE\s+ALGORITHM\s+LIMIT\s+WINDOW\s+REMAINING\s+RESETS IN$/m);

  const args = ["limits", "override", subject, "--limit", "2", "--window", "1m", "--algorithm", "gcra"];
  const set = await tollgate(args);
  assert.equal(set.code, 0, describe(args, set));
  assert.match(set.stdout, /^override set for cli_e2e_limited: /);
  const overridden = await tollgateJson(["limits", "show", subject]);
  assert.notEqual(overridden.override, null);

  const statuses = [];
  for (let i = 0; i < 3; i += 1) statuses.push((await getConfig("app", auth)).status);
  assert.deepEqual(statuses, [200, 200, 429]);

  const reset = await tollgate(["limits", "reset", subject]);
  assert.equal(reset.code, 0, describe(["limits", "reset"], reset));
  assert.equal(reset.stdout, `reset ${subject}: counters and override removed\n`);
  const after = await tollgateJson(["limits", "show", subject]);
  assert.equal(after.override, null);
  assert.equal((await getConfig("app", auth)).status, 200);

  const tier = await tollgate(["limits", "override", subject, "--tier", "PRO"]);
  assert.equal(tier.code, 0, describe(["limits", "override", "--tier"], tier));
  assert.equal((await getConfig("app", auth)).headers.get("x-ratelimit-limit"), "1000");
  await tollgate(["limits", "reset", subject]);
});

test("limits show: a subject whose key is PRO shows PRO, and every limit line names the tier it is for", async () => {
  const subject = "cli_e2e_pro";
  const pro = await tollgateJson(["keys", "create", "--subject", subject, "--tier", "PRO"]);
  const shown = await tollgate(["limits", "show", subject]);
  assert.equal(shown.code, 0, describe(["limits", "show"], shown));
  assert.match(shown.stdout, new RegExp(`^credentials\\s+API key ${pro.id} \\(PRO\\)$`, "m"));
  assert.match(shown.stdout, /^tier\s+PRO$/m);
  assert.match(shown.stdout, /^tier-pro-1h\s+tier:PRO\s+sliding_window\s+1000\s/m);
  assert.doesNotMatch(shown.stdout, /BASIC/);
  const json = await tollgateJson(["limits", "show", subject]);
  assert.equal(json.tier, "PRO");
  assert.deepEqual(json.credential_tiers, ["PRO"]);
  assert.equal(json.limits.find((l) => l.scope === "tier").tier, "PRO");

  // A second key of another tier: a line for each tier.
  const basic = await tollgateJson(["keys", "create", "--subject", subject, "--tier", "BASIC"]);
  const both = await tollgate(["limits", "show", subject]);
  assert.equal(both.code, 0, describe(["limits", "show"], both));
  assert.match(both.stdout, /^tier\s+BASIC, PRO$/m);
  assert.match(both.stdout, new RegExp(`^credentials\\s+API keys .*${basic.id} \\(BASIC\\)`, "m"));
  assert.match(both.stdout, /^tier-basic-1h\s+tier:BASIC\s/m);
  assert.match(both.stdout, /^tier-pro-1h\s+tier:PRO\s/m);

  // Asked for explicitly, a tier is shown as asked.
  const asked = await tollgateJson(["limits", "show", subject, "--tier", "BASIC"]);
  assert.equal(asked.tier, "BASIC");
  assert.equal(asked.by_tier, undefined);
});

test("invalidate by key: the next request is a MISS", async () => {
  await getConfig("app");
  assert.equal((await getConfig("app")).headers.get("x-cache"), "HIT");

  const run = await tollgate(["invalidate", "--key", "app", "--route", "config"]);
  assert.equal(run.code, 0, describe(["invalidate"], run));
  assert.equal(run.stdout, 'deleted 1 cache entry (key "app" of route "config")\n');
  assert.equal((await getConfig("app")).headers.get("x-cache"), "MISS");
  assert.equal((await getConfig("app")).headers.get("x-cache"), "HIT");
});

test("broad invalidation needs --yes when nobody can answer", async () => {
  const refused = await tollgate(["invalidate", "--tag", "config"]);
  assert.equal(refused.code, 2, describe(["invalidate", "--tag"], refused));
  assert.match(refused.stderr, /^error: refusing to delete every cache entry tagged "config" without confirmation: pass --yes/);
  assert.equal((await getConfig("app")).headers.get("x-cache"), "HIT", "nothing was deleted");

  const done = await tollgateJson(["invalidate", "--tag", "config", "--yes"]);
  assert.equal(done.kind, "tag");
  assert.ok(done.deleted >= 1, JSON.stringify(done));
  assert.equal((await getConfig("app")).headers.get("x-cache"), "MISS");
});

test("warm fills the hot keys, then finds them cached", async () => {
  await tollgate(["invalidate", "--namespace", "config", "--yes"]);
  await stack.origin.reset();

  const warmed = await tollgateJson(["warm"]);
  const app = warmed.warmed.find((w) => w.route === "config" && w.key === "app");
  assert.ok(app, JSON.stringify(warmed));
  assert.equal(app.status, "MISS");
  assert.equal((await stack.origin.hits()).by_path["/config/app"], 1);

  const run = await tollgate(["warm", "--route", "config", "--key", "app"]);
  assert.equal(run.code, 0, describe(["warm"], run));
  assert.match(run.stdout, /^ROUTE\s+KEY\s+STATUS/m);
  assert.match(run.stdout, /^config\s+app\s+HIT/m);
  assert.match(run.stdout, /^warmed 1 key: 0 filled from the origin, 1 already cached, 0 failed$/m);

  assert.equal((await getConfig("app")).headers.get("x-cache"), "HIT");
  assert.equal((await stack.origin.hits()).by_path["/config/app"], 1, "the origin was asked once");
});

test("monitor --count 2 prints a header and two samples, then exits", async () => {
  const traffic = (async () => {
    for (let i = 0; i < 5; i += 1) await getConfig("app");
  })();
  const run = await tollgate(["monitor", "--count", "2"]);
  await traffic;
  assert.equal(run.code, 0, describe(["monitor"], run));
  const lines = run.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 3, run.stdout);
  assert.match(lines[0], /^UTC\s+req\/s\s+allowed\s+denied\s+hit rate\s+redis ms\s+cmd\/req$/);
  for (const line of lines.slice(1)) assert.match(line, /^\d\d:\d\d:\d\d\s+\d+\.\d\s+\d+\s+\d+\s/);

  const json = await tollgate(["monitor", "--count", "2", "--interval", "200ms", "--json"]);
  assert.equal(json.code, 0, describe(["monitor", "--json"], json));
  const samples = json.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(samples.length, 2);
  for (const s of samples) {
    assert.equal(typeof s.requests_per_s, "number");
    assert.equal(typeof s.allowed, "number");
  }
});
