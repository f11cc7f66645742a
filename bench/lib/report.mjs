// Markdown report of a results object written by bench/lib/main.mjs. Also usable on its own:
//   node bench/lib/report.mjs bench/results/<date>.json > out.md

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const PEERS = ["peer-sliding", "peer-fixed"];
const KIB = 1024;

const num = (x, d = 2) => (x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(d));
const big = (x) => (x === null || x === undefined ? "–" : Math.round(x).toLocaleString("en-US"));

/** "median (min–max)" of a spread. */
function sp(s, d = 2, f = null) {
  if (!s) return "–";
  const v = f ?? ((x) => num(x, d));
  if (s.n === 1 || s.min === s.max) return v(s.median);
  return `${v(s.median)} (${v(s.min)}–${v(s.max)})`;
}

const ratio = (a, b) => (a === null || b === null || b === 0 || a === undefined || b === undefined ? null : a / b);
const rx = (r) => (r === null ? "–" : `${r.toFixed(2)}×`);

function tollgateOf(sc) {
  return sc.systems.find((s) => s.startsWith("tollgate"));
}

function summaryTable(res) {
  const lines = [
    "| scenario | Tollgate req/s | peer SW req/s | Tollgate ÷ SW | peer FW req/s | Tollgate ÷ FW | p99 ms Tollgate / SW / FW | Redis HTTP/req Tollgate / SW / FW | Redis cmds/req Tollgate / SW / FW |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const [id, sc] of Object.entries(res.scenarios)) {
    if (isNet(sc)) continue;
    const t = sc.summary[tollgateOf(sc)];
    const sw = sc.summary["peer-sliding"];
    const fw = sc.summary["peer-fixed"];
    if (!t) continue;
    const tri = (k, d) => [t, sw, fw].map((s) => num(s?.[k]?.median, d)).join(" / ");
    lines.push(
      `| ${id}${tollgateOf(sc) !== "tollgate" ? ` (${tollgateOf(sc)})` : ""} | ${sp(t.rps, 0, big)} | ${sp(sw?.rps, 0, big)} | ${rx(ratio(t.rps?.median, sw?.rps?.median))} | ${sp(fw?.rps, 0, big)} | ${rx(ratio(t.rps?.median, fw?.rps?.median))} | ${tri("p99_ms", 1)} | ${tri("redis_http_per_req", 2)} | ${tri("redis_cmds_per_req", 2)} |`,
    );
  }
  return lines.join("\n");
}

