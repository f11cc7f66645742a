// The dashboard (www/_tollgate/) in headless Debian Chromium against the real local stack:
// redis-server → redis-rest → the built Worker in Miniflare (serving www/ as static assets) →
// the demo origin. Drives the page the way a developer would and leaves screenshots in
// tests/browser/screenshots/ for humans to look at.
//
//   node --test tests/browser/
//
// Needs /usr/bin/chromium (Debian package `chromium`; ./scripts/test installs it) or CHROMIUM_BIN,
// and the Worker built (./scripts/build-worker). playwright-core only drives the browser; it never
// downloads one.

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { clearOfWindowEdge, startStack } from "../e2e/support/stack.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SCREENSHOTS = path.join(HERE, "screenshots");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-quic",
  "--disable-sync",
];

const BURST_PATH = "/api/search?q=demo"; // the page's default
const BURST_REQUESTS = 40; // the page's default
const BURST_LIMIT = 5;
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 360, height: 780 };

// A tiny limit on the burst path so the burst bites at once; a generous tier limit so the only
// limit in play is the route's. Routes replace the defaults, so the cached config route is here too.
// The Redis budget is raised from its 50 ms default: the Worker's first Redis calls (cold isolate,
// scripts not yet loaded) can take longer on a busy machine, and a timeout would turn the first
// config load into a BYPASS under the local failure policy. Timing is not what this test checks.
const POLICY = {
  redis: { timeout: "2s" },
  tiers: {
    ANON: { limits: [{ limit: 10_000, window: "1h" }] },
    BASIC: { limits: [{ limit: 10_000, window: "1h" }] },
    PRO: { limits: [{ limit: 10_000, window: "1h" }] },
  },
  routes: [
    { name: "search", path: "/api/search*", limits: [{ limit: BURST_LIMIT, window: "1m" }] },
    {
      name: "config",
      path: "/api/config/{name}",
      methods: ["GET"],
      upstream: "/config/{name}",
      cache: { class: "STATIC_CONFIG", key: "path", scope: "global", tags: ["config"] },
    },
  ],
};

let stack;
let browser;
let page;
/** Console errors and uncaught exceptions of the page, except the expected ones (see below). */
const pageProblems = [];
/** Chromium's own network log lines for the 429s and 401s the test provokes on purpose. */
const expectedNetworkErrors = [];

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} not found: the browser tests need Debian's Chromium. Install it with ` +
        "`sudo apt-get install -y chromium` (./scripts/test does this) or set CHROMIUM_BIN.",
    );
  }
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch (err) {
    throw new Error(`playwright-core is not installed (npm ci): ${err.message}`);
  }
  mkdirSync(SCREENSHOTS, { recursive: true });

  stack = await startStack({ policy: POLICY });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: DESKTOP });
  page = await context.newPage();
  page.setDefaultTimeout(15_000);

  page.on("pageerror", (err) => pageProblems.push(`uncaught: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    const text = msg.text();
    const where = msg.location()?.url ?? "";
    // Chromium logs every 4xx answer to fetch() as "Failed to load resource"; a page cannot
    // prevent that. The 429s of the burst and the 401 of the wrong token are the point of the
    // test; any other console error fails it.
    const network = /Failed to load resource: the server responded with a status of (\d{3})/.exec(text);
    if (
      network &&
      ((network[1] === "429" && where.includes("/api/search")) ||
        (network[1] === "401" && where.includes("/_tollgate/")))
    ) {
      expectedNetworkErrors.push(`${network[1]} ${where}`);
      return;
    }
    pageProblems.push(`console.error: ${text}${where ? ` (${where})` : ""}`);
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  await stack?.stop();
});

/** The integer shown in a counter element. */
async function count(selector) {
  const text = (await page.textContent(selector))?.trim() ?? "";
  assert.match(text, /^\d+$/, `${selector} should show a number, shows ${JSON.stringify(text)}`);
  return Number(text);
}

test("the dashboard is served at /_tollgate/ and loads the config through the cache (MISS, then HIT)", async () => {
  await stack.origin.reset();
  const res = await page.goto(new URL("/_tollgate/", stack.url).href);
  assert.equal(res.status(), 200);
  assert.equal(await page.title(), "Tollgate dashboard");

  // First load: a plain fetch("/api/config/app") that has to go to the origin.
  await page.locator("#config-x-cache", { hasText: "MISS" }).waitFor();
  await page.locator("#config-value", { hasText: "Tollgate demo" }).waitFor();
  const value = JSON.parse(await page.textContent("#config-value"));
  assert.equal(value.display_name, "Tollgate demo");

  // The rate-limit headers of the gated response are shown.
  assert.match((await page.textContent("#config-limit")).trim(), /^\d+$/);
  assert.match((await page.textContent("#config-remaining")).trim(), /^\d+$/);
  assert.match((await page.textContent("#config-reset")).trim(), /^in \d+ s/);
  assert.match(await page.textContent("#config-ratelimit"), /r=\d+/, "RateLimit header shown");
  assert.match(await page.textContent("#config-ratelimit-policy"), /q=\d+/, "RateLimit-Policy shown");
  assert.match(await page.textContent("#config-server-timing"), /\d+(\.\d+)? ms/, "Server-Timing shown");

  // Reload: served from the cache, and the origin saw the config only once.
  await page.click("#config-reload");
  await page.locator("#config-x-cache", { hasText: "HIT" }).waitFor();
  assert.match((await page.textContent("#config-age")).trim(), /^\d+ s$/);
  assert.equal(await page.locator("#config-history li").count(), 2);
  const hits = await stack.origin.hits();
  assert.equal(hits.by_path["/config/app"], 1, "the HIT must not reach the origin");
});

test("a burst past the route limit shows 429s as they happen", async () => {
  await clearOfWindowEdge(60_000);
  await stack.origin.reset();
  assert.equal(await page.inputValue("#burst-path"), BURST_PATH);
  assert.equal(Number(await page.inputValue("#burst-n")), BURST_REQUESTS);

  await page.click("#burst-run");
  await page.locator('#burst-status[data-state="done"]').waitFor({ timeout: 60_000 });

  const ok = await count("#burst-count-ok");
  const denied = await count("#burst-count-429");
  const errors = await count("#burst-count-error");
  assert.ok(denied > 0, `expected 429s in #burst-count-429, got ${denied}`);
  assert.ok(ok >= 1 && ok <= BURST_LIMIT, `expected 1..${BURST_LIMIT} OK, got ${ok}`);
  assert.equal(errors, 0, `unexpected errors; status: ${await page.textContent("#burst-status")}`);
  assert.equal(ok + denied, BURST_REQUESTS);
  assert.match((await page.textContent("#burst-retry-after")).trim(), /^\d+ s$/);
  assert.match(await page.getAttribute("#burst-chart", "aria-label"), new RegExp(`${denied} denied with 429`));

  // Denied requests are answered at the edge: only the allowed ones reached the origin.
  const hits = await stack.origin.hits();
  assert.equal(hits.by_path["/api/search"] ?? 0, ok);
});

