// The Tollgate dashboard: the cached config endpoint as a frontend sees it, a burst against a
// rate-limited path, and the admin API's stats and health. Plain ES module, no dependencies.
//
// Everything the page learns from the network is written with textContent (never innerHTML), so
// config values and problem details cannot inject markup.

import { drawBurst, drawRatio, drawTraffic } from "./charts.js";

const $ = (id) => document.getElementById(id);

const TOKEN_KEY = "tollgate.adminToken";
const POLL_MS = 2_000;
const PUBLIC_HEALTH_MS = 30_000;
const HISTORY_SAMPLES = 60; // 2 minutes of 2 s polls
const CONFIG_NAME = /^[A-Za-z0-9._~-]{1,128}$/;

// ---------------------------------------------------------------------------------------------
// Small helpers

function setStatus(el, text, state) {
  el.textContent = text;
  el.dataset.state = state;
}

function intHeader(headers, name) {
  const raw = headers.get(name);
  if (raw === null || raw.trim() === "") return null;
  const n = Number(raw);
  return Number.isFinite(n) ? n : null;
}

function formatMs(ms) {
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

function formatClock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** `X-RateLimit-Reset` (Unix seconds) → "in 42 s (12:01:05)". */
function formatReset(epochSeconds) {
  if (epochSeconds === null) return "–";
  const ms = epochSeconds * 1000;
  const inSeconds = Math.max(0, Math.ceil((ms - Date.now()) / 1000));
  return `in ${inSeconds} s (${formatClock(ms)})`;
}

function formatRate(rate) {
  return Number.isFinite(rate) ? `${(rate * 100).toFixed(rate === 1 || rate === 0 ? 0 : 1)}%` : "–";
}

function formatNumber(n) {
  return Number.isFinite(n) ? n.toLocaleString() : "–";
}

/** Splits a header list on commas outside double quotes. */
function splitList(value) {
  const parts = [];
  let current = "";
  let quoted = false;
  for (const ch of value) {
    if (ch === '"') quoted = !quoted;
    if (ch === "," && !quoted) {
      parts.push(current);
      current = "";
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts.map((p) => p.trim()).filter(Boolean);
}

/** `Server-Timing: redis;dur=2.1, origin;dur=30;desc="GET /config/app"` → entries. */
export function parseServerTiming(value) {
  if (!value) return [];
  return splitList(value).map((metric) => {
    const [name, ...params] = metric.split(";").map((s) => s.trim());
    const entry = { name, dur: null, desc: null };
    for (const param of params) {
      const eq = param.indexOf("=");
      if (eq < 0) continue;
      const key = param.slice(0, eq).trim().toLowerCase();
      let val = param.slice(eq + 1).trim();
      if (val.startsWith('"') && val.endsWith('"')) val = val.slice(1, -1);
      if (key === "dur") entry.dur = Number(val);
      if (key === "desc") entry.desc = val;
    }
    return entry;
  });
}

/** Renders Server-Timing entries as chips into `el`. */
function renderServerTiming(el, value) {
  el.replaceChildren();
  const entries = parseServerTiming(value);
  if (entries.length === 0) {
    el.textContent = "–";
    return;
  }
  for (const e of entries) {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.textContent = Number.isFinite(e.dur) ? `${e.name} ${formatMs(e.dur)}` : e.name;
    if (e.desc) chip.title = e.desc;
    el.append(chip);
  }
}

/** The body of an error response: problem+json fields when there are some, else the text. */
async function readProblem(res) {
  const text = await res.text().catch(() => "");
  try {
    const doc = JSON.parse(text);
    if (doc && typeof doc === "object") {
      return {
        title: typeof doc.title === "string" ? doc.title : res.statusText,
        detail: typeof doc.detail === "string" ? doc.detail : null,
        raw: text,
      };
    }
  } catch {
    // not JSON
  }
  return { title: res.statusText || `HTTP ${res.status}`, detail: text.slice(0, 300) || null, raw: text };
}

function problemText(status, problem) {
  return [`${status} ${problem.title || ""}`.trim(), problem.detail].filter(Boolean).join(": ");
}

/** Whether the browser answered `url` from its own HTTP cache (Resource Timing, same origin). */
function fromBrowserCache(url) {
  const entries = performance.getEntriesByName(new URL(url, location.href).href, "resource");
  const last = entries[entries.length - 1];
  return Boolean(last && last.transferSize === 0 && last.decodedBodySize > 0);
}

/** Redraws `draw` on the next frame, at most once per frame. */
function throttled(draw) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      draw();
    });
  };
}

