// Child processes of the benchmark, each in its own process group so it can be stopped by its
// group id (never by name). Every process started here is stopped on exit, on error and on
// SIGINT/SIGTERM/SIGHUP.

import { spawn } from "node:child_process";
import { openSync, closeSync, readFileSync, readdirSync } from "node:fs";
import net from "node:net";

export const HOST = "127.0.0.1";
const live = new Set();
let hooks = false;

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

function installHooks() {
  if (hooks) return;
  hooks = true;
  process.on("exit", () => {
    for (const p of live) killGroup(p.pid, "SIGKILL");
  });
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.once(sig, () => {
      for (const p of live) killGroup(p.pid, "SIGKILL");
      live.clear();
      process.exit(130);
    });
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A long-running server: output goes to `logFile`, the first stdout lines are kept. */
export class Proc {
  constructor(name, command, args, { logFile, env, cwd } = {}) {
    installHooks();
    this.name = name;
    this.command = command;
    this.args = args;
    this.logFile = logFile;
    this.exited = false;
    this.exitCode = null;
    this.stdoutHead = "";
    this.spawnedAt = performance.now();
    const fd = logFile ? openSync(logFile, "a") : "ignore";
    this.child = spawn(command, args, {
      cwd,
      env: env ?? process.env,
      detached: true, // own process group
      stdio: ["ignore", "pipe", fd],
    });
    if (typeof fd === "number") closeSync(fd);
    this.pid = this.child.pid;
    live.add(this);
    this.exitPromise = new Promise((resolve) => {
      this.child.once("error", (err) => {
        this.exited = true;
        this.exitCode = `spawn error: ${err.message}`;
        live.delete(this);
        resolve();
      });
      this.child.once("exit", (code, signal) => {
        this.exited = true;
        this.exitCode = code ?? signal;
        live.delete(this);
        resolve();
      });
    });
    this.child.stdout.on("data", (chunk) => {
      if (this.stdoutHead.length < 4000) this.stdoutHead += chunk.toString();
    });
  }

  describe() {
    let tail = "";
    try {
      tail = readFileSync(this.logFile, "utf8").slice(-2000);
    } catch {
      // no log
    }
    return `${this.name} (${this.command} ${this.args.join(" ")}) ${this.exited ? `exited ${this.exitCode}` : "running"}\n${this.stdoutHead}${tail}`;
  }

  /** SIGTERM to the process group, SIGKILL after `graceMs`. */
  async stop(graceMs = 3000) {
    if (this.exited) return;
    killGroup(this.pid, "SIGTERM");
    const timer = setTimeout(() => killGroup(this.pid, "SIGKILL"), graceMs);
    await this.exitPromise;
    clearTimeout(timer);
  }
}

export async function stopAll() {
  await Promise.allSettled([...live].map((p) => p.stop()));
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `probe` every `everyMs` until true; throws with the process's story on exit/timeout. */
export async function waitUntil(proc, what, probe, { timeoutMs = 20_000, everyMs = 20 } = {}) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (proc?.exited) throw new Error(`${what}: ${proc.describe()}`);
    if (await probe().catch(() => false)) return performance.now();
    if (performance.now() > deadline) throw new Error(`${what}: not ready after ${timeoutMs} ms; ${proc?.describe() ?? ""}`);
    await sleep(everyMs);
  }
}

export async function httpStatus(url, init = {}) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(2000) });
  await res.arrayBuffer();
  return res.status;
}

/** One command over RESP (inline form), resolving to the raw reply text. */
export function redisCommand(port, line) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port });
    let buf = "";
    socket.setTimeout(3000, () => {
      socket.destroy();
      reject(new Error(`redis ${line}: timeout`));
    });
    socket.once("error", reject);
    socket.once("connect", () => socket.write(`${line}\r\n`));
    socket.on("data", (chunk) => {
      buf += chunk.toString();
      if (buf.startsWith("$")) {
        const nl = buf.indexOf("\r\n");
        const len = Number(buf.slice(1, nl));
        if (len < 0 || Buffer.byteLength(buf) >= nl + 2 + len + 2) {
          socket.destroy();
          resolve(buf.slice(nl + 2, nl + 2 + len));
        }
      } else if (buf.includes("\r\n")) {
        socket.destroy();
        resolve(buf.trim());
      }
    });
  });
}

const NOT_CLIENT = new Set(["info", "ping", "select", "auth", "hello", "client", "command", "config"]);

/** Commands redis-server has executed so far (INFO commandstats; commands run inside scripts
 * included), without the housekeeping ones. */
export async function redisServerCommands(port) {
  const text = await redisCommand(port, "INFO commandstats");
  let total = 0;
  const byName = {};
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    const name = m[1].toLowerCase();
    if (NOT_CLIENT.has(name)) continue;
    byName[name] = Number(m[2]);
    total += Number(m[2]);
  }
  return { total, byName };
}

/** CPU time of a process (all its threads), nanoseconds; 0 when it is gone. */
export function cpuNs(pid) {
  if (!pid) return 0;
  let total = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
      } catch {
        // thread ended
      }
    }
  } catch {
    return 0;
  }
  return total;
}

/** Busy and total CPU time of the whole machine from /proc/stat, in seconds. */
export function machineCpu() {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0];
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const hz = 100; // USER_HZ on Linux
  const idle = f[3] + (f[4] ?? 0);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busyS: (total - idle) / hz, totalS: total / hz };
}
