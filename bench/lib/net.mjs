// The `net-*` scenarios: Redis as far away as a real Upstash database. The delay proxy of the e2e
// harness (tests/e2e/support/delay-proxy.mjs, run as a program) stands between each Worker and
// redis-rest, one proxy per Worker, and delays every round trip; its counters give the round
// trips and commands per request of each system.
//
// Two parts per delay: wrk runs with API keys the isolate has already seen (driven by main.mjs
// like the other scenarios), and a sequential probe from Node with keys the isolate has never
// seen (created just before through another Tollgate process, so the measured isolate has not
// looked them up yet), interleaved with the same request made with a seen key.

import { performance } from "node:perf_hooks";

import { sleep } from "./proc.mjs";

/** Round-trip delays: an Upstash database in the same region, and in another one. */
export const NET_DELAYS_MS = [5, 40];
/** wrk connections: low, so that latency is measured rather than CPU saturation. */
export const NET_CONNECTIONS = [1, 8];
/** Loads: proxied (tier + route limit), a cache hit read from Redis, a miss (origin at once). */
export const NET_LOADS = ["proxied", "hit-redis", "miss"];
/** Which Worker of each side runs which load (Tollgate's Redis hits with the isolate layer off). */
export const NET_SYSTEMS = {
  proxied: ["peer-net", "tollgate-net"],
  "hit-redis": ["peer-net", "tollgate-noiso-net"],
  miss: ["peer-net", "tollgate-net"],
};

export const netGroup = (delayMs) => `net-${delayMs}ms`;
export const netId = (delayMs, load, conns) => `${netGroup(delayMs)}-${load}-c${conns}`;

const pct = (sorted, p) => (sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]);

function latencyOf(ms) {
  const s = [...ms].sort((a, b) => a - b);
  return { n: s.length, p50_ms: pct(s, 0.5), p99_ms: pct(s, 0.99), max_ms: s[s.length - 1] ?? null };
}

/**
 * Sequential requests, one at a time, alternating a never-seen key (one per request, used once)
 * with a seen key on the same kind of request. Proxy counters are read per request, so the
 * round trips of each caller kind are counted apart (the answer's background work is given
 * `settleMs` to land before the next request).
 *
 * @param {object} o
 * @param {string} o.url        the Worker
 * @param {{stats: () => Promise<object>}} o.proxy  its delay proxy
 * @param {(i: number, seen: boolean) => string} o.pathFor
 * @param {string[]} o.freshKeys  one per sample, never used before in this isolate
 * @param {string} o.seenKey
 * @param {number} [o.settleMs=60]
 */
export async function probeKeys({ url, proxy, pathFor, freshKeys, seenKey, settleMs = 60 }) {
  const out = {};
  for (const kind of ["never_seen", "seen"]) out[kind] = { ms: [], round_trips: 0, flushes: 0, commands: 0, status: {}, x_cache: {} };
  for (let i = 0; i < freshKeys.length; i += 1) {
    for (const kind of ["never_seen", "seen"]) {
      const key = kind === "seen" ? seenKey : freshKeys[i];
      const before = await proxy.stats();
      const t = performance.now();
      const res = await fetch(`${url}${pathFor(i, kind === "seen")}`, {
        headers: { authorization: `Bearer ${key}`, "cf-connecting-ip": "198.51.100.90" },
      });
      await res.arrayBuffer();
      const ms = performance.now() - t;
      await sleep(settleMs);
      const after = await proxy.stats();
      const o = out[kind];
      o.ms.push(ms);
      o.round_trips += after.round_trips - before.round_trips;
      // The isolate's stats flush (a /multi-exec in the background, every 10 s) may fall into a
      // sample; it is counted apart, since it is not on the request's path.
      o.flushes += after.by_endpoint.multi_exec - before.by_endpoint.multi_exec;
      o.commands += after.commands - before.commands;
      o.status[res.status] = (o.status[res.status] ?? 0) + 1;
      const xc = res.headers.get("x-cache") ?? "none";
      o.x_cache[xc] = (o.x_cache[xc] ?? 0) + 1;
    }
  }
  const result = {};
  for (const [kind, o] of Object.entries(out)) {
    const n = o.ms.length || 1;
    result[kind] = {
      ...latencyOf(o.ms),
      round_trips_per_req: o.round_trips / n,
      flush_round_trips_per_req: o.flushes / n,
      commands_per_req: o.commands / n,
      status: o.status,
      x_cache: o.x_cache,
      samples_ms: o.ms.map((x) => Math.round(x * 100) / 100),
    };
  }
  return result;
}