// ---------------------------------------------------------------------------------------------
// 1. Config through the cache

const config = {
  seq: 0,
  form: $("config-form"),
  name: $("config-name"),
  status: $("config-status"),
  history: $("config-history"),
};

function setCacheBadge(value) {
  const badge = $("config-x-cache");
  badge.textContent = value || "–";
  badge.dataset.value = (value || "").toUpperCase();
}

const NOT_SENT = "not sent";

/** Shows a header's value, or says plainly that the response did not carry it. */
function showHeader(id, value, format = (v) => v) {
  const el = $(id);
  el.classList.toggle("absent", value === null);
  el.textContent = value === null ? NOT_SENT : format(value);
}

function renderConfigHeaders(headers) {
  setCacheBadge(headers.get("x-cache") ?? NOT_SENT);
  showHeader("config-age", headers.get("age"), (v) => `${v} s`);
  showHeader("config-limit", headers.get("x-ratelimit-limit"));
  showHeader("config-remaining", headers.get("x-ratelimit-remaining"));
  showHeader("config-reset", headers.get("x-ratelimit-reset"), () => formatReset(intHeader(headers, "x-ratelimit-reset")));
  showHeader("config-ratelimit", headers.get("ratelimit"));
  showHeader("config-ratelimit-policy", headers.get("ratelimit-policy"));
  const timing = $("config-server-timing");
  timing.classList.toggle("absent", !headers.has("server-timing"));
  if (headers.has("server-timing")) renderServerTiming(timing, headers.get("server-timing"));
  else timing.textContent = NOT_SENT;
}

function addHistory(text, cacheValue) {
  const li = document.createElement("li");
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.dataset.value = (cacheValue || "").toUpperCase();
  badge.textContent = cacheValue || "—";
  li.append(badge, ` ${text}`);
  config.history.prepend(li);
  while (config.history.children.length > 6) config.history.lastElementChild.remove();
}

/**
 * Loads the config. The first load is a plain `fetch(path)`, exactly what a frontend does; the
 * reload button skips the browser's HTTP cache so the request reaches the edge every time.
 */
async function loadConfig({ reload }) {
  const name = config.name.value.trim();
  if (!CONFIG_NAME.test(name)) {
    config.name.setAttribute("aria-invalid", "true");
    setStatus(config.status, "Enter a config name: letters, digits, . _ ~ - (up to 128).", "error");
    config.name.focus();
    return;
  }
  config.name.removeAttribute("aria-invalid");
  $("config-name-echo").textContent = name;
  const path = `/api/config/${encodeURIComponent(name)}`;
  const seq = ++config.seq;
  setStatus(config.status, `Loading ${path}…`, "loading");
  const started = performance.now();
  let res;
  try {
    res = reload ? await fetch(path, { cache: "no-store" }) : await fetch(path);
  } catch (err) {
    if (seq !== config.seq) return;
    setStatus(config.status, `Network error loading ${path}: ${err.message}`, "error");
    return;
  }
  const text = await res.text().catch(() => "");
  const elapsed = performance.now() - started;
  if (seq !== config.seq) return; // a newer load started meanwhile

  renderConfigHeaders(res.headers);
  const cacheValue = res.headers.get("x-cache");
  const browserCached = fromBrowserCache(path);
  const via = browserCached ? " (from the browser's HTTP cache)" : "";

  let doc = null;
  try {
    doc = JSON.parse(text);
  } catch {
    // shown as text below
  }

  if (res.ok) {
    const value = doc && typeof doc === "object" && "value" in doc ? doc.value : (doc ?? text);
    $("config-value").textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
    const meta = [];
    if (doc?.version !== undefined) meta.push(`version ${doc.version}`);
    if (Number.isFinite(doc?.served_at_ms)) meta.push(`origin served it at ${formatClock(doc.served_at_ms)}`);
    $("config-meta").textContent = meta.join(" · ");
    setStatus(
      config.status,
      `${res.status} ${path} in ${formatMs(elapsed)}: X-Cache ${cacheValue ?? "(none)"}${via}.`,
      "ok",
    );
  } else {
    const problem =
      doc && typeof doc === "object"
        ? { title: doc.title ?? res.statusText, detail: doc.detail ?? null }
        : { title: res.statusText, detail: text.slice(0, 300) || null };
    $("config-value").textContent = doc ? JSON.stringify(doc, null, 2) : text || "(empty body)";
    $("config-meta").textContent = "";
    const retry = res.headers.get("retry-after");
    setStatus(
      config.status,
      `${problemText(res.status, problem)}${retry ? ` (Retry-After ${retry} s)` : ""}`,
      res.status === 429 ? "denied" : "error",
    );
  }
  addHistory(`${res.status} · ${name} · ${formatMs(elapsed)}${browserCached ? " · browser cache" : ""}`, cacheValue);
}