function detailTable(sc) {
  const lines = [
    "| system | req/s | p50 ms | p99 ms | Redis HTTP/req | Redis cmds/req (REST) | Redis cmds/req (server, incl. in scripts) | origin req/req | workerd CPU µs/req | other load (cores) | answers |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const sys of sc.systems) {
    const s = sc.summary[sys];
    const last = sc.rounds[sys][sc.rounds[sys].length - 1];
    const st = Object.entries(last.status).filter(([, v]) => v).map(([k, v]) => `${k}:${v}`).join(" ");
    const xc = Object.entries(last.x_cache).filter(([k, v]) => v && k !== "none").map(([k, v]) => `${k}:${v}`).join(" ");
    const tm = last.tollgate_mode ?? {};
    const modes = sys.startsWith("tollgate") ? `; X-Tollgate-Mode ${Object.entries(tm).filter(([, v]) => v).map(([k, v]) => `${k}:${v}`).join(" ")}` : "";
    lines.push(
      `| ${sys} | ${sp(s.rps, 0, big)} | ${sp(s.p50_ms)} | ${sp(s.p99_ms)} | ${sp(s.redis_http_per_req, 3)} | ${sp(s.redis_cmds_per_req, 3)} | ${sp(s.redis_server_cmds_per_req, 2)} | ${sp(s.origin_per_req, 3)} | ${sp(s.cpu_workerd_us_per_req, 0)} | ${sp(s.foreign_cpu_cores, 2)} | ${st}${xc ? `; X-Cache ${xc}` : ""}${modes} (last round) |`,
    );
  }
  const t = tollgateOf(sc);
  const ratios = PEERS.filter((p) => sc.summary[p] && sc.summary[t]).map((p) => {
    const a = sc.summary[t];
    const b = sc.summary[p];
    return `vs ${p}: throughput ${rx(ratio(a.rps?.median, b.rps?.median))}, p50 ${rx(ratio(a.p50_ms?.median, b.p50_ms?.median))}, p99 ${rx(ratio(a.p99_ms?.median, b.p99_ms?.median))}, Redis HTTP ${rx(ratio(a.redis_http_per_req?.median, b.redis_http_per_req?.median))}, Redis cmds ${rx(ratio(a.redis_cmds_per_req?.median, b.redis_cmds_per_req?.median))}`;
  });
  if (ratios.length) lines.push("", `Tollgate ÷ peer (medians) — ${ratios.join("; ")}.`);
  const byName = sc.systems
    .map((sys) => {
      const s = sc.summary[sys];
      const total = s.requests_total || 1;
      const parts = Object.entries(s.rest_commands_by_name).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${(v / total).toFixed(3)}`);
      return parts.length ? `${sys}: ${parts.join(", ")}` : null;
    })
    .filter(Boolean);
  if (byName.length) lines.push("", `REST commands per request by name — ${byName.join("; ")}.`);
  return lines.join("\n");
}

const isNet = (sc) => Boolean(sc?.net);
/** Scenario → the Tollgate system doing the same work as the peers. */
const SAME_WORK = {
  proxied: "tollgate",
  "denied-first": "tollgate",
  "denied-repeated": "tollgate",
  "hit-redis": "tollgate-noiso",
  miss: "tollgate",
  "light-hit-redis": "tollgate-noiso",
  "light-miss": "tollgate",
};

/** The goals of this round (issue 13), each with its measured medians and a verdict. */
function issueGoals(res, med, verdict) {
  const S = res.scenarios;
  const rows = [];
  const peersOf = (id) => PEERS.filter((p) => S[id]?.summary?.[p]);
  const all = (oks) => (oks.length === 0 ? null : oks.every(Boolean));

  // 1. CPU per request
  {
    const parts = [];
    const oks = [];
    for (const [id, max] of [["proxied", 0.7], ["denied-first", 0.7], ["hit-redis", 0.7], ["miss", 0.6]]) {
      const t = SAME_WORK[id];
      const v = med(id, t, "cpu_workerd_us_per_req");
      if (v === null) continue;
      const cells = peersOf(id).map((p) => {
        const pv = med(id, p, "cpu_workerd_us_per_req");
        const r = ratio(v, pv);
        if (r !== null) oks.push(r <= max);
        return `${p} ${num(pv, 0)} µs → **${rx(r)}**`;
      });
      parts.push(`${id}: Tollgate ${num(v, 0)} µs vs ${cells.join(", ")} (target ≤ ${max}×)`);
    }
    const floor = med("proxied", "bare", "cpu_workerd_us_per_req");
    const staticFloor = med("hit-isolate", "bare-static", "cpu_workerd_us_per_req");
    const tp = med("proxied", "tollgate", "cpu_workerd_us_per_req");
    if (floor !== null && tp !== null) {
      parts.push(`floor: bare pass-through ${num(floor, 0)} µs (proxied)${staticFloor !== null ? `, bare static 200 ${num(staticFloor, 0)} µs` : ""}; aim for proxied ≤ floor + 150 µs = ${num(floor + 150, 0)} µs: Tollgate ${num(tp, 0)} µs = floor + ${num(tp - floor, 0)} µs (aim ${tp <= floor + 150 ? "met" : "missed"})`);
    }
    rows.push(["1. CPU per request (workerd CPU µs/req) ≤ 0.7× the peer's on proxied, denied-first and Redis-hit requests, ≤ 0.6× on misses (vs both peers)", parts.join("<br>") || "–", verdict(all(oks))]);
  }
  // 2. Throughput
  {
    const parts = [];
    const oks = [];
    for (const [id, t] of Object.entries(SAME_WORK)) {
      const v = med(id, t, "rps");
      if (v === null) continue;
      const cells = peersOf(id).map((p) => {
        const r = ratio(v, med(id, p, "rps"));
        if (r !== null) oks.push(r >= 1.3);
        return `${p} ${rx(r)}`;
      });
      const bound = id.includes("miss") || id.startsWith("light-") ? " (bound by latency: origin or one connection)" : "";
      parts.push(`${id}: ${big(v)} req/s, ${cells.join(", ")}${bound}`);
    }
    const mix = med("mix", "tollgate", "rps");
    if (mix !== null) {
      for (const p of peersOf("mix")) {
        const r = ratio(mix, med("mix", p, "rps"));
        if (r !== null) oks.push(r >= 2);
        parts.push(`mix vs ${p}: **${rx(r)}** (target ≥ 2×)`);
      }
    }
    rows.push(["2. Throughput ≥ 1.3× the peer on every same-work scenario, ≥ 2× on the mix (net-* and hit-isolate are not same-work throughput scenarios)", parts.join("<br>") || "–", verdict(all(oks))]);
  }
  // 3. p99
  {
    const parts = [];
    const oks = [];
    for (const [id, sc] of Object.entries(S)) {
      const t = tollgateOf(sc);
      const ps = isNet(sc) ? ["peer-net"] : PEERS;
      const tv = sc.summary[t]?.p99_ms?.median;
      if (tv === undefined || tv === null) continue;
      const cells = ps.filter((p) => sc.summary[p]).map((p) => {
        const pv = sc.summary[p].p99_ms.median;
        oks.push(tv <= pv);
        return `${num(pv, 1)}${tv <= pv ? "" : " ✗"}`;
      });
      if (cells.length) parts.push(`${id}: ${num(tv, 1)} vs ${cells.join(" / ")} ms`);
    }
    rows.push(["3. p99 ≤ the peer's p99 in every scenario, the mix included (Tollgate vs peer SW / FW, or the net peer; ✗ = worse)", parts.join("<br>") || "–", verdict(all(oks))]);
  }
  // 4. Commands
  {
    const parts = [];
    const oks = [];
    const hit = med("hit-redis", "tollgate-noiso", "redis_cmds_per_req");
    if (hit !== null) {
      oks.push(hit <= 1.01);
      parts.push(`Redis hit: ${num(hit, 3)} commands/req (target 1; peer ${peersOf("hit-redis").map((p) => num(med("hit-redis", p, "redis_cmds_per_req"), 2)).join(" / ")})`);
    }
    const miss = med("miss", "tollgate", "redis_cmds_per_req");
    if (miss !== null) {
      oks.push(miss <= 3.03);
      parts.push(`miss: ${num(miss, 3)} commands/req (target ≤ 3, the fill lock included; peer ${peersOf("miss").map((p) => num(med("miss", p, "redis_cmds_per_req"), 2)).join(" / ")})`);
    }
    const mix = med("mix", "tollgate", "redis_cmds_per_req");
    if (mix !== null) {
      for (const p of peersOf("mix")) {
        const r = ratio(mix, med("mix", p, "redis_cmds_per_req"));
        if (r !== null) oks.push(r <= 0.3);
        parts.push(`mix vs ${p}: ${num(mix, 3)} ÷ ${num(med("mix", p, "redis_cmds_per_req"), 3)} = **${rx(r)}** (target ≤ 0.3×)`);
      }
    }
    rows.push(["4. Commands (REST level; each pipeline entry / EVALSHA = 1; 1% allowed for the stats flush): a Redis hit = 1, a miss ≤ 3, the mix ≤ 0.3× the peer's", parts.join("<br>") || "–", verdict(all(oks))]);
  }
  // 5. Latency with a real network
  for (const row of netGoals(res, verdict)) rows.push(row);
  // 6. Cold start and size
  {
    const t = res.startup?.tollgate;
    const p = res.startup?.["peer-sliding"];
    const b = res.startup?.bare;
    rows.push([
      "6. Cold start: fresh isolate (spawned `workerd serve`) to its first answer, Tollgate vs the peer (reported, no target)",
      t ? `Tollgate ${sp(t, 0)} ms, peer ${sp(p, 0)} ms${b ? `, bare ${sp(b, 0)} ms` : ""} (median (min–max) of ${t.n} / ${p?.n ?? 0} / ${b?.n ?? 0} spawns)` : "–",
      t ? "reported" : "not measured",
    ]);
    const gz = res.build?.wasm_gzip_bytes;
    rows.push(["6. Release wasm gzip < 400 KB (400,000 B)", gz ? `${big(gz)} B gzip -9 (${(gz / KIB).toFixed(1)} KiB; ${(res.build.wasm_raw_bytes / KIB).toFixed(0)} KiB raw)` : "–", verdict(gz ? gz < 400_000 : null)]);
  }
  return rows;
}

// ------------------------------------------------------------------------------------------------
// net-*: Redis behind the delay proxy

/** The net figures, per delay and load: rows of {caller, client, tollgate, peer} figures. */
function netRows(res) {
  const S = res.scenarios;
  const byDelay = {};
  for (const [id, sc] of Object.entries(S)) {
    if (!isNet(sc)) continue;
    const { delay_ms: d, load, connections: c } = sc.net;
    const t = tollgateOf(sc);
    const fig = (sys) => {
      const s = sc.summary[sys];
      // Round trips on the requests' path: the background stats flushes counted apart (older
      // results did not).
      const flushes = s?.proxy_flush_round_trips_per_req?.median ?? 0;
      return s ? { p50: s.p50_ms?.median, p99: s.p99_ms?.median, rt: s.proxy_round_trips_per_req?.median == null ? null : s.proxy_round_trips_per_req.median - flushes, flushes, cmds: s.proxy_commands_per_req?.median, rps: s.rps?.median } : null;
    };
    ((byDelay[d] ??= {})[load] ??= []).push({ caller: "seen key", client: `wrk, ${c} conn.`, order: c, id, tollgate: fig(t), tollgateSys: t, peer: fig("peer-net") });
  }
  const keys = res.net_keys;
  for (const d of keys?.delays_ms ?? []) {
    for (const [load, bySys] of Object.entries(keys.by_delay[d] ?? {})) {
      const t = Object.keys(bySys).find((s) => s.startsWith("tollgate"));
      for (const kind of ["never_seen", "seen"]) {
        const fig = (sys) => {
          const k = bySys[sys]?.[kind];
          // Round trips on the request's path: the background stats flushes that fell into the
          // samples are left out (older results did not count them apart).
          return k ? { p50: k.p50_ms, p99: k.p99_ms, rt: k.round_trips_per_req - (k.flush_round_trips_per_req ?? 0), flushes: k.flush_round_trips_per_req ?? 0, cmds: k.commands_per_req, n: k.n } : null;
        };
        ((byDelay[d] ??= {})[load] ??= []).push({ caller: kind === "seen" ? "seen key" : "**never-seen key**", client: `Node, 1 at a time, ${keys.samples} req.`, order: kind === "seen" ? 100 : 101, tollgate: fig(t), tollgateSys: t, peer: fig("peer-net") });
      }
    }
  }
  for (const loads of Object.values(byDelay)) for (const rows of Object.values(loads)) rows.sort((a, b) => a.order - b.order);
  return byDelay;
}

/** Round trips on the answer's path, from the p50 slope between the two delays. */
function pathRoundTrips(byDelay, load, order, side) {
  const ds = Object.keys(byDelay).map(Number).sort((a, b) => a - b);
  if (ds.length < 2) return null;
  const [lo, hi] = [ds[0], ds[ds.length - 1]];
  const a = byDelay[lo]?.[load]?.find((r) => r.order === order)?.[side]?.p50;
  const b = byDelay[hi]?.[load]?.find((r) => r.order === order)?.[side]?.p50;
  if (a === undefined || b === undefined || a === null || b === null) return null;
  return (b - a) / (hi - lo);
}

function netGoals(res, verdict) {
  const byDelay = netRows(res);
  if (Object.keys(byDelay).length === 0) {
    return [["5. Latency with a real network (net-5ms, net-40ms)", "–", verdict(null)]];
  }
  const rt = [];
  const rtOk = [];
  const p50 = [];
  const p50Ok = [];
  const hit = [];
  const hitOk = [];
  for (const [d, loads] of Object.entries(byDelay)) {
    for (const [load, rows] of Object.entries(loads)) {
      for (const r of rows) {
        if (!r.tollgate) continue;
        const label = `${d} ms, ${load}, ${r.caller.replace(/\*/g, "")} (${r.client})`;
        // Seen keys are judged on the wrk rows (thousands of requests); the Node rows with the
        // seen key are the same-client reference for the never-seen rows (a stats flush in a
        // few samples would count 1/N there).
        const judged = r.order !== 100;
        const note = judged ? "" : " (reference, not judged)";
        if (load !== "miss") {
          if (judged) rtOk.push(r.tollgate.rt <= 1.01);
          const flushes = r.tollgate.flushes >= 0.005 ? ` (stats flushes in the samples, not counted: ${num(r.tollgate.flushes, 2)}/req)` : "";
          rt.push(`${label}: Tollgate ${num(r.tollgate.rt, 2)}, peer ${num(r.peer?.rt, 2)}${flushes}${note}`);
        }
        if (!r.peer) continue;
        if (load === "proxied") {
          const ok = r.tollgate.p50 <= r.peer.p50;
          if (judged) p50Ok.push(ok);
          p50.push(`${label}: ${num(r.tollgate.p50)} vs ${num(r.peer.p50)} ms${ok ? "" : " ✗"}${note}`);
        } else if (load === "hit-redis") {
          const ok = r.tollgate.p50 <= r.peer.p50 - Number(d);
          if (judged) hitOk.push(ok);
          hit.push(`${label}: ${num(r.tollgate.p50)} vs ${num(r.peer.p50)} − ${d} = ${num(r.peer.p50 - Number(d))} ms${ok ? "" : " ✗"}${note}`);
        }
      }
    }
    // Misses: round trips counted (all, background writes included), and on the answer's path.
    const m = loads.miss?.find((r) => r.order === 1) ?? loads.miss?.[0];
    if (m?.tollgate) rt.push(`${d} ms, miss (${m.client}; counted, incl. the fill's background write): Tollgate ${num(m.tollgate.rt, 2)}, peer ${num(m.peer?.rt, 2)}`);
  }
  for (const [order, what] of [[1, "wrk, 1 conn., seen key"], [101, "Node, never-seen key"]]) {
    const t = pathRoundTrips(byDelay, "miss", order, "tollgate");
    const p = pathRoundTrips(byDelay, "miss", order, "peer");
    if (t !== null) {
      rtOk.push(t <= 1.3);
      rt.push(`miss, round trips before the answer (origin at once) from the p50 slope between delays (${what}): Tollgate ${num(t, 2)}, peer ${num(p, 2)} (target ≤ 1, 1.3 allowed for noise)`);
    }
  }
  const all = (oks) => (oks.length === 0 ? null : oks.every(Boolean));
  return [
    ["5a. Every gated request costs one round trip before the origin, a never-seen API key included (round trips per request counted by each Worker's delay proxy; misses from the latency slope)", rt.join("<br>"), verdict(all(rtOk))],
    ["5b. Tollgate's p50 ≤ the peer's on proxied requests (Redis 5 / 40 ms away)", p50.join("<br>") || "–", verdict(all(p50Ok))],
    ["5c. Tollgate's p50 ≤ the peer's minus one round trip on gated cached requests (Redis hits)", hit.join("<br>") || "–", verdict(all(hitOk))],
  ];
}

function netSection(res) {
  const byDelay = netRows(res);
  if (Object.keys(byDelay).length === 0) return "";
  const out = [
    "Every Redis round trip of the Worker is delayed by the delay proxy of the e2e harness (`tests/e2e/support/delay-proxy.mjs`, one proxy per Worker, in front of the same redis-rest), as an Upstash database in the same region (5 ms) or in another one (40 ms). Tollgate with its defaults (adaptive Redis budget); its Redis hits with `isolate_ttl 0ms`. The peer is `peer-sliding`. The origin answers at once (a miss measures Redis only). Callers are BASIC API keys: a **seen** key was used in the isolate before; a **never-seen** key was created just before through another Tollgate process and is used once. The peer resolves API keys from a map in a binding (no Redis), so a never-seen key costs it nothing — this favours the peer. wrk rows: median over rounds; Node rows: one request at a time, the never-seen and the seen key alternating, p99 of a few samples ≈ the maximum. Round trips and commands per request are counted by each Worker's own proxy (background work included).",
  ];
  for (const d of Object.keys(byDelay).map(Number).sort((a, b) => a - b)) {
    out.push("", `**Redis ${d} ms away**`, "", "| load | caller | client | Tollgate p50 / p99 ms | peer p50 / p99 ms | Tollgate − peer p50 ms | round trips/req Tollgate / peer | commands/req Tollgate / peer |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (const [load, rows] of Object.entries(byDelay[d])) {
      for (const r of rows) {
        const t = r.tollgate ?? {};
        const p = r.peer ?? {};
        out.push(`| ${load} (${r.tollgateSys}) | ${r.caller} | ${r.client} | ${num(t.p50)} / ${num(t.p99)} | ${num(p.p50)} / ${num(p.p99)} | ${num(t.p50 - p.p50)} | ${num(t.rt, 2)} / ${num(p.rt, 2)} | ${num(t.cmds, 2)} / ${num(p.cmds, 2)} |`);
      }
    }
  }
  const ds = Object.keys(byDelay).map(Number).sort((a, b) => a - b);
  if (ds.length >= 2) {
    const lines = [];
    for (const load of Object.keys(byDelay[ds[0]])) {
      for (const r of byDelay[ds[0]][load]) {
        const t = pathRoundTrips(byDelay, load, r.order, "tollgate");
        const p = pathRoundTrips(byDelay, load, r.order, "peer");
        if (t !== null) lines.push(`| ${load} | ${r.caller} | ${r.client} | ${num(t, 2)} | ${num(p, 2)} |`);
      }
    }
    out.push("", `Sequential round trips on the answer's path, estimated as (p50 at ${ds[ds.length - 1]} ms − p50 at ${ds[0]} ms) ÷ ${ds[ds.length - 1] - ds[0]} ms (background round trips do not count; at 8 connections queueing adds to it):`, "", "| load | caller | client | Tollgate | peer |", "| --- | --- | --- | ---: | ---: |", ...lines);
  }
  return out.join("\n");
}

function goals(res) {
  const S = res.scenarios;
  const med = (sc, sys, k) => S[sc]?.summary?.[sys]?.[k]?.median ?? null;
  const rows = [];
  const verdict = (ok) => (ok === null ? "not measured" : ok ? "**met**" : "**missed**");

  // Kept from the last round: round trips per gated request.
  {
    const parts = [];
    let ok = true;
    let any = false;
    for (const [sc, sys, max] of [
      ["proxied", "tollgate", 1.01],
      ["denied-first", "tollgate", 1.01],
      ["hit-redis", "tollgate-noiso", 1.01],
      ["mix", "tollgate", 1.01],
      ["denied-repeated", "tollgate", 0.01],
      ["hit-isolate", "tollgate", 0.01],
    ]) {
      const v = med(sc, sys, "redis_http_per_req");
      if (v === null) continue;
      any = true;
      if (v > max) ok = false;
      const peers = PEERS.map((p) => num(med(sc, p, "redis_http_per_req"), 2)).join(" / ");
      parts.push(`${sc}: ${num(v, 3)} (target ${max > 0.5 ? "≤ 1" : "≈ 0"}; peer SW/FW ${peers})`);
    }
    const missV = med("miss", "tollgate", "redis_http_per_req");
    if (missV !== null) parts.push(`(miss, not a goal: ${num(missV, 2)}; peer ${PEERS.map((p) => num(med("miss", p, "redis_http_per_req"), 2)).join(" / ")})`);
    rows.push(["Redis round trips (HTTP requests to redis-rest) per gated request ≤ 1; 0 for repeated denials and in-isolate hits; peer ≥ 2 (1% allowed for Tollgate's stats flush every 10 s; ≈ 0 means ≤ 0.01)", parts.join("<br>"), verdict(any ? ok : null)]);
  }
  // Kept from the last round: hit vs miss, at light load (one connection) when measured, else under load
  {
    const parts = [];
    let ok = null;
    for (const [label, missSc, hitR, hitI] of [
      ["one connection", "light-miss", "light-hit-redis", "light-hit-isolate"],
      [`${res.options.connections} connections (hit latency includes queueing in the saturated isolate)`, "miss", "hit-redis", "hit-isolate"],
    ]) {
      const miss = med(missSc, "tollgate", "p50_ms");
      const r = med(hitR, "tollgate-noiso", "p50_ms");
      const i = med(hitI, "tollgate", "p50_ms");
      if (miss === null || r === null) continue;
      if (ok === null) ok = miss / r >= 20;
      const pr = med(hitR, "peer-sliding", "p50_ms");
      const pm = med(missSc, "peer-sliding", "p50_ms");
      parts.push(`${label}: p50 miss ${num(miss, 1)} ms ÷ p50 hit from Redis ${num(r)} ms = **${(miss / r).toFixed(0)}×**${i !== null ? `; ÷ p50 hit from isolate ${num(i)} ms = **${(miss / i).toFixed(0)}×**` : ""}${pr !== null && pm !== null ? ` (peer SW: ${num(pm, 1)} ÷ ${num(pr)} = ${(pm / pr).toFixed(0)}×)` : ""}`);
    }
    rows.push(["Cache hit ≥ 20× faster than a miss against the 150 ms origin (verdict on the first line: hit from Redis)", parts.join("<br>") || "–", verdict(ok)]);
  }
  const kept = rows.splice(0, rows.length).map(([g, m, v]) => [`(kept from the last round) ${g}`, m, v]);
  rows.push(...issueGoals(res, med, verdict), ...kept);
  return ["| goal | measured (medians) | verdict |", "| --- | --- | --- |", ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");
}

function cpuTable(res) {
  const S = res.scenarios;
  const systems = ["tollgate", "tollgate-noiso", "peer-sliding", "peer-fixed", "bare", "bare-static"];
  const ids = Object.keys(S).filter((id) => !isNet(S[id]));
  const lines = [
    `| workerd CPU µs per request | ${ids.join(" | ")} |`,
    `| --- | ${ids.map(() => "---:").join(" | ")} |`,
  ];
  for (const sys of systems) {
    const cells = ids.map((id) => {
      const s = S[id].summary[sys];
      return s ? num(s.cpu_workerd_us_per_req?.median, 0) : "";
    });
    if (cells.some((c) => c)) lines.push(`| ${sys} | ${cells.join(" | ")} |`);
  }
  const out = [lines.join("\n")];
  const hi = S["hit-isolate"]?.summary;
  if (hi?.tollgate && hi["bare-static"]) {
    const t = hi.tollgate.cpu_workerd_us_per_req.median;
    const f = hi["bare-static"].cpu_workerd_us_per_req.median;
    const tw = 1e6 / hi.tollgate.rps.median;
    const fw = 1e6 / hi["bare-static"].rps.median;
    out.push(
      "",
      `Tollgate's request path on an in-isolate hit (pure CPU, no I/O): **${num(t - f, 0)} µs of workerd CPU per request over the floor** (${num(t, 0)} µs vs ${num(f, 0)} µs for a bare Worker answering a static 200). From throughput (1 ÷ req/s at ${res.options.connections} connections): ${num(tw, 0)} µs vs ${num(fw, 0)} µs per request, ${num(tw - fw, 0)} µs over the floor.`,
    );
  }
  return out.join("\n");
}

function stampedeTable(res) {
  const st = res.stampede;
  if (!st) return "";
  const lines = [
    `${st.concurrent} concurrent requests for one cold key (GET /api/config/<new name>, origin 150 ms), ${res.options.rounds} rounds.`,
    "",
    "| system | origin requests per stampede | answers (last round) | p50 ms | max ms | Redis HTTP requests | Redis commands |",
    "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
  ];
  for (const sys of st.systems) {
    const s = st.summary[sys];
    const last = st.rounds[sys][st.rounds[sys].length - 1];
    lines.push(
      `| ${sys} | ${sp(s.origin_hits_for_key, 0)} | ${Object.entries(last.statuses).map(([k, v]) => `${k}:${v}`).join(" ")}; X-Cache ${Object.entries(last.x_cache).map(([k, v]) => `${k}:${v}`).join(" ")} | ${sp(s.p50_ms, 0)} | ${sp(s.max_ms, 0)} | ${sp(s.redis_http, 0)} | ${sp(s.redis_cmds, 0)} |`,
    );
  }
  return lines.join("\n");
}

function sizeSection(res) {
  const b = res.build;
  const secs = Object.entries(b.wasm_sections ?? {}).filter(([, v]) => v.raw > 4096).sort((x, y) => y[1].raw - x[1].raw);
  const lines = [
    `Tollgate release wasm: **${(b.wasm_raw_bytes / KIB).toFixed(1)} KiB raw, ${(b.wasm_gzip_bytes / KIB).toFixed(1)} KiB gzip -9** (+ ${(b.js_raw_bytes / KIB).toFixed(1)} KiB JS glue); sha256 ${b.wasm_sha256?.slice(0, 16)}…, built ${b.wasm_mtime} (${b.status}). Peer bundle: ${(b.peer_bundle_bytes / KIB).toFixed(1)} KiB raw, ${(b.peer_bundle_gzip_bytes / KIB).toFixed(1)} KiB gzip.`,
    "",
    "| wasm section | raw KiB | gzip KiB (alone) |",
    "| --- | ---: | ---: |",
    ...secs.map(([k, v]) => `| ${k} | ${(v.raw / KIB).toFixed(1)} | ${(v.gzip / KIB).toFixed(1)} |`),
    "",
    "Start-up, spawning `workerd serve` to the first 200 (Tollgate: `GET /_tollgate/health`, which instantiates the wasm and builds the gate):",
    "",
    "| Worker | median ms (min–max) | samples |",
    "| --- | ---: | ---: |",
    ...Object.entries(res.startup).map(([k, v]) => `| ${k} | ${sp(v, 0)} | ${v.n} |`),
  ];
  return lines.join("\n");
}

function profileSection(res) {
  if (!res.profile) return "";
  const out = [
    "V8 sampling profiles of the Worker isolate under the same wrk load (through workerd's inspector; sampling every 200 µs; the profiler slows the isolate, so read shares, not speed). Self time by part of the request path, then the top functions. `(program)` is native time outside JS and wasm (workerd's HTTP handling, V8 internals).",
  ];
  for (const [sys, loads] of Object.entries(res.profile)) {
    for (const [load, p] of Object.entries(loads)) {
      out.push(
        "",
        `**${sys}, ${load}** (${big(p.rps)} req/s while profiled; busy ${p.busy_ms} ms, idle ${p.idle_ms} ms)`,
        "",
        "| part | share of busy time |",
        "| --- | ---: |",
        ...p.categories.filter((c) => c.pct >= 1).map((c) => `| ${c.name} | ${c.pct}% |`),
        "",
        `Top functions: ${p.functions.slice(0, 14).map((f) => `\`${f.name.replace(/`/g, "'")}\` ${f.pct}%`).join(", ")}.`,
      );
    }
  }
  return out.join("\n");
}

/** The faults scenario: per phase, answers by route (status, mode), Tollgate's own 5xx, time back
 * to Redis mode, and whether a quota was exceeded. */
function faultsSection(res) {
  const f = res.faults;
  const kv = (o) => Object.entries(o ?? {}).filter(([, v]) => v).map(([k, v]) => `${k}:${v}`).join(" ") || "–";
  const lines = [
    `${f.title}. ${f.policy}. Load: ${f.rate_target} req/s target from Node, at most ${f.max_in_flight} in flight (${f.requests} answers, ${f.skipped_client_backlog} skipped because ${f.max_in_flight} were in flight); each request from a new caller IP except the quota callers. Phases in order; an answer belongs to the phase its request started in. "Tollgate 5xx" are Tollgate's own (its problem types); the origin's 5xx passed through during the flap are counted apart.`,
    "",
    "| phase | s | req/s | p50 / p99 ms | modes (all routes) | open: status / Tollgate 5xx | local: status / Tollgate 5xx | closed: status / Tollgate 5xx | config: X-Cache / 5xx | quota: status |",
    "| --- | ---: | ---: | ---: | --- | --- | --- | --- | --- | --- |",
  ];
  for (const [name, p] of Object.entries(f.phases)) {
    const r = p.by_route;
    const cell = (x) => `${kv(x.status)} / ${x.tollgate_5xx}`;
    lines.push(
      `| ${name} | ${p.seconds} | ${p.rps} | ${p.p50_ms ?? "–"} / ${p.p99_ms ?? "–"} | ${kv(p.mode)} | ${cell(r.open)} | ${cell(r.local)} | ${cell(r.closed)} | ${kv(r.config.x_cache)} / ${r.config.tollgate_5xx + r.config.origin_5xx} | ${kv(r.quota.status)} |`,
    );
  }
  lines.push("", "| route (failure policy) | requests | Tollgate 5xx | of which 503 problem+json | origin 5xx passed through | no answer |", "| --- | ---: | ---: | ---: | ---: | ---: |");
  const policyOf = { open: "open", local: "local", closed: "closed", quota: "local", config: "local (cached)", unrouted: "local (default)" };
  for (const [route, x] of Object.entries(f.per_route_5xx)) {
    lines.push(`| ${route} (${policyOf[route] ?? "?"}) | ${x.requests} | ${x.tollgate_5xx} | ${x.tollgate_503_problem} | ${x.origin_5xx} | ${x.no_answer} |`);
  }
  const back = (b) => Object.entries(b).map(([r, s]) => `${r} ${s === null ? "not within 15 s" : `${s.toFixed(2)} s`}`).join(", ");
  lines.push(
    "",
    `Back to Redis mode for good (per route, from the end of the fault to the first \`X-Tollgate-Mode: redis\` answer after which every answer for 2 s was decided in Redis; "not within 15 s" = it never held): after Redis restarted — ${back(f.back_to_redis_s["redis-back"])}; after the 200 ms delay ended — ${back(f.back_to_redis_s["slow-back"])}.`,
    "",
    `Quota (100 per hour, fixed window, per caller, across every phase): ${Object.entries(f.quota).map(([ip, q]) => `${ip} allowed ${q.allowed} of ${q.requests}`).join("; ")} — **${f.quota_callers_over_limit === 0 ? "no caller was allowed more than its quota" : `${f.quota_callers_over_limit} caller(s) allowed more than the quota`}**.`,
    "",
    `Health afterwards: status ${f.health_after.status}, mode ${f.health_after.mode}, breaker ${f.health_after.breaker}. Delay proxy: ${f.proxy.round_trips} round trips, ${f.proxy.commands} commands, ${f.proxy.refused} refused, ${f.proxy.upstream_errors} upstream errors.`,
  );
  return lines.join("\n");
}

export function renderMarkdown(res) {
  const o = res.options;
  const m = res.machine;
  const v = res.versions;
  if (res.faults_only) {
    const out = [
      `# Tollgate under faults — ${res.started_at?.slice(0, 10)}`,
      "",
      `Machine: ${m.nproc} × ${m.cpu_model}, ${m.mem_total_mb} MB, Linux ${m.kernel}; load average at start ${m.loadavg_at_start?.map((x) => x.toFixed(2)).join(" ")}. workerd ${v.workerd} (raw \`workerd serve\`), ${v.redis_server?.split(" ").slice(0, 3).join(" ")}, node ${v.node}. Build: ${res.build?.status}. Total run time ${res.total_seconds ?? "?"} s.`,
    ];
    if (res.error) out.push("", `**The run failed:** \`${res.error.split("\n")[0]}\` — the numbers below are partial.`);
    if (res.faults) out.push("", "## faults", "", faultsSection(res));
    if (res.warnings?.length) out.push("", "## Warnings", "", ...res.warnings.map((w) => `- ${w}`));
    out.push("");
    return out.join("\n");
  }
  const parts = [
    `# Tollgate vs the peer — ${res.started_at?.slice(0, 10)}`,
    "",
    `Machine: ${m.nproc} × ${m.cpu_model}, ${m.mem_total_mb} MB, Linux ${m.kernel}; load average at start ${m.loadavg_at_start?.map((x) => x.toFixed(2)).join(" ")}. ` +
      `workerd ${v.workerd} (raw \`workerd serve\`, compatibility date ${v.compatibility_date}), ${v.wrk}, ${v.redis_server?.split(" ").slice(0, 3).join(" ")}, node ${v.node}, @upstash/ratelimit ${v["@upstash/ratelimit"]}, @upstash/redis ${v["@upstash/redis"]}. ` +
      `Load: \`wrk -t${o.threads} -c${o.connections}\` (one connection per thread; latency measured in bench/wrk/bench.lua, because wrk 4.1.0's own latency statistics contradict Little's law here), ${o.rounds} interleaved round(s) of ${o.seconds} s per system (peer, …, Tollgate, … in turn), after a ${o.warmupSeconds} s warm-up. ` +
      `Every figure is the median over rounds with min–max in brackets. Per-request ratios divide by answers + ${o.connections} (the requests in flight when wrk stops; the servers finish them). "other load" = CPU used by processes outside the benchmark during the run (this box is shared; above ~0.3 cores, treat speed figures as noisy). Total run time ${res.total_seconds ?? "?"} s.`,
    "",
    "Systems: **Tollgate** (release build); **peer SW / FW** = the same gate written the documented way with `@upstash/ratelimit` (sliding / fixed window: tier `limit()` then route `limit()`) and `@upstash/redis` cache-aside (`get` → origin → `set … ex`); **bare** = pass-through Worker (the floor). All on one redis-rest and one demo-origin. Tollgate's limits are sliding window in every comparison.",
  ];
  if (res.error) parts.push("", `**The run failed:** \`${res.error.split("\n")[0]}\` — the numbers below are partial.`);
  parts.push("", "## Summary", "", summaryTable(res));
  parts.push("", "## Goals", "", goals(res));
  parts.push("", "## Scenarios");
  for (const [id, sc] of Object.entries(res.scenarios)) {
    if (!isNet(sc)) parts.push("", `### ${id} — ${sc.title}`, "", sc.what, "", detailTable(sc));
  }
  const netIds = Object.keys(res.scenarios).filter((id) => isNet(res.scenarios[id]));
  if (netIds.length || res.net_keys) parts.push("", "### net-5ms, net-40ms — Redis 5 ms and 40 ms away", "", netSection(res));
  if (res.stampede) parts.push("", "### stampede — Stampede on a cold key", "", stampedeTable(res));
  if (res.faults) parts.push("", "### faults — Tollgate under faults", "", faultsSection(res));
  parts.push("", "## CPU per request", "", "workerd process CPU time (all threads, from /proc) per completed request; it includes the HTTP server and subrequest work of workerd, not only the Worker's code.", "", cpuTable(res));
  if (res.profile) parts.push("", "## Where Tollgate's CPU goes", "", profileSection(res));
  parts.push("", "## Size and start-up", "", sizeSection(res));
  if (res.warnings?.length) parts.push("", "## Warnings", "", ...res.warnings.map((w) => `- ${w}`));
  parts.push("");
  return parts.join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const res = JSON.parse(readFileSync(process.argv[2], "utf8"));
  process.stdout.write(renderMarkdown(res));
}
