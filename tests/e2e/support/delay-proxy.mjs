// An HTTP proxy that stands between the Worker and redis-rest and plays the network: every round
// trip is delayed by a configurable time (as for a database in another region), counted (with
// the commands it carried), and on demand refused or left unanswered (Redis stops answering).
// Everything can be changed while it runs.
//
//   import { startDelayProxy } from "./support/delay-proxy.mjs";
//
//   const proxy = await startDelayProxy({ target: "http://127.0.0.1:8079", delayMs: 40 });
//   proxy.url                      // give this to the Worker as UPSTASH_REDIS_REST_URL
//   proxy.setDelay(200);           // from the next round trip on
//   proxy.setMode("refuse");       // "pass" | "refuse" (connection reset) | "blackhole" (no answer)
//   proxy.stats()                  // {round_trips, commands, by_endpoint, refused, blackholed, ...}
//   proxy.resetStats();
//   await proxy.close();
//
// Also a program, for benchmarks and by-hand runs; it prints `listening on http://...` and is
// controlled over HTTP under /_proxy/ (never forwarded, never counted):
//
//   node tests/e2e/support/delay-proxy.mjs --target URL [--listen 127.0.0.1:0] [--delay-ms N]
//   GET  /_proxy/stats                  the counters above, plus {delay_ms, mode}
//   POST /_proxy/settings {"delay_ms": 200, "mode": "blackhole"}   either field; returns settings
//   POST /_proxy/reset                  zeroes the counters
//
// The delay is one round trip: half before the request is forwarded, half before the answer is
// returned. Binds 127.0.0.1 unless told otherwise.

import http from "node:http";
import { fileURLToPath } from "node:url";

const MODES = new Set(["pass", "refuse", "blackhole"]);
const CONTROL = "/_proxy/";

/** Commands carried by one Upstash REST request: a JSON array of commands for the batch
 * endpoints, one otherwise. */
function commandCount(endpoint, body) {
  if (endpoint !== "pipeline" && endpoint !== "multi_exec") return 1;
  try {
    const parsed = JSON.parse(body);
    return Array.isArray(parsed) ? parsed.length : 0;
  } catch {
    return 0;
  }
}

function endpointOf(method, pathname) {
  if (pathname === "/pipeline") return "pipeline";
  if (pathname === "/multi-exec") return "multi_exec";
  if (pathname === "/" && method === "POST") return "single";
  return "path";
}

const sleep = (ms) => (ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve());

function emptyStats() {
  return {
    round_trips: 0,
    commands: 0,
    by_endpoint: { single: 0, pipeline: 0, multi_exec: 0, path: 0 },
    refused: 0,
    blackholed: 0,
    upstream_errors: 0,
    in_flight: 0,
  };
}

/**
 * Starts the proxy.
 *
 * @param {object} options
 * @param {string} options.target      base URL of redis-rest (http://host:port)
 * @param {number} [options.delayMs=0] delay per round trip, ms
 * @param {string} [options.mode="pass"]
 * @param {string} [options.host="127.0.0.1"]
 * @param {number} [options.port=0]    0 = a free port
 */