config.form.addEventListener("submit", (event) => {
  event.preventDefault();
  loadConfig({ reload: true });
});

// ---------------------------------------------------------------------------------------------
// 2. Burst

const burstEls = {
  form: $("burst-form"),
  path: $("burst-path"),
  n: $("burst-n"),
  concurrency: $("burst-concurrency"),
  run: $("burst-run"),
  stop: $("burst-stop"),
  status: $("burst-status"),
  chart: $("burst-chart"),
  problem: $("burst-problem"),
};

let burst = {
  total: Number(burstEls.n.value) || 40,
  points: [],
  ok: 0,
  denied: 0,
  error: 0,
  limit: null,
  retryAfter: null,
  reset: null,
  lastError: null,
  controller: null,
};

const redrawBurst = throttled(() => {
  drawBurst(burstEls.chart, burst.points, { total: burst.total, limit: burst.limit });
  $("burst-count-ok").textContent = String(burst.ok);
  $("burst-count-429").textContent = String(burst.denied);
  $("burst-count-error").textContent = String(burst.error);
  $("burst-retry-after").textContent = burst.retryAfter === null ? "–" : `${burst.retryAfter} s`;
});

/** Resolves the burst path against this origin; null when it is not a path of this site. */
function burstUrl(raw) {
  const value = raw.trim();
  if (!value.startsWith("/") || value.startsWith("//")) return null;
  try {
    const url = new URL(value, location.origin);
    return url.origin === location.origin ? url : null;
  } catch {
    return null;
  }
}

function intInRange(input, min, max) {
  const n = Number(input.value);
  if (!Number.isInteger(n) || n < min || n > max) {
    input.setAttribute("aria-invalid", "true");
    return null;
  }
  input.removeAttribute("aria-invalid");
  return n;
}

