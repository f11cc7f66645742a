// The local stack for end-to-end tests: a real redis-server, redis-rest in front of it, the
// demo origin, and the built Worker in Miniflare, each on a free 127.0.0.1 port.
//
//   import { after, before, test } from "node:test";
//   import { startStack } from "./support/stack.mjs";
//
//   let stack;
//   before(async () => { stack = await startStack({ policy: { ... } }); });
//   after(() => stack?.stop());
//
//   test("...", async () => {
//     const res = await stack.fetch("/api/config/app");
//     ...
//   });
//
// With `redisDelayMs` (or `redisProxy: true`) the Worker reaches redis-rest through the delay
// proxy (./delay-proxy.mjs), `stack.redisProxy`: a delay per round trip, counted round trips, and
// outages without stopping redis-server (`setMode("refuse" | "blackhole")`).
//
// Binaries: redis-server from PATH (or REDIS_SERVER_BIN), target/debug/redis-rest (or
// REDIS_REST_BIN), target/debug/demo-origin (or DEMO_ORIGIN_BIN); the Worker from build/index.js
// (./scripts/build-worker). Every process is a child of this one; stop() ends them, and so does
// this process's exit, so none outlives the test run.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { startDelayProxy } from "./delay-proxy.mjs";

export const ROOT = path.resolve(fileURLToPath(import.meta.url), "../../../..");
export const WORKER_SCRIPT = path.join(ROOT, "build/index.js");
// The Worker runs with the compatibility date and flags of wrangler.toml, as `wrangler dev` and
// `wrangler deploy` run it.
const WRANGLER_TOML = readFileSync(path.join(ROOT, "wrangler.toml"), "utf8");
export const COMPATIBILITY_DATE = WRANGLER_TOML.match(/^compatibility_date\s*=\s*"([^"]+)"/m)?.[1] ?? "2026-04-01";
export const COMPATIBILITY_FLAGS = [...(WRANGLER_TOML.match(/^compatibility_flags\s*=\s*\[([^\]]*)\]/m)?.[1] ?? "").matchAll(/"([^"]+)"/g)].map((m) => m[1]);

const HOST = "127.0.0.1";
const READY_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 5_000;

// Where each part keeps its process, out of the way of the documented API.
const PROC = Symbol("process");

const bin = {
  redisServer: () => process.env.REDIS_SERVER_BIN || "redis-server",
  redisRest: () => process.env.REDIS_REST_BIN || path.join(ROOT, "target/debug/redis-rest"),
  demoOrigin: () => process.env.DEMO_ORIGIN_BIN || path.join(ROOT, "target/debug/demo-origin"),
};

// ---------------------------------------------------------------------------------------------
// Child processes: every one is tracked so the exit hook can kill what stop() did not.

const live = new Set();
const tempDirs = new Set();

function killAllNow() {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  live.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

let hooksInstalled = false;
function installExitHooks() {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", killAllNow);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.once(signal, () => {
      killAllNow();
      process.kill(process.pid, signal);
    });
  }
}