export async function startDelayProxy({ target, delayMs = 0, mode = "pass", host = "127.0.0.1", port = 0 }) {
  const upstream = new URL(target);
  if (upstream.protocol !== "http:") throw new Error(`delay proxy: target must be http://, got ${target}`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const state = { delayMs: checkDelay(delayMs), mode: checkMode(mode), stats: emptyStats() };
  // Requests held by "blackhole", answered by nothing; destroyed on close or when the mode changes.
  const held = new Set();
  const sockets = new Set();

  const releaseHeld = () => {
    for (const res of held) res.socket?.destroy();
    held.clear();
  };

  const settings = () => ({ delay_ms: state.delayMs, mode: state.mode });
  const api = {
    url: null,
    port: null,
    get delayMs() {
      return state.delayMs;
    },
    get mode() {
      return state.mode;
    },
    /** Sets the delay per round trip (ms) for round trips that start from now on. */
    setDelay(ms) {
      state.delayMs = checkDelay(ms);
    },
    /** "pass" forwards, "refuse" resets each connection at once, "blackhole" never answers. */
    setMode(next) {
      state.mode = checkMode(next);
      if (state.mode !== "blackhole") releaseHeld();
    },
    stats() {
      return { ...structuredClone(state.stats), ...settings() };
    },
    resetStats() {
      const inFlight = state.stats.in_flight;
      state.stats = emptyStats();
      state.stats.in_flight = inFlight;
    },
    async close() {
      releaseHeld();
      await new Promise((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      agent.destroy();
    },
  };

  const control = (req, res, body) => {
    const reply = (status, value) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(value));
    };
    const route = `${req.method} ${req.url.split("?")[0]}`;
    try {
      if (route === "GET /_proxy/stats") return reply(200, api.stats());
      if (route === "POST /_proxy/reset") {
        api.resetStats();
        return reply(200, api.stats());
      }
      if (route === "POST /_proxy/settings") {
        const update = body ? JSON.parse(body) : {};
        if ("delay_ms" in update) api.setDelay(update.delay_ms);
        if ("mode" in update) api.setMode(update.mode);
        return reply(200, settings());
      }
      return reply(404, { error: `unknown control ${route}` });
    } catch (err) {
      return reply(400, { error: err.message });
    }
  };

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      if (req.url.startsWith(CONTROL)) {
        control(req, res, body.toString());
        return;
      }
      forward(req, res, body);
    });
  });

  async function forward(req, res, body) {
    const pathname = req.url.split("?")[0];
    const endpoint = endpointOf(req.method, pathname);
    const stats = state.stats;
    if (state.mode === "refuse") {
      stats.refused += 1;
      req.socket.destroy();
      return;
    }
    if (state.mode === "blackhole") {
      stats.blackholed += 1;
      held.add(res);
      res.on("close", () => held.delete(res));
      return;
    }
    stats.round_trips += 1;
    stats.by_endpoint[endpoint] += 1;
    stats.commands += commandCount(endpoint, body.toString());
    stats.in_flight += 1;
    const delay = state.delayMs;
    const done = () => {
      state.stats.in_flight = Math.max(0, state.stats.in_flight - 1);
    };
    await sleep(Math.floor(delay / 2));
    const headers = { ...req.headers, host: upstream.host };
    const out = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent },
      async (answer) => {
        const parts = [];
        answer.on("data", (chunk) => parts.push(chunk));
        answer.on("error", () => {
          done();
          res.socket?.destroy();
        });
        answer.on("end", async () => {
          await sleep(delay - Math.floor(delay / 2));
          done();
          // Redis may have been "stopped" while this round trip was under way.
          if (state.mode === "refuse") {
            res.socket?.destroy();
            return;
          }
          const responseHeaders = { ...answer.headers };
          delete responseHeaders["transfer-encoding"];
          const payload = Buffer.concat(parts);
          responseHeaders["content-length"] = String(payload.length);
          res.writeHead(answer.statusCode ?? 502, responseHeaders);
          res.end(payload);
        });
      },
    );
    out.on("error", () => {
      state.stats.upstream_errors += 1;
      done();
      res.socket?.destroy();
    });
    out.end(body);
  }

  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  server.keepAliveTimeout = 60_000;
  const address = server.address();
  api.port = address.port;
  api.url = `http://${host}:${address.port}`;
  return api;
}

function checkDelay(ms) {
  const n = Number(ms);
  if (!Number.isFinite(n) || n < 0 || n > 60_000) throw new Error(`delay_ms must be 0..=60000, got ${ms}`);
  return n;
}

function checkMode(mode) {
  if (!MODES.has(mode)) throw new Error(`mode must be one of ${[...MODES].join(", ")}, got ${mode}`);
  return mode;
}

// ---------------------------------------------------------------------------------------------
// As a program.

async function main(argv) {
  const opts = { listen: "127.0.0.1:0", target: null, delayMs: 0 };
  for (let i = 0; i < argv.length; i += 1) {
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${argv[i - 1]} needs a value`);
      return v;
    };
    if (argv[i] === "--listen") opts.listen = next();
    else if (argv[i] === "--target") opts.target = next();
    else if (argv[i] === "--delay-ms") opts.delayMs = Number(next());
    else throw new Error(`unknown argument ${argv[i]} (--target URL [--listen HOST:PORT] [--delay-ms N])`);
  }
  if (!opts.target) throw new Error("--target URL is required");
  const cut = opts.listen.lastIndexOf(":");
  const proxy = await startDelayProxy({
    target: opts.target,
    delayMs: opts.delayMs,
    host: opts.listen.slice(0, cut),
    port: Number(opts.listen.slice(cut + 1)),
  });
  console.log(`listening on ${proxy.url}`);
  const stop = () => proxy.close().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).catch((err) => {
    console.error(`delay-proxy: ${err.message}`);
    process.exit(2);
  });
}