async function runBurst() {
  const url = burstUrl(burstEls.path.value);
  if (!url) {
    burstEls.path.setAttribute("aria-invalid", "true");
    setStatus(burstEls.status, "The path must start with / and stay on this site.", "error");
    burstEls.path.focus();
    return;
  }
  burstEls.path.removeAttribute("aria-invalid");
  const total = intInRange(burstEls.n, 1, 1000);
  const concurrency = intInRange(burstEls.concurrency, 1, 32);
  if (total === null || concurrency === null) {
    setStatus(burstEls.status, "Requests must be 1–1000 and concurrency 1–32.", "error");
    (total === null ? burstEls.n : burstEls.concurrency).focus();
    return;
  }

  const controller = new AbortController();
  burst = {
    total,
    points: [],
    ok: 0,
    denied: 0,
    error: 0,
    limit: null,
    retryAfter: null,
    reset: null,
    lastError: null,
    controller,
  };
  burstEls.problem.hidden = true;
  burstEls.run.disabled = true;
  burstEls.stop.disabled = false;
  const target = url.pathname + url.search;
  setStatus(burstEls.status, `Running ${total} requests to ${target}, ${concurrency} at a time…`, "running");
  redrawBurst();

  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < total && !controller.signal.aborted) {
      next += 1;
      let point;
      try {
        const res = await fetch(url, { cache: "no-store", signal: controller.signal });
        const limit = intHeader(res.headers, "x-ratelimit-limit");
        if (limit !== null) burst.limit = Math.max(burst.limit ?? 0, limit);
        const reset = intHeader(res.headers, "x-ratelimit-reset");
        if (reset !== null) burst.reset = reset;
        const remaining = intHeader(res.headers, "x-ratelimit-remaining");
        if (res.status === 429) {
          burst.denied += 1;
          const retryAfter = intHeader(res.headers, "retry-after");
          if (retryAfter !== null) burst.retryAfter = retryAfter;
          const problem = await readProblem(res);
          burstEls.problem.textContent = `Last 429: ${problemText(429, problem)}`;
          burstEls.problem.hidden = false;
          point = { kind: "denied", remaining: 0 };
        } else if (res.ok) {
          burst.ok += 1;
          await res.arrayBuffer();
          point = { kind: "ok", remaining };
        } else {
          burst.error += 1;
          burst.lastError = problemText(res.status, await readProblem(res));
          point = { kind: "error", remaining };
        }
      } catch (err) {
        if (controller.signal.aborted) break;
        burst.error += 1;
        burst.lastError = `network error: ${err.message}`;
        point = { kind: "error", remaining: null };
      }
      burst.points.push(point);
      redrawBurst();
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));

  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const stopped = controller.signal.aborted;
  const summary =
    `${stopped ? "Stopped" : "Done"}: ${burst.points.length} of ${total} requests in ${seconds} s. ` +
    `${burst.ok} OK, ${burst.denied} × 429, ${burst.error} errors.` +
    (burst.limit !== null ? ` Limit ${burst.limit}.` : "") +
    (burst.reset !== null ? ` Quota resets ${formatReset(burst.reset)}.` : "") +
    (burst.lastError ? ` Last error: ${burst.lastError}.` : "");
  setStatus(burstEls.status, summary, stopped ? "stopped" : "done");
  burstEls.chart.setAttribute(
    "aria-label",
    `Remaining quota per request: ${burst.ok} allowed, ${burst.denied} denied with 429, ${burst.error} errors` +
      (burst.limit !== null ? `, limit ${burst.limit}` : ""),
  );
  burstEls.run.disabled = false;
  burstEls.stop.disabled = true;
  burst.controller = null;
  redrawBurst();
}

burstEls.form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!burst.controller) runBurst();
});
burstEls.stop.addEventListener("click", () => burst.controller?.abort());

// ---------------------------------------------------------------------------------------------
// 3. Admin: stats and health

const admin = {
  form: $("admin-form"),
  token: $("admin-token"),
  forget: $("admin-forget"),
  error: $("admin-error"),
  status: $("admin-status"),
  panels: $("admin-panels"),
  timer: null,
  generation: 0, // bumps on connect/forget so late answers of an old session are dropped
  connected: false,
  previous: null, // last totals, for per-interval deltas
  hitRates: [],
  traffic: [],
};

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function storeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lives in this page only
  }
}

let memoryToken = null;
const currentToken = () => storedToken() ?? memoryToken;

function showAdminError(text) {
  admin.error.textContent = text;
  admin.error.hidden = false;
}

function clearAdminError() {
  admin.error.hidden = true;
  admin.error.textContent = "";
  admin.token.removeAttribute("aria-invalid");
}

function stopPolling() {
  clearTimeout(admin.timer);
  admin.timer = null;
}

function disconnect(message, state = "idle") {
  stopPolling();
  stopEvents();
  admin.generation += 1;
  admin.connected = false;
  admin.panels.hidden = true;
  setStatus(admin.status, message, state);
}

function connect(token) {
  memoryToken = token;
  storeToken(token);
  clearAdminError();
  stopPolling();
  stopEvents();
  admin.generation += 1;
  admin.previous = null;
  admin.hitRates = [];
  admin.traffic = [];
  setStatus(admin.status, "Connecting…", "loading");
  poll(admin.generation);
}

async function adminFetch(path, token) {
  return fetch(path, { headers: { authorization: `Bearer ${token}` }, cache: "no-store" });
}

