// bench/run's driver: starts the stack, runs every scenario with wrk in interleaved rounds
// (peer, tollgate, peer, tollgate, ...), and writes bench/results/<date>.{json,md} and latest.md.
//
//   node bench/lib/main.mjs [--quick] [--rounds N] [--seconds S] [--threads T] [--connections C]
//                           [--only id,id] [--keep-tmp] [scenario id ...]
//
// `faults` alone (`./bench/run faults`, or `--only faults`) runs only the faults scenario, on its
// own stack (bench/lib/faults.mjs).

import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";

import { runFaults, startProxy } from "./faults.mjs";
import { NET_CONNECTIONS, NET_DELAYS_MS, NET_LOADS, NET_SYSTEMS, netGroup, netId, probeKeys } from "./net.mjs";
import { HOST, cpuNs, machineCpu, sleep, stopAll } from "./proc.mjs";
import { profileWorker } from "./profile.mjs";
import { renderMarkdown } from "./report.mjs";
import { startOrigin, startRedis, startRedisRest, startWorkerd } from "./stack.mjs";
import { runWrk } from "./wrk.mjs";

const ROOT = path.resolve(fileURLToPath(import.meta.url), "../../..");

// ------------------------------------------------------------------------------------------------
// Options

function parseArgs(argv) {
  // One connection per wrk thread: bench/wrk/bench.lua pairs request() and response() per thread
  // to measure latency (wrk's own latency statistics are wrong here; see that file).
  const o = { rounds: 3, seconds: 4, threads: 32, connections: 32, warmupSeconds: 1, only: null, keepTmp: false, quick: false };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    const next = () => argv[++i];
    if (a === "--quick") {
      o.quick = true;
      o.rounds = 1;
      o.seconds = 2;
      o.warmupSeconds = 1;
    } else if (a === "--rounds") o.rounds = Number(next());
    else if (a === "--seconds") o.seconds = Number(next());
    else if (a === "--connections") {
      o.connections = Number(next());
      o.threads = o.connections;
    }
    else if (a === "--only") o.only = next().split(",");
    else if (a === "--keep-tmp") o.keepTmp = true;
    else if (a === "--hold") o.hold = true;
    else if (a === "--no-profile") o.noProfile = true;
    else if (a === "--no-build") {
      // handled by bench/run
    } else if (/^[a-z][a-z0-9-]*$/.test(a)) o.only = [...(o.only ?? []), a]; // `./bench/run faults`
    else throw new Error(`unknown option ${a} (see bench/README.md)`);
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const onlyFaults = Array.isArray(opts.only) && opts.only.length > 0 && opts.only.every((id) => id === "faults");
const log = (...a) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);

// ------------------------------------------------------------------------------------------------
// Policies: big limits for throughput, one tiny route for denials.

const BIG = 100_000_000;
const POLICY_BIG = {
  tiers: {
    ANON: { limits: [{ limit: BIG, window: "1h" }] },
    BASIC: { limits: [{ limit: BIG, window: "1h" }] },
    PRO: { limits: [{ limit: BIG, window: "1h" }] },
  },
  routes: [
    { name: "chat", path: "/api/chat*", limits: [{ limit: BIG, window: "1m" }] },
    { name: "search", path: "/api/search*", limits: [{ limit: BIG, window: "1m" }] },
    { name: "tiny", path: "/api/tiny*", limits: [{ limit: 1, window: "1h" }] },
    {
      name: "config", path: "/api/config/{name}", methods: ["GET"], upstream: "/config/{name}",
      cache: { class: "STATIC_CONFIG", key: "path" },
    },
    {
      name: "rag", path: "/api/rag/context", methods: ["POST"], upstream: "/rag/context",
      cache: { class: "FREQUENT_DATA", key: "json_body" },
    },
  ],
};
// Tollgate runs with its defaults: each isolate derives its Redis budget from the round trips it
// observes (redis.budget_floor..budget_ceiling). The "default-timeout" scenario shows what a fixed
// 50 ms `redis.timeout` (the old default) does under the same saturating load.
const POLICY_FIXED_50MS = { ...POLICY_BIG, redis: { timeout: "50ms" } };
const POLICY_MAIN = POLICY_BIG;
const POLICY_NOISO = { ...POLICY_MAIN, cache: { isolate_ttl: "0ms" } };

const HOT_CONFIGS = 16;
const HOT_QUERIES = 8;
const MIX_IPS = 40;
const STAMPEDE_N = 64;
const DENY_FIRST_TOTAL = 4000; // first denials per measured run, over all wrk threads
const SETTLE_MS = 250;
const QUIET_CORES = 0.3;
const QUIET_BUDGET_MS = 30_000; // over the whole run
const QUIET_MAX_WAIT_MS = 6_000; // per measured run

// ------------------------------------------------------------------------------------------------
// Helpers

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function spread(values) {
  const xs = values.filter((v) => typeof v === "number" && Number.isFinite(v));
  if (xs.length === 0) return null;
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  } catch (e) {
    return `${e.stdout ?? ""}${e.stderr ?? ""}`.trim() || `unavailable (${e.message.split("\n")[0]})`;
  }
}

