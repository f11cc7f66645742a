// The benchmark's stack: redis-server → redis-rest (release) → Workers on raw workerd → demo-origin
// (release), each on a free 127.0.0.1 port, each Worker in its own `workerd serve` process.

import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { HOST, Proc, freePort, httpStatus, redisCommand, redisServerCommands, sleep, waitUntil } from "./proc.mjs";

// Tollgate's compatibility date and flags, from wrangler.toml (the peer and the bare Worker get the
// same, so the runtime is the same for all).
const WRANGLER_TOML = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "../../wrangler.toml"), "utf8");
export const COMPATIBILITY_DATE = WRANGLER_TOML.match(/^compatibility_date\s*=\s*"([^"]+)"/m)?.[1] ?? "2026-04-01";
export const COMPATIBILITY_FLAGS = [...(WRANGLER_TOML.match(/^compatibility_flags\s*=\s*\[([^\]]*)\]/m)?.[1] ?? "").matchAll(/"([^"]+)"/g)].map((m) => m[1]);

export async function startRedis(root, dir) {
  for (let attempt = 0; ; attempt += 1) {
    const port = await freePort();
    const proc = new Proc("redis-server", "redis-server", [
      "--bind", HOST, "--port", String(port), "--save", "", "--appendonly", "no",
      "--dir", dir, "--protected-mode", "yes", "--daemonize", "no",
    ], { logFile: path.join(dir, "redis-server.log") });
    try {
      await waitUntil(proc, "redis-server", async () => (await redisCommand(port, "PING")) === "+PONG");
      return { port, proc, commands: () => redisServerCommands(port) };
    } catch (err) {
      await proc.stop();
      if (attempt >= 2) throw err;
    }
  }
}

export async function startRedisRest(root, dir, redisPort) {
  const token = randomBytes(16).toString("hex");
  const bin = path.join(root, "target/release/redis-rest");
  for (let attempt = 0; ; attempt += 1) {
    const port = await freePort();
    const proc = new Proc("redis-rest", bin, [
      "--listen", `${HOST}:${port}`, "--redis", `redis://${HOST}:${redisPort}`, "--token", token,
    ], { logFile: path.join(dir, "redis-rest.log") });
    const url = `http://${HOST}:${port}`;
    try {
      await waitUntil(proc, "redis-rest", async () => (await httpStatus(`${url}/health`)) === 200);
      const auth = { authorization: `Bearer ${token}` };
      return {
        url,
        token,
        proc,
        async stats() {
          const res = await fetch(`${url}/_rest/stats`, { headers: auth });
          return res.json();
        },
      };
    } catch (err) {
      await proc.stop();
      if (attempt >= 2) throw err;
    }
  }
}

export async function startOrigin(root, dir) {
  const bin = path.join(root, "target/release/demo-origin");
  const proc = new Proc("demo-origin", bin, ["--listen", `${HOST}:0`], { logFile: path.join(dir, "demo-origin.log") });
  let url = null;
  await waitUntil(proc, "demo-origin", async () => {
    url ??= proc.stdoutHead.match(/listening on (http:\/\/\S+)/)?.[1] ?? null;
    return url !== null && (await httpStatus(`${url}/_origin/health`)) === 200;
  });
  return {
    url,
    proc,
    async hits() {
      const res = await fetch(`${url}/_origin/hits`);
      return res.json();
    },
    async settings(update) {
      const res = await fetch(`${url}/_origin/settings`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(update),
      });
      if (!res.ok) throw new Error(`origin settings: HTTP ${res.status} ${await res.text()}`);
      return res.json();
    },
  };
}

/** A capnp string literal for an ASCII value. */
function capnpString(text) {
  if (!/^[\x20-\x7e]*$/.test(text)) throw new Error(`binding value not printable ASCII: ${text.slice(0, 40)}`);
  return `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/**
 * Writes `dir/config.capnp` for one Worker and copies its modules next to it.
 *
 * @param {object} w
 * @param {string} w.dir
 * @param {{name: string, file: string, type: "esModule" | "wasm"}[]} w.modules  first = main
 * @param {Record<string, string>} w.bindings  text bindings (values over 200 bytes are embedded files)
 * @param {number} w.port
 */
export function writeWorkerConfig({ dir, modules, bindings, port }) {
  mkdirSync(dir, { recursive: true });
  const mods = modules.map((m) => {
    copyFileSync(m.file, path.join(dir, m.name));
    return `    (name = ${capnpString(m.name)}, ${m.type} = embed ${capnpString(m.name)}),`;
  });
  const binds = Object.entries(bindings).map(([name, value], i) => {
    if (value.length > 200 || !/^[\x20-\x7e]*$/.test(value)) {
      const file = `binding-${i}.txt`;
      writeFileSync(path.join(dir, file), value);
      return `    (name = ${capnpString(name)}, text = embed ${capnpString(file)}),`;
    }
    return `    (name = ${capnpString(name)}, text = ${capnpString(value)}),`;
  });
  const config = `using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .mainWorker),
    # Subrequests (origin, redis-rest) go to 127.0.0.1 only.
    (name = "internet", network = (allow = ["local"])),
  ],
  sockets = [ (name = "http", address = "${HOST}:${port}", http = (), service = "main") ],
);

const mainWorker :Workerd.Worker = (
  modules = [
${mods.join("\n")}
  ],
  compatibilityDate = "${COMPATIBILITY_DATE}",
  compatibilityFlags = [${COMPATIBILITY_FLAGS.map(capnpString).join(", ")}],
  bindings = [
${binds.join("\n")}
  ],
);
`;
  writeFileSync(path.join(dir, "config.capnp"), config);
  return path.join(dir, "config.capnp");
}

/**
 * Starts `workerd serve` on a generated config; resolves once `readyPath` answers 200, with the
 * time from spawn to that first 200 (ms).
 */
export async function startWorkerd({ root, name, dir, modules, bindings, readyPath, extraArgs = [] }) {
  const workerd = path.join(root, "node_modules/.bin/workerd");
  for (let attempt = 0; ; attempt += 1) {
    const port = await freePort();
    const config = writeWorkerConfig({ dir, modules, bindings, port });
    const proc = new Proc(`workerd ${name}`, workerd, ["serve", config, ...extraArgs], { logFile: path.join(dir, "workerd.log"), cwd: dir });
    const url = `http://${HOST}:${port}`;
    try {
      const readyAt = await waitUntil(proc, `workerd ${name}`, async () => (await httpStatus(`${url}${readyPath}`)) === 200, { everyMs: 2 });
      return { name, url, port, proc, startupMs: readyAt - proc.spawnedAt };
    } catch (err) {
      await proc.stop();
      if (attempt >= 2 || proc.exitCode !== null && !/address|bind|in use/i.test(proc.describe())) throw err;
      await sleep(50);
    }
  }
}