async function poll(generation) {
  const token = currentToken();
  if (!token || generation !== admin.generation) return;
  let stats;
  let health;
  try {
    [stats, health] = await Promise.all([
      adminFetch("/_tollgate/stats", token),
      adminFetch("/_tollgate/health", token),
    ]);
  } catch (err) {
    if (generation !== admin.generation) return;
    setStatus(admin.status, `Cannot reach the Worker (${err.message}); retrying every ${POLL_MS / 1000} s.`, "error");
    schedule(generation);
    return;
  }
  if (generation !== admin.generation) return;

  const refused = [stats, health].find((r) => r.status === 401 || r.status === 403);
  if (refused) {
    const problem = await readProblem(refused);
    await Promise.all([stats, health].filter((r) => r !== refused).map((r) => r.arrayBuffer().catch(() => {})));
    memoryToken = null;
    storeToken(null);
    admin.token.setAttribute("aria-invalid", "true");
    showAdminError(
      `${refused.status} ${refused.status === 401 ? "Unauthorized" : "Forbidden"}: the admin token was refused. ` +
        `Check TOLLGATE_ADMIN_TOKEN.${problem.detail ? ` (${problem.detail})` : ""}`,
    );
    disconnect("Not connected: token refused.", "error");
    admin.token.focus();
    admin.token.select();
    return;
  }
  if (stats.status === 404) {
    await Promise.all([stats.arrayBuffer(), health.arrayBuffer()]).catch(() => {});
    showAdminError("404: the admin API is disabled on this Worker (TOLLGATE_ADMIN_TOKEN is not set).");
    disconnect("Not connected: admin API disabled.", "error");
    return;
  }

  let failed = null;
  if (stats.ok) {
    renderStats(await stats.json());
  } else {
    failed = problemText(stats.status, await readProblem(stats));
  }
  if (health.ok || health.status === 503) {
    const doc = await health.json().catch(() => null);
    if (doc) renderHealth(doc);
  } else {
    await health.arrayBuffer().catch(() => {});
  }
  if (generation !== admin.generation) return;

  clearAdminError();
  admin.connected = true;
  admin.panels.hidden = false;
  if (events.startedFor !== generation) startEvents(generation, token);
  setStatus(
    admin.status,
    failed ? `Stats failed: ${failed}; retrying.` : `Connected; updated ${formatClock(Date.now())}, every ${POLL_MS / 1000} s.`,
    failed ? "error" : "ok",
  );
  schedule(generation);
}

function schedule(generation) {
  stopPolling();
  if (document.hidden) return; // resumed by visibilitychange
  admin.timer = setTimeout(() => poll(generation), POLL_MS);
}

function renderHealth(doc) {
  const status = String(doc.status ?? "–");
  const statusEl = $("health-status");
  statusEl.textContent = status;
  statusEl.dataset.value = status;
  $("public-health").textContent = status;
  $("public-health").dataset.value = status;
  $("health-mode").textContent = doc.mode ?? "–";
  $("health-mode").dataset.value = doc.mode ?? "";
  const redis = doc.redis ?? {};
  $("health-latency").textContent = Number.isFinite(redis.latency_ms) ? formatMs(redis.latency_ms) : "–";
  $("health-breaker").textContent = redis.breaker ?? "–";
  $("health-breaker").dataset.value = redis.breaker ?? "";
  const redisParts = [];
  if (redis.configured !== undefined) redisParts.push(redis.configured ? "configured" : "not configured");
  if (redis.reachable !== undefined) redisParts.push(redis.reachable ? "reachable" : "unreachable");
  if (redis.reason) redisParts.push(String(redis.reason));
  $("health-redis").textContent = redisParts.join(", ") || "–";
  const policy = doc.policy;
  $("health-policy").textContent = policy
    ? [
        policy.version && `version ${policy.version}`,
        Array.isArray(policy.tiers) && `tiers ${policy.tiers.join(", ")}`,
        Array.isArray(policy.routes) && `routes ${policy.routes.join(", ")}`,
      ]
        .filter(Boolean)
        .join(" · ")
    : "–";
  $("health-build").textContent = doc.build ? `${doc.build.name ?? ""} ${doc.build.version ?? ""}`.trim() : "–";
}