test("a wrong admin token shows the 401 and is not kept", async () => {
  await page.fill("#admin-token", "not-the-admin-token");
  await page.click("#admin-connect");
  const alert = page.locator("#admin-error");
  await alert.waitFor({ state: "visible" });
  assert.match(await alert.textContent(), /401/);
  assert.equal(await page.getAttribute("#admin-token", "aria-invalid"), "true");
  assert.equal(await page.isVisible("#admin-panels"), false);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
});

test("the admin token shows live stats per route and tier, and health", async () => {
  await page.fill("#admin-token", stack.adminToken);
  await page.click("#admin-connect");
  await page.locator("#stats-table tbody tr").first().waitFor();
  assert.equal(await page.isVisible("#admin-error"), false);
  assert.ok((await page.locator("#stats-table tbody tr").count()) > 0);
  await page.locator("#health-mode", { hasText: "redis" }).waitFor();

  // The token lives in sessionStorage only: not in localStorage, not in a cookie, not in the URL.
  const storage = await page.evaluate(() => ({
    session: Object.keys(sessionStorage).map((k) => sessionStorage.getItem(k)),
    local: localStorage.length,
    cookie: document.cookie,
    href: location.href,
  }));
  assert.deepEqual(storage.session, [stack.adminToken]);
  assert.equal(storage.local, 0);
  assert.equal(storage.cookie, "");
  assert.ok(!storage.href.includes(stack.adminToken));

  // It polls: after one more cached request, a later stats answer arrives (the charts get a
  // point and an interval to show in the screenshot).
  const first = await page.textContent("#admin-status");
  await page.click("#config-reload");
  await page.locator("#config-history li").nth(2).waitFor();
  await page.waitForFunction((before) => document.getElementById("admin-status").textContent !== before, first, {
    timeout: 10_000,
  });

  await page.screenshot({ path: path.join(SCREENSHOTS, "dashboard.png"), fullPage: true });
});

test("the live events panel shows an invalidation within a second, without the Redis token", async () => {
  await page.locator("#events-status", { hasText: "listening" }).waitFor({ timeout: 10_000 });
  const asked = Date.now();
  const res = await stack.fetch("/_tollgate/invalidate", {
    method: "POST",
    headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ tag: "config" }),
  });
  assert.equal(res.status, 200);
  await res.arrayBuffer();
  const item = page.locator('#events-list li[data-kind="invalidation"]').first();
  await item.waitFor({ timeout: 1000 - (Date.now() - asked) });
  assert.match(await item.textContent(), /invalidation tag config: deleted \d+/);
  const html = await page.content();
  assert.ok(!html.includes(stack.redisRest.token), "the Redis token never reaches the page");
});

test("every form control has a label and ids are unique", async () => {
  const report = await page.evaluate(() => {
    const unlabeled = [...document.querySelectorAll("input, select, textarea")]
      .filter((el) => el.labels.length === 0 && !el.getAttribute("aria-label"))
      .map((el) => el.id || el.name);
    const unnamedButtons = [...document.querySelectorAll("button")]
      .filter((b) => !b.textContent.trim() && !b.getAttribute("aria-label"))
      .map((b) => b.id);
    const ids = [...document.querySelectorAll("[id]")].map((el) => el.id);
    const duplicates = ids.filter((id, i) => ids.indexOf(id) !== i);
    return { unlabeled, unnamedButtons, duplicates };
  });
  assert.deepEqual(report, { unlabeled: [], unnamedButtons: [], duplicates: [] });
});

test("the page fits a phone screen", async () => {
  await page.setViewportSize(PHONE);
  // Let the charts and the stats cards relayout.
  await page.waitForFunction(() => document.getElementById("burst-chart").getBoundingClientRect().width < 400);
  const widths = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    inner: window.innerWidth,
  }));
  assert.ok(widths.scroll <= widths.inner, `horizontal overflow at ${PHONE.width} px: ${JSON.stringify(widths)}`);
  await page.screenshot({ path: path.join(SCREENSHOTS, "dashboard-phone.png"), fullPage: true });
  await page.setViewportSize(DESKTOP);
});

test("no console errors beyond the 429s and 401 provoked on purpose", () => {
  assert.deepEqual(pageProblems, []);
  assert.ok(expectedNetworkErrors.some((e) => e.startsWith("429")));
});