/** A spawned server with the tail of its output kept for error messages. */
class Proc {
  constructor(name, command, args) {
    installExitHooks();
    this.name = name;
    this.command = command;
    this.args = args;
    this.output = "";
    this.exited = false;
    this.exitCode = null;
    this.child = spawn(command, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    live.add(this.child);
    this.spawnError = null;
    this.exitPromise = new Promise((resolve) => {
      this.child.once("error", (err) => {
        this.spawnError = err;
        this.exited = true;
        live.delete(this.child);
        resolve();
      });
      this.child.once("exit", (code, signal) => {
        this.exited = true;
        this.exitCode = code ?? signal;
        live.delete(this.child);
        resolve();
      });
    });
    const keep = (chunk) => {
      this.output = (this.output + chunk.toString()).slice(-4000);
    };
    this.child.stdout.on("data", keep);
    this.child.stderr.on("data", keep);
    // A forgotten stop() must not keep the test process alive; the exit hook kills these.
    this.child.unref();
    this.child.stdout.unref?.();
    this.child.stderr.unref?.();
  }

  get pid() {
    return this.child.pid;
  }

  describe() {
    const how = this.spawnError
      ? `could not start (${this.spawnError.message})`
      : this.exited
        ? `exited with ${this.exitCode}`
        : "is running";
    const tail = this.output.trim() ? `\n--- ${this.name} output ---\n${this.output.trim()}` : "";
    return `${this.name} (${[this.command, ...this.args].join(" ")}) ${how}${tail}`;
  }

  /** SIGTERM, then SIGKILL after the grace period; resolves once the process is gone. */
  async stop() {
    if (this.exited) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), STOP_GRACE_MS);
    await this.exitPromise;
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/**
 * Waits, if need be, until the next `spanMs` stay inside one aligned window of `windowMs`.
 *
 * Sliding and fixed windows are aligned to multiples of their length on the Unix clock, and a
 * request that lands in the next window sees the previous one's count rounded down: a test that
 * exhausts a limit and then expects a refusal would see one extra request pass if a boundary fell
 * between the two. The Worker runs on this machine's clock, so the test can step over the edge.
 */
export async function clearOfWindowEdge(windowMs, spanMs = 10_000) {
  const left = windowMs - (Date.now() % windowMs);
  if (left < spanMs) await new Promise((resolve) => setTimeout(resolve, left + 50));
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, HOST, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns true; fails with the process's story when it dies or times out. */
async function waitUntil(proc, what, probe, timeoutMs = READY_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exited) throw new Error(`${what}: ${proc.describe()}`);
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) {
      throw new Error(`${what}: not ready after ${timeoutMs} ms; ${proc.describe()}`);
    }
    await sleep(50);
  }
}

async function httpOk(url, init) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(2_000) });
  await res.arrayBuffer();
  return res.ok;
}

/** Sends one inline command over RESP and resolves to the first reply line ("" on failure). */
function redisCommand(port, line) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port });
    let reply = "";
    const done = (text) => {
      socket.destroy();
      resolve(text);
    };
    socket.setTimeout(5_000, () => done(""));
    socket.once("error", () => done(""));
    socket.once("connect", () => socket.write(`${line}\r\n`));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      const end = reply.indexOf("\r\n");
      if (end >= 0) done(reply.slice(0, end));
    });
  });
}

/** Sends PING over RESP and resolves true on +PONG. */
function redisPing(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port });
    let reply = "";
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      if (reply.includes("\r\n")) done(reply.startsWith("+PONG"));
    });
  });
}

function requireBinary(file, hint) {
  if (!existsSync(file)) throw new Error(`${file} not found: ${hint}`);
}