/** Hit rate from counters, as the Worker computes it: (hit + stale) / lookups; null without any. */
function hitRate(c) {
  if (Number.isFinite(c?.hit_rate)) return c.hit_rate;
  const lookups = cacheLookups(c);
  return lookups > 0 ? ((c.hit ?? 0) + (c.stale ?? 0)) / lookups : null;
}

function cacheLookups(c) {
  return (c?.hit ?? 0) + (c?.miss ?? 0) + (c?.stale ?? 0) + (c?.bypass ?? 0);
}

const SVG = "http://www.w3.org/2000/svg";

function svgBar(segments, label) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 100 10");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "bar");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const bg = document.createElementNS(SVG, "rect");
  bg.setAttribute("class", "bar-bg");
  bg.setAttribute("width", "100");
  bg.setAttribute("height", "10");
  svg.append(bg);
  let x = 0;
  for (const { width, cls } of segments) {
    if (!(width > 0)) continue;
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("class", cls);
    rect.setAttribute("x", String(x));
    rect.setAttribute("width", String(width));
    rect.setAttribute("height", "10");
    svg.append(rect);
    x += width;
  }
  return svg;
}

function cell(row, label, content, className) {
  const td = document.createElement("td");
  td.dataset.label = label;
  if (className) td.className = className;
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  row.append(td);
  return td;
}

function renderStats(doc) {
  const totals = doc.totals ?? {};
  // Before the first flush the Worker reports since_ms = now_ms: nothing to say then.
  const since = Number.isFinite(doc.since_ms) && !(doc.since_ms >= doc.now_ms) ? doc.since_ms : null;
  $("stats-since").textContent = since === null ? "" : `since ${new Date(since).toLocaleString()}`;
  $("stats-requests").textContent = formatNumber(totals.requests);
  $("stats-allowed").textContent = formatNumber(totals.allowed);
  $("stats-denied").textContent = formatNumber(totals.denied);
  const rate = hitRate(totals);
  $("stats-hit-rate").textContent = formatRate(rate);
  $("stats-redis-rpr").textContent = Number.isFinite(doc.redis?.requests_per_request)
    ? doc.redis.requests_per_request.toFixed(2)
    : "–";

  // Time series: cumulative hit rate, and allowed/denied since the previous poll.
  // Counters only grow; if one shrank they were reset, and everything counted is new.
  const prev = admin.previous;
  if (prev) {
    const keys = ["allowed", "denied"];
    const reset = keys.some((k) => (totals[k] ?? 0) < (prev[k] ?? 0));
    const delta = (k) => (totals[k] ?? 0) - (reset ? 0 : (prev[k] ?? 0));
    admin.traffic.push({ allowed: delta("allowed"), denied: delta("denied") });
  }
  admin.hitRates.push(cacheLookups(totals) > 0 ? rate : null);
  admin.previous = { allowed: totals.allowed ?? 0, denied: totals.denied ?? 0 };
  admin.hitRates = admin.hitRates.slice(-HISTORY_SAMPLES);
  admin.traffic = admin.traffic.slice(-HISTORY_SAMPLES);
  drawStatsCharts();
  $("stats-hit-chart").setAttribute("aria-label", `Cache hit rate over time; now ${formatRate(rate)}`);
  const last = admin.traffic[admin.traffic.length - 1];
  $("stats-traffic-chart").setAttribute(
    "aria-label",
    last
      ? `Allowed and denied requests per poll; last interval ${last.allowed} allowed, ${last.denied} denied`
      : "Allowed and denied requests per poll: waiting for the first interval",
  );

  // The table: one row per route and tier.
  const rows = (Array.isArray(doc.routes) ? doc.routes : [])
    .slice()
    .sort((a, b) => String(a.route).localeCompare(String(b.route)) || String(a.tier).localeCompare(String(b.tier)));
  const maxTraffic = Math.max(1, ...rows.map((r) => (r.allowed ?? 0) + (r.denied ?? 0)));
  const body = $("stats-table").tBodies[0];
  const fresh = document.createDocumentFragment();
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.route = String(r.route);
    tr.dataset.tier = String(r.tier);
    const th = document.createElement("th");
    th.scope = "row";
    th.dataset.label = "Route";
    th.textContent = r.route === "-" ? "– (no route)" : String(r.route);
    tr.append(th);
    const allowed = r.allowed ?? 0;
    const denied = r.denied ?? 0;
    cell(tr, "Tier", String(r.tier ?? "–"));
    cell(tr, "Allowed", formatNumber(allowed), "num");
    cell(tr, "Denied", formatNumber(denied), denied > 0 ? "num denied" : "num");
    cell(
      tr,
      "Allowed / denied",
      svgBar(
        [
          { width: (100 * allowed) / maxTraffic, cls: "bar-ok" },
          { width: (100 * denied) / maxTraffic, cls: "bar-denied" },
        ],
        `${allowed} allowed, ${denied} denied`,
      ),
      "bar-col",
    );
    cell(tr, "Hit", formatNumber(r.hit ?? 0), "num");
    cell(tr, "Miss", formatNumber(r.miss ?? 0), "num");
    cell(tr, "Stale", formatNumber(r.stale ?? 0), "num");
    cell(tr, "Bypass", formatNumber(r.bypass ?? 0), "num");
    const rowRate = cacheLookups(r) > 0 ? hitRate(r) : null;
    const rateCell = document.createElement("span");
    rateCell.className = "rate";
    if (rowRate === null) {
      rateCell.textContent = "not cached";
      rateCell.classList.add("muted");
    } else {
      rateCell.append(
        svgBar([{ width: 100 * rowRate, cls: "bar-accent" }], `hit rate ${formatRate(rowRate)}`),
        document.createTextNode(formatRate(rowRate)),
      );
    }
    cell(tr, "Hit rate", rateCell, "bar-col");
    const shadow = r.shadow_denied ?? 0;
    cell(tr, "Shadow denied", formatNumber(shadow), shadow > 0 ? "num denied" : "num");
    cell(tr, "Near limit", formatNumber(r.warned ?? 0), "num");
    fresh.append(tr);
  }
  body.replaceChildren(fresh);
  $("stats-empty").hidden = rows.length > 0;
}

