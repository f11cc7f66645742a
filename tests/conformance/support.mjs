// Test stack for the conformance suite: a real redis-server and the built redis-rest binary on
// free loopback ports, stopped by PID. The redis-rest binary comes from REDIS_REST_BIN
// (default target/debug/redis-rest; build it with `cargo build -p redis-rest`).
import { spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const TOKEN = "conformance-token";
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** A free TCP port on 127.0.0.1 (bound, then released). */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function findRedisServer() {
  const dirs = (process.env.PATH ?? "").split(path.delimiter).concat(["/usr/bin", "/usr/local/bin"]);
  for (const dir of dirs) {
    const candidate = path.join(dir, "redis-server");
    if (dir && existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  // A missing dependency fails the suite; it never skips.
  throw new Error("redis-server not found: install it (apt-get install redis-server)");
}

function restBinary() {
  const bin = process.env.REDIS_REST_BIN ?? path.join(ROOT, "target", "debug", "redis-rest");
  const resolved = path.resolve(ROOT, bin);
  if (!existsSync(resolved)) {
    throw new Error(`redis-rest binary not found at ${resolved}: run \`cargo build -p redis-rest\` or set REDIS_REST_BIN`);
  }
  return resolved;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, probe, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch (e) {
      lastError = e;
    }
    await sleep(25);
  }
  throw new Error(`timed out waiting for ${what}${lastError ? `: ${lastError}` : ""}`);
}

function redisPing(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port }, () => socket.write("PING\r\n"));
    let data = "";
    socket.on("data", (chunk) => {
      data += chunk;
      if (data.includes("\r\n")) {
        socket.destroy();
        resolve(data.startsWith("+PONG"));
      }
    });
    socket.on("error", () => resolve(false));
  });
}

function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", resolve));
}

/**
 * Starts redis-server and redis-rest. Returns { url, token, stats(), resetStats(), rest(), stop() }.
 */
export async function startStack() {
  const redisPort = await freePort();
  const redis = spawn(
    findRedisServer(),
    ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: "ignore" },
  );
  const children = [redis];
  try {
    await until("redis-server", () => redisPing(redisPort));
    const restPort = await freePort();
    let log = "";
    const rest = spawn(
      restBinary(),
      ["--listen", `127.0.0.1:${restPort}`, "--redis", `redis://127.0.0.1:${redisPort}`, "--token", TOKEN],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    children.push(rest);
    rest.stderr.on("data", (chunk) => {
      log += chunk;
    });
    const url = `http://127.0.0.1:${restPort}`;
    await until(`redis-rest (log: ${log})`, async () => (await fetch(`${url}/health`)).ok);

    const auth = { Authorization: `Bearer ${TOKEN}` };
    return {
      url,
      token: TOKEN,
      redisPort,
      restPid: rest.pid,
      redisPid: redis.pid,
      log: () => log,
      /** Raw request to redis-rest with the token. */
      async rest(pathname, { method = "POST", body, headers = {} } = {}) {
        const res = await fetch(url + pathname, { method, body, headers: { ...auth, ...headers } });
        const bytes = Buffer.from(await res.arrayBuffer());
        return { status: res.status, headers: res.headers, text: bytes.toString("utf8"), bytes };
      },
      async stats() {
        const res = await fetch(`${url}/_rest/stats`, { headers: auth });
        if (!res.ok) throw new Error(`stats: HTTP ${res.status}`);
        return res.json();
      },
      async resetStats() {
        const res = await fetch(`${url}/_rest/stats/reset`, { method: "POST", headers: auth });
        if (!res.ok) throw new Error(`stats reset: HTTP ${res.status}`);
      },
      async stop() {
        await stopChildren(children);
      },
    };
  } catch (e) {
    await stopChildren(children);
    throw e;
  }
}

async function stopChildren(children) {
  for (const child of [...children].reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    // By PID: SIGTERM first (redis-rest shuts down gracefully), SIGKILL if it lingers.
    try {
      process.kill(child.pid, "SIGTERM");
    } catch {
      continue;
    }
    let timer;
    const done = await Promise.race([
      exited(child).then(() => true),
      new Promise((resolve) => {
        timer = setTimeout(() => resolve(false), 5000);
      }),
    ]);
    clearTimeout(timer);
    if (!done) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {}
      await exited(child);
    }
  }
}