async function json(res, what) {
  const text = await res.text();
  if (!res.ok) throw new Error(`${what}: HTTP ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// ---------------------------------------------------------------------------------------------
// The parts

/** redis-server on `port` with persistence off; data lives in `dir`. */
async function startRedisServer(port, dir) {
  const proc = new Proc("redis-server", bin.redisServer(), [
    "--bind", HOST,
    "--port", String(port),
    "--save", "",
    "--appendonly", "no",
    "--dir", dir,
    "--protected-mode", "yes",
    "--daemonize", "no",
  ]);
  await waitUntil(proc, `redis-server on ${HOST}:${port}`, () => redisPing(port));
  return proc;
}

/** Tries a few free ports: another process may take the one we picked before we bind it. */
async function withFreePort(start, attempts = 3) {
  let lastError;
  for (let i = 0; i < attempts; i += 1) {
    const port = await freePort();
    try {
      return { port, value: await start(port) };
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function startRedis(dir) {
  const { port, value } = await withFreePort((p) => startRedisServer(p, dir));
  let proc = value;
  return {
    port,
    get pid() {
      return proc && !proc.exited ? proc.pid : null;
    },
    /**
     * Stops redis-server (an outage); redis-rest stays up and reports errors meanwhile. With
     * `{ keepData: true }` the data is saved first and loaded again by start(), as a real Redis
     * that restarts keeps its state; otherwise it comes back empty.
     */
    async stop({ keepData = false } = {}) {
      if (keepData && proc && !proc.exited) {
        const reply = await redisCommand(port, "SAVE");
        if (reply !== "+OK") throw new Error(`redis-server SAVE: ${reply}`);
      }
      await proc?.stop();
    },
    /** Starts redis-server again on the same port, empty (persistence is off). */
    async start() {
      if (proc && !proc.exited) return;
      proc = await startRedisServer(port, dir);
    },
    get running() {
      return Boolean(proc && !proc.exited);
    },
    get [PROC]() {
      return proc;
    },
  };
}

async function startRedisRest(redisPort) {
  const file = bin.redisRest();
  requireBinary(file, "build it with `cargo build -p redis-rest` or set REDIS_REST_BIN");
  const token = randomBytes(24).toString("hex");
  const { port, value: proc } = await withFreePort(async (p) => {
    const proc = new Proc("redis-rest", file, [
      "--listen", `${HOST}:${p}`,
      "--redis", `redis://${HOST}:${redisPort}`,
      "--token", token,
    ]);
    try {
      await waitUntil(proc, "redis-rest", () => httpOk(`http://${HOST}:${p}/health`));
    } catch (err) {
      await proc.stop();
      throw err;
    }
    return proc;
  });
  const url = `http://${HOST}:${port}`;
  const auth = { authorization: `Bearer ${token}` };
  return {
    url,
    token,
    [PROC]: proc,
    /** Counters of redis-rest: GET /_rest/stats. */
    async stats() {
      return json(await fetch(`${url}/_rest/stats`, { headers: auth }), "redis-rest stats");
    },
    /** POST /_rest/stats/reset. */
    async resetStats() {
      const res = await fetch(`${url}/_rest/stats/reset`, { method: "POST", headers: auth });
      await json(res, "redis-rest stats reset");
    },
    /** Runs one Redis command through the REST API: `await command("GET", "k")` → result. */
    async command(...args) {
      const res = await fetch(url, {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify(args.map(String)),
      });
      const body = await json(res, `redis-rest ${args[0]}`);
      if (body && "error" in body) throw new Error(`redis-rest ${args[0]}: ${body.error}`);
      return body?.result;
    },
  };
}

async function startOrigin() {
  const file = bin.demoOrigin();
  requireBinary(file, "build it with `cargo build -p demo-origin` or set DEMO_ORIGIN_BIN");
  // Port 0: demo-origin binds a free port itself and prints its URL first thing on stdout.
  const proc = new Proc("demo-origin", file, ["--listen", `${HOST}:0`]);
  let url = null;
  await waitUntil(proc, "demo-origin", async () => {
    url ??= proc.output.match(/listening on (http:\/\/\S+)/)?.[1] ?? null;
    return url !== null && httpOk(`${url}/_origin/health`);
  });
  return {
    url,
    [PROC]: proc,
    /** `{"total", "by_path": {path: n}, "by_route": {"config", "rag", "echo"}}`. */
    async hits() {
      return json(await fetch(`${url}/_origin/hits`), "origin hits");
    },
    /** Zeroes the counters, restores the seeded configs and the start settings. */
    async reset() {
      await json(await fetch(`${url}/_origin/reset`, { method: "POST" }), "origin reset");
    },
    /** With an object, updates the global behaviour (`{delay_ms, fail}`); returns the settings. */
    async settings(update) {
      const init = update === undefined
        ? {}
        : {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(update),
          };
      return json(await fetch(`${url}/_origin/settings`, init), "origin settings");
    },
  };
}

function assertWorkerBuilt() {
  if (!existsSync(WORKER_SCRIPT)) {
    throw new Error(
      `${path.relative(ROOT, WORKER_SCRIPT)} not found: build the Worker first with ` +
        "./scripts/build-worker (or call startStack({ worker: false }) to test without it)",
    );
  }
}

