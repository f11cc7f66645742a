// Conformance of redis-rest's server-sent-event subscriptions with @upstash/redis's own
// subscribe()/psubscribe() (default settings: base64 responses, auto-pipelining), including
// the invalidations Tollgate publishes on `system:cache_invalidation`.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { Redis } from "@upstash/redis";
import { startStack } from "./support.mjs";

let stack;
let redis;

before(async () => {
  stack = await startStack();
  redis = new Redis({ url: stack.url, token: stack.token });
});

after(async () => {
  await stack?.stop();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, probe, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Redis clients in subscribe mode, asked of Redis itself (CLIENT LIST, not through redis-rest). */
function redisSubscribers() {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port: stack.redisPort }, () => socket.write("CLIENT LIST\r\n"));
    let data = "";
    socket.on("data", (chunk) => {
      data += chunk;
      const header = data.match(/^\$(\d+)\r\n/);
      if (header && Buffer.byteLength(data) >= header[0].length + Number(header[1])) {
        socket.destroy();
        const lines = data.split("\n").filter((l) => / (p?sub)=[1-9]/.test(l));
        resolve(lines.length);
      }
    });
    socket.on("error", reject);
  });
}

async function openStreams() {
  const res = await stack.rest("/_rest/levels", { method: "GET" });
  assert.equal(res.status, 200, res.text);
  return JSON.parse(res.text).subscriptions.open;
}

/** Subscribes and waits for the confirmation event. */
async function subscribed(sub, event = "subscribe") {
  const counts = [];
  sub.on(event, (n) => counts.push(n));
  await until(`${event} confirmation`, () => counts.length > 0);
  return counts;
}

describe("subscribe", () => {
  test("confirms with a count, then delivers every message in order, JSON decoded", async () => {
    const sub = redis.subscribe("conf:order");
    const got = [];
    sub.on("message", ({ channel, message }) => got.push([channel, message]));
    assert.deepEqual(await subscribed(sub), [1]);

    const sent = Array.from({ length: 25 }, (_, i) => ({ i, text: `message, number ${i}` }));
    for (const m of sent) assert.equal(await redis.publish("conf:order", m), 1);
    await redis.publish("conf:order", "plain words");
    await until("all messages", () => got.length === sent.length + 1);
    assert.deepEqual(
      got,
      [...sent.map((m) => ["conf:order", m]), ["conf:order", "plain words"]],
    );
    await sub.unsubscribe();
  });

  test("channel-specific listeners and several subscribers get the same message", async () => {
    const a = redis.subscribe(["conf:fan"]);
    const b = redis.subscribe(["conf:fan"]);
    const seenA = [];
    const seenB = [];
    a.on("message:conf:fan", ({ message }) => seenA.push(message));
    b.on("message", ({ message }) => seenB.push(message));
    await Promise.all([subscribed(a), subscribed(b)]);
    assert.equal(await redis.publish("conf:fan", { hello: "world" }), 2);
    await until("both subscribers", () => seenA.length === 1 && seenB.length === 1);
    assert.deepEqual(seenA, [{ hello: "world" }]);
    assert.deepEqual(seenB, seenA);
    await Promise.all([a.unsubscribe(), b.unsubscribe()]);
  });

  test("unsubscribing frees the stream and its Redis connection", async () => {
    await until("no stream open", async () => (await openStreams()) === 0);
    const before = await redisSubscribers();
    const sub = redis.subscribe(["conf:one", "conf:two"]);
    const got = [];
    sub.on("message", ({ channel, message }) => got.push([channel, message]));
    await until("both confirmations", async () => (await openStreams()) === 2);
    assert.equal(await redisSubscribers(), before + 2);

    await sub.unsubscribe(["conf:one"]);
    assert.deepEqual(sub.getSubscribedChannels(), ["conf:two"]);
    await until("one stream closed", async () => (await openStreams()) === 1);
    assert.equal(await redisSubscribers(), before + 1);
    assert.equal(await redis.publish("conf:one", "lost"), 0);
    assert.equal(await redis.publish("conf:two", "kept"), 1);
    await until("the kept message", () => got.length === 1);
    assert.deepEqual(got, [["conf:two", "kept"]]);

    await sub.unsubscribe();
    await until("all streams closed", async () => (await openStreams()) === 0);
    assert.equal(await redisSubscribers(), before);
  });

  test("a client that disconnects without unsubscribing frees the connection too", async () => {
    const controller = new AbortController();
    const res = await fetch(`${stack.url}/subscribe/conf:raw`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.token}`, accept: "text/event-stream" },
      body: "[]",
      signal: controller.signal,
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    const reader = res.body.getReader();
    const { value } = await reader.read();
    assert.equal(new TextDecoder().decode(value), "data: subscribe,conf:raw,1\n\n");
    assert.equal(await openStreams(), 1);
    controller.abort();
    await until("the stream closed", async () => (await openStreams()) === 0);
    assert.equal(await redis.publish("conf:raw", "nobody"), 0);
  });
});

describe("psubscribe", () => {
  test("pattern messages name the pattern and the channel", async () => {
    const sub = redis.psubscribe("conf:p:*");
    const got = [];
    sub.on("pmessage", (m) => got.push(m));
    assert.deepEqual(await subscribed(sub, "psubscribe"), [1]);
    await redis.publish("conf:p:a", { n: 1 });
    await redis.publish("conf:other", { n: 2 });
    await redis.publish("conf:p:b", { n: 3 });
    await until("two pattern messages", () => got.length === 2);
    assert.deepEqual(got, [
      { pattern: "conf:p:*", channel: "conf:p:a", message: { n: 1 } },
      { pattern: "conf:p:*", channel: "conf:p:b", message: { n: 3 } },
    ]);
    await sub.unsubscribe();
    await until("stream closed", async () => (await openStreams()) === 0);
  });
});

describe("Tollgate's invalidation channel", () => {
  test("a PUBLISH made the way Tollgate makes it reaches subscribe() and psubscribe()", async () => {
    const direct = redis.subscribe("system:cache_invalidation");
    const pattern = redis.psubscribe("system:*");
    const viaChannel = [];
    const viaPattern = [];
    direct.on("message", ({ message }) => viaChannel.push(message));
    pattern.on("pmessage", ({ channel, message }) => viaPattern.push([channel, message]));
    await Promise.all([subscribed(direct), subscribed(pattern, "psubscribe")]);

    // Tollgate's invalidator sends one command on POST / (not auto-pipelined), the message
    // being its serde JSON of the outcome.
    const announcement = { kind: "pattern", target: "config/app*", deleted: 3, at_ms: 1764650000000 };
    const res = await stack.rest("/", {
      body: JSON.stringify(["PUBLISH", "system:cache_invalidation", JSON.stringify(announcement)]),
      headers: { "content-type": "application/json" },
    });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(JSON.parse(res.text), { result: 2 });

    await until("both deliveries", () => viaChannel.length === 1 && viaPattern.length === 1);
    assert.deepEqual(viaChannel, [announcement]);
    assert.deepEqual(viaPattern, [["system:cache_invalidation", announcement]]);
    await Promise.all([direct.unsubscribe(), pattern.unsubscribe()]);
    await until("streams closed", async () => (await openStreams()) === 0);
  });
});