function drawStatsCharts() {
  drawRatio($("stats-hit-chart"), admin.hitRates, { capacity: HISTORY_SAMPLES });
  drawTraffic($("stats-traffic-chart"), admin.traffic, { capacity: HISTORY_SAMPLES });
}

admin.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const typed = admin.token.value.trim();
  const token = typed || currentToken();
  if (!token) {
    admin.token.setAttribute("aria-invalid", "true");
    showAdminError("Enter the admin token first.");
    admin.token.focus();
    return;
  }
  admin.token.value = "";
  connect(token);
});

admin.forget.addEventListener("click", () => {
  memoryToken = null;
  storeToken(null);
  admin.token.value = "";
  clearAdminError();
  disconnect("Not connected; the token was removed from this tab.");
});

// ---------------------------------------------------------------------------------------------
// Public health (no token needed): status only.

let publicHealthTimer = null;
async function refreshPublicHealth() {
  clearTimeout(publicHealthTimer);
  if (!admin.connected) {
    try {
      const res = await fetch("/_tollgate/health", { cache: "no-store" });
      const doc = await res.json().catch(() => null);
      const status = doc?.status ?? `HTTP ${res.status}`;
      $("public-health").textContent = status;
      $("public-health").dataset.value = status;
    } catch {
      $("public-health").textContent = "unreachable";
      $("public-health").dataset.value = "unreachable";
    }
  }
  if (!document.hidden) publicHealthTimer = setTimeout(refreshPublicHealth, PUBLIC_HEALTH_MS);
}

// ---------------------------------------------------------------------------------------------
// 4. Admin: live events (GET /_tollgate/events). EventSource cannot send the admin token, so the
// stream is read with fetch and a stream reader; the Redis token never reaches the page.

const EVENTS_KEPT = 50;
const EVENTS_RETRY_MS = 5000;
// An event's own time, Unix ms: invalidations' at_ms, quota warnings' time.
const TIME_FIELDS = ["at_ms", "time"];
const events = { controller: null, retry: null, startedFor: null };

function stopEvents() {
  clearTimeout(events.retry);
  events.retry = null;
  events.controller?.abort();
  events.controller = null;
}

