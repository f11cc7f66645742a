// The delay proxy of the e2e harness on its own, in front of a small stand-in for redis-rest:
// it delays each round trip, counts round trips and the commands they carry, and refuses or
// swallows requests on demand, all changeable while it runs.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import http from "node:http";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { startDelayProxy } from "./support/delay-proxy.mjs";

let upstream;
let upstreamUrl;
let upstreamRequests = 0;
let proxy;

before(async () => {
  upstream = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      upstreamRequests += 1;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ path: req.url, body }));
    });
  });
  await new Promise((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  upstreamUrl = `http://127.0.0.1:${upstream.address().port}`;
  proxy = await startDelayProxy({ target: upstreamUrl });
});

after(async () => {
  await proxy?.close();
  await new Promise((resolve) => upstream?.close(resolve));
});

async function timed(pathname, body) {
  const started = performance.now();
  const res = await fetch(`${proxy.url}${pathname}`, { method: "POST", body });
  const json = await res.json();
  return { res, json, ms: performance.now() - started };
}

test("listens on loopback and forwards method, path and body", async () => {
  assert.match(proxy.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const { res, json } = await timed("/pipeline", '[["GET","a"]]');
  assert.equal(res.status, 200);
  assert.deepEqual(json, { path: "/pipeline", body: '[["GET","a"]]' });
});

test("delays each round trip by the delay set at run time", async () => {
  proxy.setDelay(0);
  const fast = await timed("/", '["PING"]');
  proxy.setDelay(120);
  const slow = await timed("/", '["PING"]');
  proxy.setDelay(0);
  assert.ok(slow.ms >= 115, `a 120 ms round trip took ${slow.ms.toFixed(1)} ms`);
  assert.ok(fast.ms < 100, `an undelayed round trip took ${fast.ms.toFixed(1)} ms`);
});

test("counts round trips and the commands each carried", async () => {
  proxy.resetStats();
  await timed("/", '["GET","k"]');
  await timed("/pipeline", '[["GET","a"],["GET","b"],["EVALSHA","x","0"]]');
  await timed("/multi-exec", '[["SET","a","1"],["EXPIRE","a","5"]]');
  const s = proxy.stats();
  assert.equal(s.round_trips, 3);
  assert.equal(s.commands, 6);
  assert.deepEqual(s.by_endpoint, { single: 1, pipeline: 1, multi_exec: 1, path: 0 });
});

test("refuse resets connections and blackhole leaves requests unanswered, until passed again", async () => {
  const before = upstreamRequests;
  proxy.setMode("refuse");
  await assert.rejects(fetch(`${proxy.url}/`, { method: "POST", body: '["PING"]' }));
  proxy.setMode("blackhole");
  await assert.rejects(
    fetch(`${proxy.url}/`, { method: "POST", body: '["PING"]', signal: AbortSignal.timeout(300) }),
    /timeout|aborted/i,
  );
  proxy.setMode("pass");
  const { res } = await timed("/", '["PING"]');
  assert.equal(res.status, 200);
  assert.equal(upstreamRequests, before + 1, "nothing reached the upstream while Redis was 'down'");
  const s = proxy.stats();
  assert.ok(s.refused >= 1 && s.blackholed >= 1, JSON.stringify(s));
  assert.throws(() => proxy.setMode("sometimes"), /mode must be/);
  assert.throws(() => proxy.setDelay(-1), /delay_ms/);
});

test("as a program it prints its URL and takes settings over /_proxy/", async () => {
  const file = path.join(path.dirname(fileURLToPath(import.meta.url)), "support/delay-proxy.mjs");
  const child = spawn(process.execPath, [file, "--target", upstreamUrl, "--delay-ms", "5"], { stdio: ["ignore", "pipe", "pipe"] });
  try {
    const url = await new Promise((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (c) => {
        out += c;
        const m = out.match(/listening on (http:\/\/\S+)/);
        if (m) resolve(m[1]);
      });
      child.once("exit", (code) => reject(new Error(`exited ${code}`)));
    });
    const set = await fetch(`${url}/_proxy/settings`, { method: "POST", body: JSON.stringify({ delay_ms: 30, mode: "pass" }) });
    assert.deepEqual(await set.json(), { delay_ms: 30, mode: "pass" });
    const r = await fetch(`${url}/pipeline`, { method: "POST", body: '[["PING"],["PING"]]' });
    await r.arrayBuffer();
    const stats = await (await fetch(`${url}/_proxy/stats`)).json();
    assert.equal(stats.round_trips, 1, "control requests are not counted");
    assert.equal(stats.commands, 2);
    const bad = await fetch(`${url}/_proxy/settings`, { method: "POST", body: '{"mode":"x"}' });
    assert.equal(bad.status, 400);
    await bad.arrayBuffer();
  } finally {
    child.kill("SIGTERM");
  }
});