function pkgVersion(name) {
  try {
    return JSON.parse(readFileSync(path.join(ROOT, "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return null;
  }
}

function wasmSections(buf) {
  const names = { 0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global", 7: "export", 8: "start", 9: "element", 10: "code", 11: "data", 12: "datacount", 13: "tag" };
  let p = 8;
  const leb = () => {
    let r = 0;
    let s = 0;
    let x;
    do {
      x = buf[p++];
      r += (x & 0x7f) * 2 ** s;
      s += 7;
    } while (x & 0x80);
    return r;
  };
  const out = {};
  while (p < buf.length) {
    const id = buf[p++];
    const len = leb();
    const start = p;
    let name = names[id] ?? `id${id}`;
    if (id === 0) {
      const nl = leb();
      name = `custom:${buf.subarray(p, p + nl).toString()}`;
    }
    const sec = buf.subarray(start, start + len);
    out[name] = { raw: len, gzip: zlib.gzipSync(sec, { level: 9 }).length };
    p = start + len;
  }
  return out;
}

async function adminJson(url, token, method, pathname, body) {
  const res = await fetch(`${url}${pathname}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${pathname}: HTTP ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// ------------------------------------------------------------------------------------------------
// Main

const tmp = mkdtempSync(path.join(os.tmpdir(), "tollgate-bench-"));
process.on("exit", () => {
  if (!opts.keepTmp) rmSync(tmp, { recursive: true, force: true });
});
const results = {
  started_at: new Date().toISOString(),
  options: opts,
  machine: {},
  versions: {},
  build: {},
  startup: {},
  scenarios: {},
  warnings: [],
};

async function main() {
  const t0 = performance.now();
  // ---------------------------------------------------------------- machine, versions, build
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  results.machine = {
    nproc: Number(sh("nproc", [])),
    cpu_model: cpuinfo.match(/^model name\s*:\s*(.*)$/m)?.[1] ?? "unknown",
    mem_total_mb: Math.round(os.totalmem() / 1048576),
    kernel: os.release(),
    loadavg_at_start: os.loadavg(),
  };
  results.versions = {
    node: process.version,
    workerd: sh(path.join(ROOT, "node_modules/.bin/workerd"), ["--version"]),
    wrk: sh("wrk", ["-v"]).split("\n")[0],
    redis_server: sh("redis-server", ["--version"]),
    rustc: sh("rustc", ["--version"]),
    "@upstash/redis": pkgVersion("@upstash/redis"),
    "@upstash/ratelimit": pkgVersion("@upstash/ratelimit"),
    esbuild: pkgVersion("esbuild"),
    compatibility_date: "2026-04-01",
  };

  // Snapshot the Worker build now: others may rebuild build/ while the benchmark runs.
  const tgDir = path.join(tmp, "tollgate-build");
  mkdirSync(tgDir);
  copyFileSync(path.join(ROOT, "build/index.js"), path.join(tgDir, "index.js"));
  copyFileSync(path.join(ROOT, "build/index_bg.wasm"), path.join(tgDir, "index_bg.wasm"));
  const wasm = readFileSync(path.join(tgDir, "index_bg.wasm"));
  const mainImport = readFileSync(path.join(tgDir, "index.js"), "utf8").match(/from\s*"\.\/([^"]+\.wasm)"/)?.[1] ?? "index_bg.wasm";
  results.build = {
    status: process.env.BENCH_BUILD_STATUS ?? "unknown",
    wasm_sha256: createHash("sha256").update(wasm).digest("hex"),
    wasm_mtime: statSync(path.join(ROOT, "build/index_bg.wasm")).mtime.toISOString(),
    wasm_raw_bytes: wasm.length,
    wasm_gzip_bytes: zlib.gzipSync(wasm, { level: 9 }).length,
    js_raw_bytes: statSync(path.join(tgDir, "index.js")).size,
    wasm_import_name: mainImport,
    wasm_sections: wasmSections(wasm),
  };
  log(`Tollgate wasm: ${wasm.length} B raw, ${results.build.wasm_gzip_bytes} B gzip (${results.build.status})`);

  const tgModules = () => [
    { name: "index.js", file: path.join(tgDir, "index.js"), type: "esModule" },
    { name: mainImport, file: path.join(tgDir, "index_bg.wasm"), type: "wasm" },
  ];
  const faults = () =>
    runFaults({ root: ROOT, tmp, modules: tgModules(), log, phaseSeconds: opts.quick ? 3 : Math.max(3, opts.seconds + 1) });
  if (onlyFaults) {
    results.faults_only = true;
    results.faults = await faults();
    results.finished_at = new Date().toISOString();
    results.total_seconds = Math.round((performance.now() - t0) / 1000);
    results.machine.loadavg_at_end = os.loadavg();
    return;
  }

  // Peer bundle (esbuild, one ES module).
  const esbuild = await import(path.join(ROOT, "node_modules/esbuild/lib/main.js"));
  const peerDir = path.join(tmp, "peer-build");
  mkdirSync(peerDir);
  const peerBundle = path.join(peerDir, "worker.js");
  await (esbuild.default ?? esbuild).build({
    entryPoints: [path.join(ROOT, "bench/peer/worker.js")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    conditions: ["workerd", "worker", "browser"],
    outfile: peerBundle,
    logLevel: "warning",
  });
  results.build.peer_bundle_bytes = statSync(peerBundle).size;
  results.build.peer_bundle_gzip_bytes = zlib.gzipSync(readFileSync(peerBundle), { level: 9 }).length;

  // ---------------------------------------------------------------- infrastructure
  const redis = await startRedis(ROOT, tmp);
  const rest = await startRedisRest(ROOT, tmp, redis.port);
  const origin = await startOrigin(ROOT, tmp);
  log(`redis-server :${redis.port}, redis-rest ${rest.url}, origin ${origin.url}`);
  const adminToken = randomBytes(16).toString("hex");
  const common = {
    UPSTASH_REDIS_REST_URL: rest.url,
    UPSTASH_REDIS_REST_TOKEN: rest.token,
    ORIGIN_URL: origin.url,
  };
  const defs = {
    tollgate: {
      label: "Tollgate",
      modules: tgModules(),
      bindings: { ...common, TOLLGATE_ADMIN_TOKEN: adminToken, TOLLGATE_POLICY: JSON.stringify(POLICY_MAIN) },
      readyPath: "/_tollgate/health",
    },
    "tollgate-t50": {
      label: "Tollgate, fixed 50 ms Redis timeout",
      modules: tgModules(),
      bindings: { ...common, TOLLGATE_ADMIN_TOKEN: adminToken, TOLLGATE_POLICY: JSON.stringify(POLICY_FIXED_50MS) },
      readyPath: "/_tollgate/health",
    },
    "tollgate-noiso": {
      label: "Tollgate, isolate_ttl 0ms",
      modules: tgModules(),
      bindings: { ...common, TOLLGATE_ADMIN_TOKEN: adminToken, TOLLGATE_POLICY: JSON.stringify(POLICY_NOISO) },
      readyPath: "/_tollgate/health",
    },
    "peer-sliding": {
      label: "peer, sliding window",
      modules: [{ name: "worker.js", file: peerBundle, type: "esModule" }],
      bindings: { ...common, TOLLGATE_POLICY: JSON.stringify(POLICY_BIG), PEER_ALGORITHM: "sliding" },
      readyPath: "/__peer/health",
    },
    "peer-fixed": {
      label: "peer, fixed window",
      modules: [{ name: "worker.js", file: peerBundle, type: "esModule" }],
      bindings: { ...common, TOLLGATE_POLICY: JSON.stringify(POLICY_BIG), PEER_ALGORITHM: "fixed" },
      readyPath: "/__peer/health",
    },
    bare: {
      label: "bare pass-through",
      modules: [{ name: "worker.js", file: path.join(ROOT, "bench/bare/worker.js"), type: "esModule" }],
      bindings: { ORIGIN_URL: origin.url },
      readyPath: "/__bare/health",
    },
  };

  // ---------------------------------------------------------------- start-up times
  // Fresh processes, spawn → first 200 (Tollgate: GET /_tollgate/health, which builds the gate).
  for (const [id, times] of [["tollgate", 5], ["peer-sliding", 3], ["bare", 3]]) {
    const samples = [];
    for (let i = 0; i < times; i += 1) {
      const w = await startWorkerd({ root: ROOT, name: `${id}-startup-${i}`, dir: path.join(tmp, `startup-${id}-${i}`), ...defs[id] });
      samples.push(w.startupMs);
      await w.proc.stop();
    }
    results.startup[id] = { samples_ms: samples.map((x) => Math.round(x * 10) / 10), ...spread(samples) };
  }
  log(`start-up (spawn → first 200): ${Object.entries(results.startup).map(([k, v]) => `${k} ${v.median.toFixed(0)} ms`).join(", ")}`);

  // ---------------------------------------------------------------- long-running Workers
  const workers = {};
  workers.tollgate = await startWorkerd({ root: ROOT, name: "tollgate", dir: path.join(tmp, "w-tollgate"), ...defs.tollgate });
  workers["tollgate-noiso"] = await startWorkerd({ root: ROOT, name: "tollgate-noiso", dir: path.join(tmp, "w-tollgate-noiso"), ...defs["tollgate-noiso"] });
  workers["tollgate-t50"] = await startWorkerd({ root: ROOT, name: "tollgate-t50", dir: path.join(tmp, "w-tollgate-t50"), ...defs["tollgate-t50"] });

  // API keys for the mix, created through the admin API; the peer gets the same keys in a map.
  const keys = { BASIC: [], PRO: [] };
  for (const tier of ["BASIC", "PRO"]) {
    for (let i = 0; i < 10; i += 1) {
      const created = await adminJson(workers.tollgate.url, adminToken, "POST", "/_tollgate/keys", { subject: `bench-${tier.toLowerCase()}-${i}`, tier });
      keys[tier].push(created.key);
    }
  }
  const peerKeys = Object.fromEntries([...keys.BASIC.map((k) => [k, "BASIC"]), ...keys.PRO.map((k) => [k, "PRO"])]);
  for (const id of ["peer-sliding", "peer-fixed"]) {
    defs[id].bindings.PEER_API_KEYS = JSON.stringify(peerKeys);
    workers[id] = await startWorkerd({ root: ROOT, name: id, dir: path.join(tmp, `w-${id}`), ...defs[id] });
  }
  workers.bare = await startWorkerd({ root: ROOT, name: "bare", dir: path.join(tmp, "w-bare"), ...defs.bare });
  workers["bare-static"] = workers.bare;
  const label = (id) => (id === "bare-static" ? "bare, static 200 (no subrequest)" : defs[id].label);
  results.systems = Object.fromEntries(Object.keys(workers).map((id) => [id, label(id)]));

  // ---------------------------------------------------------------- warm caches
  const IP = "203.0.113.10";
  const warmFetch = (url, pathname, init = {}) =>
    fetch(`${url}${pathname}`, { ...init, headers: { "cf-connecting-ip": IP, ...(init.headers ?? {}) } }).then(async (r) => {
      await r.arrayBuffer();
      return r;
    });
  for (const id of ["tollgate", "tollgate-noiso", "peer-sliding", "peer-fixed"]) {
    for (let i = 1; i <= HOT_CONFIGS; i += 1) await warmFetch(workers[id].url, `/api/config/hot-${i}`);
    for (let i = 1; i <= HOT_QUERIES; i += 1) {
      await warmFetch(workers[id].url, "/api/rag/context", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: `hot question ${i}` }),
      });
    }
  }
  // Check: a second read of a hot key is a HIT on every system.
  for (const id of ["tollgate", "tollgate-noiso", "peer-sliding", "peer-fixed"]) {
    const r = await warmFetch(workers[id].url, "/api/config/hot-1");
    if (r.headers.get("x-cache") !== "HIT") results.warnings.push(`${id}: hot key not a HIT after warming (${r.status} ${r.headers.get("x-cache")})`);
  }

  if (opts.hold) {
    // Keep the stack up for manual work (profiling, curl); Ctrl-C stops everything.
    const info = { redis_port: redis.port, redis_rest: rest.url, redis_rest_token: rest.token, origin: origin.url, admin_token: adminToken, keys, workers: Object.fromEntries(Object.entries(workers).map(([k, w]) => [k, { url: w.url, pid: w.proc.pid }])), pids: { redis_rest: rest.proc.pid, redis_server: redis.proc.pid, origin: origin.proc.pid }, tmp };
    writeFileSync(path.join(tmp, "hold.json"), JSON.stringify(info, null, 2));
    log(`holding; stack description in ${path.join(tmp, "hold.json")}; Ctrl-C to stop`);
    console.log(JSON.stringify(info, null, 2));
    await new Promise(() => {});
  }

  // ---------------------------------------------------------------- measurement
  const procsOf = (w) => ({ workerd: w.proc.pid, redis_rest: rest.proc.pid, redis_server: redis.proc.pid, origin: origin.proc.pid, ...(w.proxy ? { delay_proxy: w.proxy.proc.pid } : {}) });
  const proxies = []; // the net scenarios' delay proxies (ours, not "other load")
  async function snapshot(w) {
    const pids = procsOf(w);
    const [restStats, originHits, serverCmds] = await Promise.all([rest.stats(), origin.hits(), redis.commands()]);
    const cpu = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuNs(pid)]));
    return { t: performance.now(), restStats, originHits, serverCmds, cpu, machine: machineCpu() };
  }

  function compute(before, after, wrk, conns) {
    const requests = wrk.requests;
    const counted = wrk.counted_requests ?? requests;
    const durUs = wrk.counted_duration_us ?? wrk.duration_us;
    // Denominator: answers wrk counted plus the requests still in flight when it stopped (one per
    // connection; the servers finish them, so their Redis and origin work is in the deltas).
    const served = requests + (wrk.counted_requests !== undefined ? 0 : conns);
    const per = (x) => (requests > 0 ? x / served : null);
    const httpDelta = after.restStats.http_requests.total - before.restStats.http_requests.total;
    const cmdDelta = after.restStats.commands.total - before.restStats.commands.total;
    const byName = {};
    for (const [k, v] of Object.entries(after.restStats.commands.by_name)) {
      const d = v - (before.restStats.commands.by_name[k] ?? 0);
      if (d) byName[k] = d;
    }
    const cpuUs = {};
    let ours = wrk.wrk_cpu_ns / 1e9;
    for (const k of Object.keys(after.cpu)) {
      const d = (after.cpu[k] - before.cpu[k]) / 1e9;
      ours += d;
      cpuUs[k] = per(d * 1e6);
    }
    cpuUs.wrk = per(wrk.wrk_cpu_ns / 1e3);
    const wallS = (after.t - before.t) / 1000;
    const foreign = Math.max(0, after.machine.busyS - before.machine.busyS - ours) / wallS;
    const ms = (us) => us / 1000;
    return {
      requests,
      counted_requests: counted,
      duration_s: durUs / 1e6,
      rps: counted / (durUs / 1e6),
      p50_ms: ms(wrk.lat_p50_us),
      p90_ms: ms(wrk.lat_p90_us),
      p99_ms: ms(wrk.lat_p99_us),
      mean_ms: ms(Number(wrk.lat_mean_us)),
      max_ms: ms(wrk.lat_max_us),
      errors: { connect: wrk.err_connect, read: wrk.err_read, write: wrk.err_write, timeout: wrk.err_timeout },
      status: { "2xx": wrk.s2xx, "3xx": wrk.s3xx, 429: wrk.s429, "4xx": wrk.s4xx, "5xx": wrk.s5xx },
      x_cache: { HIT: wrk.hit, MISS: wrk.miss, STALE: wrk.stale, BYPASS: wrk.bypass, none: wrk.nocache },
      redis_http_per_req: per(httpDelta),
      redis_cmds_per_req: per(cmdDelta),
      redis_server_cmds_per_req: per(after.serverCmds.total - before.serverCmds.total),
      origin_per_req: per(after.originHits.total - before.originHits.total),
      cpu_us_per_req: cpuUs,
      foreign_cpu_cores: foreign,
      rest_commands_by_name: byName,
      tollgate_mode: { redis: wrk.m_redis, local: wrk.m_local, other: wrk.m_other, none: wrk.m_none },
      wrk_raw: wrk,
    };
  }

  // Other engineers share this box: before each measured run, wait (within a budget) until the
  // machine is quiet, i.e. what is not ours uses less than QUIET_CORES.
  let quietBudgetMs = QUIET_BUDGET_MS;
  const ourCpuNs = () =>
    Object.values(workers).reduce((acc, w) => acc + cpuNs(w.proc.pid), 0) + proxies.reduce((acc, p) => acc + cpuNs(p.proc.pid), 0) +
    cpuNs(rest.proc.pid) + cpuNs(redis.proc.pid) + cpuNs(origin.proc.pid);
  async function waitQuiet() {
    const started = performance.now();
    for (;;) {
      const a = machineCpu();
      const ourA = ourCpuNs();
      await sleep(400);
      const b = machineCpu();
      const ourB = ourCpuNs();
      const foreign = Math.max(0, b.busyS - a.busyS - (ourB - ourA) / 1e9) / 0.4;
      const waited = performance.now() - started;
      if (foreign < QUIET_CORES || waited > Math.min(quietBudgetMs, QUIET_MAX_WAIT_MS)) {
        quietBudgetMs = Math.max(0, quietBudgetMs - waited);
        return { waited_ms: Math.round(waited), foreign_cores_before: foreign };
      }
    }
  }

  async function measure(w, request, seconds, conns = opts.connections) {
    const quiet = await waitQuiet();
    const before = await snapshot(w);
    const proxyBefore = w.proxy ? await w.proxy.stats() : null;
    // Runs that stop after a number of answers get a long -d; wrk is ended as soon as they are in.
    const wrk = await runWrk({ root: ROOT, url: w.url, request, seconds: request.stopAfter ? 120 : seconds, threads: conns, connections: conns });
    await sleep(SETTLE_MS); // background work (waitUntil) lands before the counters are read
    const proxyAfter = w.proxy ? await w.proxy.stats() : null;
    const after = await snapshot(w);
    const m = { ...compute(before, after, wrk, conns), quiet, connections: conns };
    if (proxyBefore) {
      // Round trips through the Worker's own delay proxy (only its traffic), same denominator.
      const served = wrk.requests + (wrk.counted_requests !== undefined ? 0 : conns);
      m.proxy_round_trips_per_req = wrk.requests > 0 ? (proxyAfter.round_trips - proxyBefore.round_trips) / served : null;
      m.proxy_commands_per_req = wrk.requests > 0 ? (proxyAfter.commands - proxyBefore.commands) / served : null;
      // Tollgate's background stats flush (a /multi-exec every 10 s), counted apart: it is not on
      // any request's path, and a short run at 40 ms sees few enough requests for one to show.
      m.proxy_flush_round_trips_per_req =
        wrk.requests > 0 ? (proxyAfter.by_endpoint.multi_exec - proxyBefore.by_endpoint.multi_exec) / served : null;
      m.proxy_delay_ms = proxyAfter.delay_ms;
    }
    return m;
  }

  const nonce = randomBytes(3).toString("hex");
  const withIp = (extra = {}) => ({ "CF-Connecting-IP": IP, ...extra });

  const selected = (id) => !opts.only || opts.only.includes(id);
  // A net scenario runs under its own id, its delay's group (`net-5ms`) or `net`.
  const scenarioSelected = (sc) => selected(sc.id) || (sc.net && (selected(netGroup(sc.net.delay_ms)) || selected("net")));
  // The never-seen-key probe of a delay runs under its group, `net`, or `net-<d>ms-keys`.
  const netProbeSelected = (d) => selected(netGroup(d)) || selected("net") || selected(`${netGroup(d)}-keys`);
  const netDelays = NET_DELAYS_MS.filter((d) => netProbeSelected(d) || NET_LOADS.some((l) => NET_CONNECTIONS.some((c) => selected(netId(d, l, c)))));

  // ---------------------------------------------------------------- net: Redis far away
  // Each net Worker reaches redis-rest through its own delay proxy (so each proxy counts one
  // Worker's round trips). API keys: one "seen" key, warmed in every net isolate, and a pool of
  // keys created through the main Tollgate process, which the net isolates have never looked up;
  // the peer gets them all in its binding map (it resolves keys without Redis).
  const NET_PROBE_N = opts.quick ? 6 : 20;
  const net = { seenKey: null, fresh: {}, probes: {} };
  if (netDelays.length > 0) {
    const created = async (subject) => (await adminJson(workers.tollgate.url, adminToken, "POST", "/_tollgate/keys", { subject, tier: "BASIC" })).key;
    net.seenKey = await created("bench-net-seen");
    const pool = [];
    for (const d of netDelays) {
      for (const load of NET_LOADS) {
        net.fresh[`${d}:${load}`] = [];
        for (let i = 0; i < NET_PROBE_N; i += 1) {
          const k = await created(`bench-net-${d}-${load}-${i}`);
          net.fresh[`${d}:${load}`].push(k);
          pool.push(k);
        }
      }
    }
    const peerNetKeys = { ...peerKeys, [net.seenKey]: "BASIC", ...Object.fromEntries(pool.map((k) => [k, "BASIC"])) };
    const netDefs = {
      "tollgate-net": { ...defs.tollgate, label: "Tollgate, Redis behind the delay proxy" },
      "tollgate-noiso-net": { ...defs["tollgate-noiso"], label: "Tollgate, isolate_ttl 0ms, Redis behind the delay proxy" },
      "peer-net": { ...defs["peer-sliding"], label: "peer, sliding window, Redis behind the delay proxy", bindings: { ...defs["peer-sliding"].bindings, PEER_API_KEYS: JSON.stringify(peerNetKeys) } },
    };
    for (const [id, def] of Object.entries(netDefs)) {
      mkdirSync(path.join(tmp, `proxy-${id}`), { recursive: true });
      const proxy = await startProxy(ROOT, path.join(tmp, `proxy-${id}`), rest.url);
      proxies.push(proxy);
      const w = await startWorkerd({ root: ROOT, name: id, dir: path.join(tmp, `w-${id}`), ...def, bindings: { ...def.bindings, UPSTASH_REDIS_REST_URL: proxy.url } });
      w.proxy = proxy;
      workers[id] = w;
      results.systems[id] = def.label;
      // Warm (no delay): the seen key, the routes, the hot config entry.
      const h = { authorization: `Bearer ${net.seenKey}`, "cf-connecting-ip": "198.51.100.90" };
      for (const p of ["/api/search?q=net", "/api/config/hot-1", "/api/config/hot-1", `/api/config/net-warm-${nonce}-${id}`]) {
        const r = await fetch(`${w.url}${p}`, { headers: h });
        await r.arrayBuffer();
        if (r.status >= 400) results.warnings.push(`${id}: warming ${p} answered ${r.status}`);
      }
    }
    log(`net: ${Object.keys(netDefs).join(", ")} behind their delay proxies; ${pool.length} never-seen keys`);
  }
  const netHeaders = () => ({ "CF-Connecting-IP": "198.51.100.90", Authorization: `Bearer ${net.seenKey}` });
  const netScenarios = [];
  for (const d of NET_DELAYS_MS) {
    for (const load of NET_LOADS) {
      for (const conns of NET_CONNECTIONS) {
        netScenarios.push({
          id: netId(d, load, conns),
          net: { delay_ms: d, load, connections: conns },
          title: `Redis ${d} ms away: ${load}, ${conns} connection${conns > 1 ? "s" : ""}, a seen API key`,
          what: `As ${load === "miss" ? "miss with the origin answering at once" : load}, every Redis round trip delayed ${d} ms by the delay proxy in front of redis-rest (one proxy per Worker). Caller: one API key (BASIC) already seen by the isolate. wrk with ${conns} connection(s).`,
          systems: NET_SYSTEMS[load],
          connections: conns,
          rounds: Math.min(opts.rounds, 2),
          seconds: Math.min(opts.seconds, 3),
          warmup: false,
          expect: load === "proxied" ? "2xx" : load === "miss" ? "MISS" : "HIT",
          before: async (sys) => {
            await workers[sys].proxy.settings({ delay_ms: d });
          },
          request: (sys, round) =>
            load === "proxied"
              ? { mode: "fixed", method: "GET", path: "/api/search?q=net", headers: netHeaders() }
              : load === "hit-redis"
                ? { mode: "fixed", method: "GET", path: "/api/config/hot-1", headers: netHeaders() }
                : { mode: "unique", method: "GET", path: `/api/config/net-${nonce}-${sys}-${d}-c${conns}-${round}-`, headers: netHeaders() },
        });
      }
    }
  }

  /**
   * Scenario definitions. `request(sysId, round)` gives the wrk request of one run; `prime` runs
   * before the measured run (not measured); `origin` sets the origin's delay for the scenario.
   */
  const scenarios = [
    {
      id: "proxied",
      title: "Allowed and proxied (route with its own limit)",
      what: "GET /api/search?q=bench from one anonymous caller: tier limit + route limit, then proxied to the origin (echo).",
      systems: ["peer-sliding", "peer-fixed", "tollgate", "bare"],
      expect: "2xx",
      request: () => ({ mode: "fixed", method: "GET", path: "/api/search?q=bench", headers: withIp() }),
    },
    {
      id: "denied-first",
      title: "Denied, first time (fresh caller over a tiny route limit)",
      what: `GET /api/tiny/x (route limit 1/h): each request from a new caller that already used its 1 request, so each answer is that caller's FIRST 429. ${DENY_FIRST_TOTAL} callers per run, primed by an unmeasured run just before.`,
      systems: ["peer-sliding", "peer-fixed", "tollgate"],
      expect: "429",
      warmup: false,
      prime: (sys, round) => ({
        mode: "fresh_ip", method: "GET", path: "/api/tiny/x", headers: {},
        stopAfter: Math.ceil(DENY_FIRST_TOTAL / opts.threads) + 1, ipBase: 1 + round * opts.threads * 65536,
      }),
      request: (sys, round) => ({
        mode: "fresh_ip", method: "GET", path: "/api/tiny/x", headers: {},
        stopAfter: Math.ceil(DENY_FIRST_TOTAL / opts.threads), ipBase: 1 + round * opts.threads * 65536,
      }),
    },
    {
      id: "denied-repeated",
      title: "Denied, repeated (same caller, already over the limit)",
      what: "GET /api/tiny/x from one caller who is over the route's 1/h limit and was already refused once.",
      systems: ["peer-sliding", "peer-fixed", "tollgate"],
      expect: "429",
      before: async (sys) => {
        for (let i = 0; i < 2; i += 1) await warmFetch(workers[sys].url, "/api/tiny/x", { headers: { "cf-connecting-ip": "203.0.113.66" } });
      },
      request: () => ({ mode: "fixed", method: "GET", path: "/api/tiny/x", headers: { "CF-Connecting-IP": "203.0.113.66" } }),
    },
    {
      id: "hit-redis",
      title: "Cache hit from Redis",
      what: "GET /api/config/hot-1 (warm in Redis): limit check + cache read. Tollgate with isolate_ttl 0ms (in-isolate layer off).",
      systems: ["peer-sliding", "peer-fixed", "tollgate-noiso"],
      expect: "HIT",
      request: () => ({ mode: "fixed", method: "GET", path: "/api/config/hot-1", headers: withIp() }),
    },
    {
      id: "hit-isolate",
      title: "Cache hit from isolate memory (Tollgate default isolate_ttl 2s)",
      what: "GET /api/config/hot-1 with the default policy settings. Tollgate answers from isolate memory (no Redis, no limit check) and reads Redis once per 2 s; the peer has no such layer (same work as a Redis hit). Floor: bare Worker answering a static 200.",
      systems: ["peer-sliding", "peer-fixed", "tollgate", "bare-static"],
      expect: "HIT",
      request: (sys) => ({ mode: "fixed", method: "GET", path: sys === "bare-static" ? "/__bare/static" : "/api/config/hot-1", headers: withIp() }),
    },
    {
      id: "miss",
      title: "Cache miss, 150 ms origin",
      what: "GET /api/config/<new name> (a new key on every request) with the origin delaying every answer 150 ms. Bare pass-through = the origin's own latency.",
      systems: ["peer-sliding", "peer-fixed", "tollgate", "bare"],
      expect: "MISS",
      origin: { delay_ms: 150 },
      request: (sys, round) => ({ mode: "unique", method: "GET", path: `/api/config/miss-${nonce}-${sys}-${round}-`, headers: withIp() }),
    },
    {
      id: "mix",
      title: "Realistic mix",
      what: "55% hot config reads, 25% hot RAG contexts (POST), 6% new config names, 4% new RAG queries (misses), 6% search (GET, proxied), 4% chat (POST, proxied); callers 50% anonymous (40 IPs), 25% BASIC keys, 25% PRO keys (10 each, created with POST /_tollgate/keys). ~89% of cacheable requests are hits. Origin answers at once.",
      systems: ["peer-sliding", "peer-fixed", "tollgate"],
      request: (sys, round) => ({
        mode: "mix",
        env: {
          BENCH_MIX_HOT_CONFIGS: String(HOT_CONFIGS),
          BENCH_MIX_HOT_QUERIES: String(HOT_QUERIES),
          BENCH_MIX_IPS: String(MIX_IPS),
          BENCH_MIX_BASIC_KEYS: keys.BASIC.join(","),
          BENCH_MIX_PRO_KEYS: keys.PRO.join(","),
          BENCH_MIX_UNIQUE: `mix-${nonce}-${sys}-${round}`,
        },
      }),
    },
    // Light load (one connection): latency without queueing, for "a hit is ≥ 20× faster than a miss".
    {
      id: "light-hit-redis",
      title: "Light load: cache hit from Redis, one connection",
      what: "As hit-redis with one connection (no queueing): the latency of one hit.",
      systems: ["peer-sliding", "tollgate-noiso"],
      connections: 1,
      rounds: 1,
      seconds: 3,
      warmup: false,
      expect: "HIT",
      request: () => ({ mode: "fixed", method: "GET", path: "/api/config/hot-2", headers: withIp() }),
    },
    {
      id: "light-hit-isolate",
      title: "Light load: cache hit from isolate memory, one connection",
      what: "As hit-isolate with one connection. Floor: bare static 200.",
      systems: ["tollgate", "bare-static"],
      connections: 1,
      rounds: 1,
      seconds: 3,
      warmup: false,
      expect: "HIT",
      request: (sys) => ({ mode: "fixed", method: "GET", path: sys === "bare-static" ? "/__bare/static" : "/api/config/hot-2", headers: withIp() }),
    },
    {
      id: "light-miss",
      title: "Light load: cache miss with a 150 ms origin, one connection",
      what: "As miss with one connection: the latency of one miss. Bare = the origin's 150 ms plus one proxy hop.",
      systems: ["peer-sliding", "tollgate", "bare"],
      connections: 1,
      rounds: 1,
      seconds: 3,
      warmup: false,
      expect: "MISS",
      origin: { delay_ms: 150 },
      request: (sys, round) => ({ mode: "unique", method: "GET", path: `/api/config/light-${nonce}-${sys}-${round}-`, headers: withIp() }),
    },
    {
      id: "default-timeout",
      title: "A fixed 50 ms Redis timeout beside the adaptive default under this load (not a comparison)",
      what: "The proxied load against Tollgate with a fixed `redis.timeout` of 50 ms next to its default adaptive budget. Answers with `X-Tollgate-Mode: local` had their limits decided in the isolate only, because a Redis call timed out or the breaker was open.",
      systems: ["tollgate-t50", "tollgate"],
      rounds: 1,
      request: () => ({ mode: "fixed", method: "GET", path: "/api/search?q=bench", headers: withIp({ "X-Bench": "t50" }) }),
    },
    ...netScenarios,
  ];

  for (const sc of scenarios) {
    if (!scenarioSelected(sc)) continue;
    const tSc = performance.now();
    log(`scenario ${sc.id}: ${sc.systems.join(", ")}`);
    if (sc.origin) await origin.settings(sc.origin);
    try {
      for (const sys of sc.systems) if (sc.before) await sc.before(sys);
      if (sc.warmup !== false) {
        for (const sys of sc.systems) {
          const req = sc.request(sys, "warm");
          const conns = sc.connections ?? opts.connections;
          await runWrk({ root: ROOT, url: workers[sys].url, request: req, seconds: opts.warmupSeconds, threads: conns, connections: conns });
        }
      }
      const rounds = Object.fromEntries(sc.systems.map((s) => [s, []]));
      for (let round = 0; round < (sc.rounds ?? opts.rounds); round += 1) {
        for (const sys of sc.systems) {
          if (sc.prime) {
            await runWrk({ root: ROOT, url: workers[sys].url, request: sc.prime(sys, round), seconds: 60, threads: opts.threads, connections: opts.connections });
          }
          const m = await measure(workers[sys], sc.request(sys, round), sc.seconds ?? opts.seconds, sc.connections ?? opts.connections);
          m.round = round;
          rounds[sys].push(m);
          log(`  ${sc.id} r${round} ${sys.padEnd(15)} ${m.rps.toFixed(0).padStart(6)} req/s  p50 ${m.p50_ms.toFixed(2)} ms  p99 ${m.p99_ms.toFixed(2)} ms  redis ${m.redis_http_per_req?.toFixed(3)} http/req ${m.redis_cmds_per_req?.toFixed(3)} cmd/req  origin ${m.origin_per_req?.toFixed(3)}/req  cpu ${m.cpu_us_per_req.workerd?.toFixed(0)} µs/req  foreign ${m.foreign_cpu_cores.toFixed(2)}`);
          checkExpectation(sc, sys, m);
        }
      }
      results.scenarios[sc.id] = { title: sc.title, what: sc.what, ...(sc.net ? { net: sc.net } : {}), systems: sc.systems, connections: sc.connections ?? opts.connections, rounds, summary: summarize(rounds), seconds: Math.round((performance.now() - tSc) / 100) / 10 };
    } finally {
      if (sc.origin) await origin.settings({ delay_ms: 0 });
    }
  }

  // ---------------------------------------------------------------- net: never-seen API keys
  // One request at a time from Node: a key this isolate has never seen (one per request), then
  // the same kind of request with the seen key; round trips counted by the Worker's proxy.
  for (const d of netDelays.filter(netProbeSelected)) {
    const group = netGroup(d);
    log(`scenario ${group}-keys: never-seen vs seen API keys, ${NET_PROBE_N} each, one at a time`);
    const out = {};
    for (const load of NET_LOADS) {
      out[load] = {};
      for (const sys of NET_SYSTEMS[load]) {
        const w = workers[sys];
        await w.proxy.settings({ delay_ms: d });
        out[load][sys] = await probeKeys({
          url: w.url,
          proxy: w.proxy,
          freshKeys: net.fresh[`${d}:${load}`],
          seenKey: net.seenKey,
          settleMs: Math.round(d * 1.5) + 30,
          pathFor: (i, seen) =>
            load === "proxied" ? "/api/search?q=net" : load === "hit-redis" ? "/api/config/hot-1" : `/api/config/net-keys-${nonce}-${sys}-${d}-${seen ? "s" : "n"}-${i}`,
        });
        const r = out[load][sys];
        log(`  ${group}-keys ${load.padEnd(9)} ${sys.padEnd(18)} never-seen p50 ${r.never_seen.p50_ms.toFixed(1)} ms, ${r.never_seen.round_trips_per_req.toFixed(2)} RT/req; seen p50 ${r.seen.p50_ms.toFixed(1)} ms, ${r.seen.round_trips_per_req.toFixed(2)} RT/req`);
        for (const [kind, k] of Object.entries(r)) {
          const bad = Object.entries(k.status).filter(([st]) => Number(st) >= 400);
          if (bad.length) results.warnings.push(`${group}-keys ${load} ${sys} ${kind}: answers ${JSON.stringify(k.status)}`);
        }
        await w.proxy.settings({ delay_ms: 0 });
      }
    }
    net.probes[d] = out;
  }
  if (Object.keys(net.probes).length > 0) results.net_keys = { samples: NET_PROBE_N, delays_ms: Object.keys(net.probes).map(Number), by_delay: net.probes };

  // ---------------------------------------------------------------- stampede
  if (selected("stampede")) {
    log(`scenario stampede: ${STAMPEDE_N} concurrent requests for one cold key, origin 150 ms`);
    await origin.settings({ delay_ms: 150 });
    const systems = ["peer-sliding", "peer-fixed", "tollgate"];
    const rounds = Object.fromEntries(systems.map((s) => [s, []]));
    try {
      for (let round = 0; round < opts.rounds; round += 1) {
        for (const sys of systems) {
          const name = `stampede-${nonce}-${sys}-${round}`;
          const before = await snapshot(workers[sys]);
          const started = performance.now();
          const answers = await Promise.all(
            Array.from({ length: STAMPEDE_N }, async (_, i) => {
              const t = performance.now();
              const r = await fetch(`${workers[sys].url}/api/config/${name}`, { headers: { "cf-connecting-ip": `203.0.113.${100 + (i % 50)}` } });
              await r.arrayBuffer();
              return { status: r.status, xCache: r.headers.get("x-cache"), ms: performance.now() - t };
            }),
          );
          const wall = performance.now() - started;
          await sleep(SETTLE_MS);
          const after = await snapshot(workers[sys]);
          const upstream = `/config/${name}`;
          const originForKey = (after.originHits.by_path?.[upstream] ?? 0) - (before.originHits.by_path?.[upstream] ?? 0);
          const xc = {};
          for (const a of answers) xc[a.xCache ?? "none"] = (xc[a.xCache ?? "none"] ?? 0) + 1;
          const lat = answers.map((a) => a.ms).sort((a, b) => a - b);
          const m = {
            round,
            concurrent: STAMPEDE_N,
            origin_hits_for_key: originForKey,
            origin_hits_total: after.originHits.total - before.originHits.total,
            statuses: answers.reduce((acc, a) => ({ ...acc, [a.status]: (acc[a.status] ?? 0) + 1 }), {}),
            x_cache: xc,
            p50_ms: lat[Math.floor(lat.length * 0.5)],
            max_ms: lat[lat.length - 1],
            wall_ms: wall,
            redis_http: after.restStats.http_requests.total - before.restStats.http_requests.total,
            redis_cmds: after.restStats.commands.total - before.restStats.commands.total,
          };
          rounds[sys].push(m);
          log(`  stampede r${round} ${sys.padEnd(15)} origin hits ${m.origin_hits_for_key}/${STAMPEDE_N}  x-cache ${JSON.stringify(xc)}  p50 ${m.p50_ms.toFixed(0)} ms  max ${m.max_ms.toFixed(0)} ms  redis ${m.redis_http} http ${m.redis_cmds} cmds`);
        }
      }
    } finally {
      await origin.settings({ delay_ms: 0 });
    }
    const summary = {};
    for (const s of systems) {
      summary[s] = {
        origin_hits_for_key: spread(rounds[s].map((m) => m.origin_hits_for_key)),
        p50_ms: spread(rounds[s].map((m) => m.p50_ms)),
        max_ms: spread(rounds[s].map((m) => m.max_ms)),
        redis_http: spread(rounds[s].map((m) => m.redis_http)),
        redis_cmds: spread(rounds[s].map((m) => m.redis_cmds)),
      };
    }
    results.stampede = { title: "Stampede on a cold key", concurrent: STAMPEDE_N, systems, rounds, summary };
  }

  // ---------------------------------------------------------------- CPU profiles
  if (!opts.noProfile && selected("profile")) {
    log("CPU profiles (V8 sampling profiler through workerd's inspector)");
    const loads = {
      "hit-isolate": { mode: "fixed", method: "GET", path: "/api/config/hot-1", headers: withIp() },
      "hit-redis": { mode: "fixed", method: "GET", path: "/api/config/hot-1", headers: withIp() },
      proxied: { mode: "fixed", method: "GET", path: "/api/search?q=bench", headers: withIp() },
      "denied-repeated": { mode: "fixed", method: "GET", path: "/api/tiny/x", headers: { "CF-Connecting-IP": "203.0.113.66" } },
    };
    const plan = [
      ["tollgate", ["hit-isolate", "proxied", "denied-repeated"]],
      ["tollgate-noiso", ["hit-redis"]],
      ["peer-sliding", ["proxied", "hit-redis"]],
    ];
    results.profile = {};
    for (const [id, loadIds] of plan) {
      try {
        results.profile[id] = await profileWorker({
          root: ROOT,
          dir: path.join(tmp, `profile-${id}`),
          def: defs[id],
          loads: loadIds.map((l) => ({ id: l, request: loads[l] })),
          seconds: Math.min(4, opts.seconds),
          threads: opts.threads,
          connections: opts.connections,
        });
        for (const [l, r] of Object.entries(results.profile[id])) {
          log(`  ${id} ${l}: ${r.categories.slice(0, 4).map((c) => `${c.name} ${c.pct}%`).join(", ")}`);
        }
      } catch (err) {
        results.warnings.push(`profile ${id}: ${err.message}`);
      }
    }
  }

  // ---------------------------------------------------------------- faults (its own stack)
  if (selected("faults")) {
    log("scenario faults: Redis stopped and started, Redis 200 ms away, origin flapping, under load");
    results.faults = await faults();
  }

  results.finished_at = new Date().toISOString();
  results.total_seconds = Math.round((performance.now() - t0) / 1000);
  results.machine.loadavg_at_end = os.loadavg();
}

function checkExpectation(sc, sys, m) {
  if (!sc.expect || sys === "bare-static") return;
  const n = m.requests || 1;
  let got;
  if (sc.expect === "2xx") got = m.status["2xx"] / n;
  else if (sc.expect === "429") got = m.status[429] / n;
  else if (sc.expect === "HIT" || sc.expect === "MISS") got = sys === "bare" ? 1 : m.x_cache[sc.expect] / n;
  if (sys === "bare" && sc.expect === "MISS") got = m.status["2xx"] / n;
  if (got < 0.98) {
    const msg = `${sc.id} round ${m.round} ${sys}: expected ${sc.expect} for ≥98% of answers, got ${(got * 100).toFixed(1)}% (status ${JSON.stringify(m.status)}, x-cache ${JSON.stringify(m.x_cache)})`;
    results.warnings.push(msg);
    log(`  WARNING ${msg}`);
  }
  const errs = m.errors.connect + m.errors.read + m.errors.write + m.errors.timeout;
  if (errs > 0) results.warnings.push(`${sc.id} round ${m.round} ${sys}: ${errs} socket errors/timeouts (${JSON.stringify(m.errors)})`);
  if (m.foreign_cpu_cores > 0.5) results.warnings.push(`${sc.id} round ${m.round} ${sys}: other processes used ${m.foreign_cpu_cores.toFixed(2)} cores during the run (noise)`);
}

function summarize(rounds) {
  const out = {};
  for (const [sys, ms] of Object.entries(rounds)) {
    const f = (get) => spread(ms.map(get));
    out[sys] = {
      rps: f((m) => m.rps),
      p50_ms: f((m) => m.p50_ms),
      p90_ms: f((m) => m.p90_ms),
      p99_ms: f((m) => m.p99_ms),
      redis_http_per_req: f((m) => m.redis_http_per_req),
      redis_cmds_per_req: f((m) => m.redis_cmds_per_req),
      redis_server_cmds_per_req: f((m) => m.redis_server_cmds_per_req),
      origin_per_req: f((m) => m.origin_per_req),
      proxy_round_trips_per_req: f((m) => m.proxy_round_trips_per_req),
      proxy_commands_per_req: f((m) => m.proxy_commands_per_req),
      proxy_flush_round_trips_per_req: f((m) => m.proxy_flush_round_trips_per_req),
      cpu_workerd_us_per_req: f((m) => m.cpu_us_per_req.workerd),
      cpu_redis_rest_us_per_req: f((m) => m.cpu_us_per_req.redis_rest),
      cpu_redis_server_us_per_req: f((m) => m.cpu_us_per_req.redis_server),
      foreign_cpu_cores: f((m) => m.foreign_cpu_cores),
      hit_ratio: f((m) => {
        const c = m.x_cache.HIT + m.x_cache.MISS + m.x_cache.STALE + m.x_cache.BYPASS;
        return c ? m.x_cache.HIT / c : null;
      }),
      ok_ratio: f((m) => (m.status["2xx"] + m.status["3xx"]) / (m.requests || 1)),
      rest_commands_by_name: ms.reduce((acc, m) => {
        for (const [k, v] of Object.entries(m.rest_commands_by_name)) acc[k] = (acc[k] ?? 0) + v;
        return acc;
      }, {}),
      requests_total: ms.reduce((a, m) => a + m.requests, 0),
    };
  }
  return out;
}

let failed = null;
try {
  await main();
} catch (err) {
  failed = err;
  log(`FAILED: ${err.stack ?? err}`);
  results.error = String(err.stack ?? err);
} finally {
  await stopAll();
}

// ------------------------------------------------------------------------------------------------
// Output

const date = results.started_at.slice(0, 10);
const outDir = path.join(ROOT, "bench/results");
mkdirSync(outDir, { recursive: true });
// A faults-only run is complete in itself: <date>-faults.*; other partial runs: <date>-partial.*.
const suffix = onlyFaults && !opts.quick ? "-faults" : opts.quick || opts.only ? "-partial" : "";
const jsonFile = path.join(outDir, `${date}${suffix}.json`);
const mdFile = path.join(outDir, `${date}${suffix}.md`);
writeFileSync(jsonFile, `${JSON.stringify(results, null, 2)}\n`);
const md = renderMarkdown(results);
writeFileSync(mdFile, md);
if (!suffix && !failed) copyFileSync(mdFile, path.join(outDir, "latest.md"));
log(`wrote ${path.relative(ROOT, jsonFile)}, ${path.relative(ROOT, mdFile)}${!suffix && !failed ? ", bench/results/latest.md" : ""}`);
if (!opts.keepTmp) rmSync(tmp, { recursive: true, force: true });
else log(`kept ${tmp}`);
process.stdout.write(md);
process.exit(failed ? 1 : 0);