function eventSummary(kind, data) {
  if (data === null || typeof data !== "object") return JSON.stringify(data);
  if (kind === "invalidation") {
    const generation = data.generation === undefined ? "" : `, generation ${data.generation}`;
    return `${data.kind ?? "?"} ${data.target ?? ""}: deleted ${data.deleted ?? "?"}${generation}`;
  }
  const named = data.subject ?? data.subject_hash;
  const subject = typeof named === "string" && named.length > 12 ? `${named.slice(0, 12)}…` : named;
  const rest = Object.entries(data)
    .filter(([k]) => !TIME_FIELDS.includes(k) && k !== "subject" && (data.subject !== undefined || k !== "subject_hash"))
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
  return [subject, ...rest].filter((part) => part !== undefined).join(" ");
}

function showEvent(kind, data) {
  const item = document.createElement("li");
  item.dataset.kind = kind;
  const time = document.createElement("time");
  const at = TIME_FIELDS.map((k) => data?.[k]).find((v) => typeof v === "number") ?? Date.now();
  time.dateTime = new Date(at).toISOString();
  time.textContent = formatClock(at);
  const label = document.createElement("span");
  label.className = "event-kind";
  label.textContent = kind;
  const text = document.createElement("span");
  text.textContent = eventSummary(kind, data);
  item.append(time, " ", label, " ", text);
  const list = $("events-list");
  list.prepend(item);
  while (list.children.length > EVENTS_KEPT) list.lastElementChild.remove();
  $("events-empty").hidden = true;
}

/** Parses one server-sent event block into [name, data]. */
function parseEventBlock(block) {
  let name = "message";
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (data.length === 0) return null;
  const text = data.join("\n");
  try {
    return [name, JSON.parse(text)];
  } catch {
    return [name, text];
  }
}

async function startEvents(generation, token) {
  stopEvents();
  events.startedFor = generation;
  const controller = new AbortController();
  events.controller = controller;
  const status = $("events-status");
  const retry = (message) => {
    if (generation !== admin.generation || events.controller !== controller) return;
    events.controller = null;
    status.textContent = `${message}; retrying in ${EVENTS_RETRY_MS / 1000} s`;
    events.retry = setTimeout(() => startEvents(generation, token), EVENTS_RETRY_MS);
  };
  status.textContent = "connecting…";
  let res;
  try {
    res = await fetch("/_tollgate/events", {
      headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
      cache: "no-store",
      signal: controller.signal,
    });
  } catch (err) {
    if (!controller.signal.aborted) retry(`cannot reach the Worker (${err.message})`);
    return;
  }
  if (!res.ok) {
    const problem = await readProblem(res);
    if (res.status === 503 && /redis-required/.test(problem.raw ?? "")) {
      status.textContent = "not available: Tollgate runs in memory mode";
      events.controller = null;
      return;
    }
    retry(problemText(res.status, problem));
    return;
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
        const event = parseEventBlock(block);
        if (!event) continue;
        const [name, data] = event;
        if (name === "ready") {
          status.textContent = `listening: ${(data?.channels ?? []).join(", ")}`;
          status.dataset.state = "ok";
        } else {
          showEvent(name, data);
        }
      }
    }
  } catch (err) {
    if (controller.signal.aborted) return;
    retry(`stream failed (${err.message})`);
    return;
  }
  retry("the stream ended");
}

// ---------------------------------------------------------------------------------------------
// Page life cycle

document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    stopPolling();
    clearTimeout(publicHealthTimer);
  } else {
    refreshPublicHealth();
    if (admin.connected) poll(admin.generation);
  }
});

// Charts follow their box size (phone rotation, window resize) and the colour scheme.
const redrawAll = throttled(() => {
  redrawBurst();
  if (!admin.panels.hidden) drawStatsCharts();
});
if ("ResizeObserver" in window) {
  const observer = new ResizeObserver(redrawAll);
  for (const id of ["burst-chart", "stats-hit-chart", "stats-traffic-chart"]) observer.observe($(id));
} else {
  window.addEventListener("resize", redrawAll);
}
window.matchMedia?.("(prefers-color-scheme: dark)").addEventListener?.("change", redrawAll);

redrawBurst();
loadConfig({ reload: false });
refreshPublicHealth();
if (currentToken()) {
  setStatus(admin.status, "Reconnecting with the token saved in this tab…", "loading");
  connect(currentToken());
}
