// A V8 CPU profile of a Worker under load, through workerd's inspector (Chrome DevTools
// protocol): Profiler.start, run wrk, Profiler.stop, then self time per function, grouped.
//
// Wasm functions keep their Rust names when the module has a `name` section (Tollgate's release
// build does), so the profile says which parts of the request path dominate.

import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";
import path from "node:path";

import { HOST, freePort, sleep } from "./proc.mjs";
import { startWorkerd } from "./stack.mjs";
import { runWrk } from "./wrk.mjs";

/** Connects to the first inspectable isolate of a workerd started with --inspector-addr. */
export async function connect(root, inspectorPort) {
  const require = createRequire(path.join(root, "package.json"));
  const WebSocket = require("ws");
  let targets = [];
  for (let i = 0; i < 50 && targets.length === 0; i += 1) {
    try {
      targets = await (await fetch(`http://${HOST}:${inspectorPort}/json/list`)).json();
    } catch {
      await sleep(50);
    }
  }
  const target = targets.find((t) => t.webSocketDebuggerUrl) ?? targets[0];
  const wsUrl = target?.webSocketDebuggerUrl ?? `ws://${HOST}:${inspectorPort}/${target?.id ?? "main"}`;
  const ws = new WebSocket(wsUrl);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  let id = 0;
  const pending = new Map();
  ws.on("message", (data) => {
    const msg = JSON.parse(data.toString());
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(JSON.stringify(msg.error)));
      else resolve(msg.result);
    }
  });
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      id += 1;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  return { send, close: () => ws.close() };
}

/** A function name without Rust hashes (`::h0123…`, `[c5930c85a12de822]`) or wasm-bindgen suffixes. */
export function cleanName(name) {
  return name
    .replace(/::h[0-9a-f]{16}$/, "")
    .replace(/\[[0-9a-f]{16}\]/g, "")
    .replace(/^(__wbg_[a-zA-Z_]+?)_[0-9a-f]{8,}$/, "$1")
    .replace(/^(__wbindgen_generic)_\d+$/, "$1");
}

const RUST_STD = /^<?(core|alloc|std|dlmalloc|hashbrown)::/;

/** The part of the request path a sampled frame belongs to. */
function category(frame) {
  const fn = cleanName(frame.functionName || "(anonymous)");
  const url = frame.url || "";
  if (["(program)", "(garbage collector)", "(root)"].includes(fn)) return fn === "(program)" ? "(program): native, outside JS/wasm (workerd, V8)" : fn;
  if (url.includes("index.js")) {
    if (/^__wbg_(append|set|new_277|headers|entries|next|done|value|get)/.test(fn)) return "JS glue: headers, env and object access";
    if (/^__wbg_(abort|new_5f28|signal|set_signal)/.test(fn)) return "JS glue: AbortController (reqwest timeouts)";
    if (/^__wbg_(fetch|new_with_str_and_init|new_with_opt|arrayBuffer|new_with_length|status)/.test(fn)) return "JS glue: fetch, Request/Response";
    if (/^__wbg_(queueMicrotask|setTimeout|clearTimeout|then|resolve|new_typed)/.test(fn)) return "JS glue: promises, timers";
    if (/^__wbg_cf/.test(fn)) return "JS glue: request.cf";
    return "JS glue: other (string/array copies, closures)";
  }
  if (url === "" && !/::|^wasm-function|^<|^[a-z_]+\[/.test(fn)) {
    if (/^(fetch|Request|Response|Headers|arrayBuffer|text|json|clone)$/.test(fn)) return "runtime: fetch, Request/Response/Headers";
    if (/^(queueMicrotask|setTimeout|clearTimeout|then|Promise|next)$/.test(fn)) return "runtime: promises, timers";
    if (/wasm-to-js|js-to-wasm/.test(fn)) return "runtime: JS↔wasm transitions";
    return `runtime: other builtins`;
  }
  if (url && !url.startsWith("wasm://")) return `JS ${path.basename(url)}${url.includes("worker.js") ? " (the Worker's own JS, bundled libraries included)" : ""}`;
  if (/^<?tollgate::/.test(fn)) {
    const m = fn.match(/^<?tollgate::([a-z_]+)(?:::([a-z_]+))?/);
    return `Rust tollgate::${m[1]}${m[2] ? `::${m[2]}` : ""}`;
  }
  if (RUST_STD.test(fn) || /^<?(core|alloc|std)[:<]/.test(fn) || /^<(str|alloc|core|&)/.test(fn)) return "Rust std: alloc, fmt, collections";
  const crate = fn.match(/^<?([a-z_][a-z0-9_]*)::/)?.[1];
  if (crate) return `Rust crate ${crate}`;
  return "Rust/wasm (other)";
}

/** Self time per function and per category from a CDP profile. */
function analyse(profile, top = 25) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const { samples, timeDeltas } = profile;
  for (let i = 0; i < samples.length; i += 1) {
    const dt = timeDeltas[i] ?? 0;
    self.set(samples[i], (self.get(samples[i]) ?? 0) + dt);
  }
  const perFn = new Map();
  const perCat = new Map();
  let total = 0;
  let idle = 0;
  for (const [nodeId, us] of self) {
    const node = byId.get(nodeId);
    const frame = node.callFrame;
    const fn = frame.functionName || "(anonymous)";
    if (fn === "(idle)") {
      idle += us;
      continue;
    }
    total += us;
    const key = `${cleanName(fn)}${frame.url && !frame.url.startsWith("wasm://") ? ` [${path.basename(frame.url)}]` : ""}`;
    perFn.set(key, (perFn.get(key) ?? 0) + us);
    const cat = category(frame);
    perCat.set(cat, (perCat.get(cat) ?? 0) + us);
  }
  const pct = (us) => Math.round((us / total) * 1000) / 10;
  return {
    busy_ms: Math.round(total / 1000),
    idle_ms: Math.round(idle / 1000),
    categories: [...perCat].sort((a, b) => b[1] - a[1]).map(([name, us]) => ({ name, pct: pct(us) })),
    functions: [...perFn].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) => ({ name: name.length > 140 ? `${name.slice(0, 137)}…` : name, pct: pct(us) })),
  };
}

/**
 * Profiles `def` (a Worker definition of main.mjs) under each of `loads` ({id, request}) for
 * `seconds` each; returns {loadId: analysis}.
 */
export async function profileWorker({ root, dir, def, loads, seconds, threads, connections }) {
  const inspectorPort = await freePort();
  const w = await startWorkerd({ root, name: "profile", dir, ...def, extraArgs: [`--inspector-addr=${HOST}:${inspectorPort}`] });
  const out = {};
  try {
    const cdp = await connect(root, inspectorPort);
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 200 });
    for (const load of loads) {
      // warm up (JIT tiers, isolate caches) without profiling
      await runWrk({ root, url: w.url, request: load.request, seconds: 1, threads, connections });
      await cdp.send("Profiler.start");
      const wrk = await runWrk({ root, url: w.url, request: load.request, seconds, threads, connections });
      const { profile } = await cdp.send("Profiler.stop");
      // The raw profile, for Chrome DevTools or a closer look (kept with --keep-tmp).
      writeFileSync(path.join(dir, `${load.id}.cpuprofile`), JSON.stringify(profile));
      out[load.id] = { requests: wrk.requests, rps: wrk.requests / (wrk.duration_us / 1e6), ...analyse(profile) };
    }
    cdp.close();
  } finally {
    await w.proc.stop();
  }
  return out;
}