async function startWorker(bindings, miniflareOptions) {
  assertWorkerBuilt();
  const { Miniflare } = await import("miniflare");
  const wwwDir = path.join(ROOT, "www");
  const mf = new Miniflare({
    host: HOST,
    port: 0,
    modules: true,
    scriptPath: WORKER_SCRIPT,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: COMPATIBILITY_DATE,
    compatibilityFlags: COMPATIBILITY_FLAGS,
    cf: false,
    bindings,
    ...(existsSync(wwwDir)
      ? { assets: { directory: wwwDir, binding: "ASSETS", routerConfig: { has_user_worker: true } } }
      : {}),
    ...miniflareOptions,
  });
  try {
    const ready = await mf.ready;
    return { mf, url: ready.origin };
  } catch (err) {
    await mf.dispose().catch(() => {});
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// The stack

/**
 * Starts the stack.
 *
 * @param {object} [options]
 * @param {object} [options.policy]  the policy object, passed as TOLLGATE_POLICY (JSON text)
 * @param {object} [options.vars]    more Worker bindings (strings), applied last
 * @param {boolean} [options.redis=true]   redis-server + redis-rest; false = Worker in memory mode
 * @param {boolean} [options.origin=true]  the demo origin (ORIGIN_URL points at it)
 * @param {boolean} [options.worker=true]  the built Worker in Miniflare
 * @param {object} [options.miniflare]     extra Miniflare options, merged last
 * @param {number} [options.redisDelayMs]  put the delay proxy between the Worker and redis-rest,
 *                                         delaying each round trip this long (changeable later)
 * @param {boolean} [options.redisProxy]   the delay proxy without a delay (implied by redisDelayMs)
 */
export async function startStack({
  policy,
  vars = {},
  redis = true,
  redisDelayMs,
  redisProxy = redisDelayMs !== undefined,
  origin = true,
  worker = true,
  miniflare = {},
} = {}) {
  // Fail fast, before starting anything, when the Worker has not been built.
  if (worker) assertWorkerBuilt();

  installExitHooks();
  const dir = await mkdtemp(path.join(tmpdir(), "tollgate-e2e-"));
  tempDirs.add(dir);
  const stack = {
    url: null,
    adminToken: randomBytes(24).toString("hex"),
    jwtSecret: randomBytes(32).toString("hex"),
    redis: null,
    redisRest: null,
    /** The delay proxy between the Worker and redis-rest, when asked for. */
    redisProxy: null,
    origin: null,
    mf: null,
    async fetch(pathname, init) {
      if (!stack.url) throw new Error("the stack was started without the Worker");
      try {
        return await fetch(new URL(pathname, stack.url), init);
      } catch (e) {
        // undici says only "fetch failed"; the cause is what tells a reset from a refusal.
        const cause = e.cause ? `${e.cause.code ?? ""} ${e.cause.message ?? ""}`.trim() : "";
        throw new Error(`${e.message}${cause ? ` (${cause})` : ""}: ${init?.method ?? "GET"} ${pathname}`, { cause: e });
      }
    },
    async stop() {
      const procs = [stack.redisRest?.[PROC], stack.origin?.[PROC], stack.redis?.[PROC]];
      const mf = stack.mf;
      stack.mf = null;
      const proxy = stack.redisProxy;
      stack.redisProxy = null;
      await Promise.allSettled([
        Promise.resolve(mf?.dispose()).finally(() => proxy?.close()),
        ...procs.filter(Boolean).map((proc) => proc.stop()),
      ]);
      await rm(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
    },
  };

  try {
    if (redis) {
      stack.redis = await startRedis(dir);
      stack.redisRest = await startRedisRest(stack.redis.port);
      if (redisProxy) {
        stack.redisProxy = await startDelayProxy({ target: stack.redisRest.url, delayMs: redisDelayMs ?? 0, host: HOST });
      }
    }
    if (origin) stack.origin = await startOrigin();
    if (worker) {
      const bindings = {
        TOLLGATE_ADMIN_TOKEN: stack.adminToken,
        TOLLGATE_JWT_SECRET: stack.jwtSecret,
        ...(stack.redisRest
          ? {
              UPSTASH_REDIS_REST_URL: (stack.redisProxy ?? stack.redisRest).url,
              UPSTASH_REDIS_REST_TOKEN: stack.redisRest.token,
            }
          : { REDIS_ENABLED: "false" }),
        ...(stack.origin ? { ORIGIN_URL: stack.origin.url } : {}),
        ...(policy === undefined ? {} : { TOLLGATE_POLICY: JSON.stringify(policy) }),
        ...vars,
      };
      const { mf, url } = await startWorker(bindings, miniflare);
      stack.mf = mf;
      stack.url = url;
    }
  } catch (err) {
    await stack.stop();
    throw err;
  }
  return stack;
}
