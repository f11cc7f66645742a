// Conformance of redis-rest with the official @upstash/redis client, used with its DEFAULT
// settings (base64 response encoding and auto-pipelining on).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Redis } from "@upstash/redis";
import { startStack } from "./support.mjs";

const sha1 = (s) => createHash("sha1").update(s, "utf8").digest("hex");

let stack;
let redis;

before(async () => {
  stack = await startStack();
  redis = new Redis({ url: stack.url, token: stack.token });
});

after(async () => {
  await stack?.stop();
});

describe("strings", () => {
  test("set, get, mset, mget, append, getrange, del", async () => {
    assert.equal(await redis.set("s:1", "hello"), "OK");
    assert.equal(await redis.get("s:1"), "hello");
    assert.equal(await redis.append("s:1", " world"), 11);
    assert.equal(await redis.getrange("s:1", 0, 4), "hello");
    assert.equal(await redis.mset({ "s:2": "two", "s:3": "three" }), "OK");
    assert.deepEqual(await redis.mget("s:2", "s:3", "s:missing"), ["two", "three", null]);
    assert.equal(await redis.get("s:missing"), null);
    assert.equal(await redis.del("s:1", "s:2", "s:3"), 3);
  });

  test("set with options: nx, get, keepttl", async () => {
    assert.equal(await redis.set("s:nx", "a", { nx: true }), "OK");
    assert.equal(await redis.set("s:nx", "b", { nx: true }), null);
    assert.equal(await redis.set("s:nx", "c", { get: true }), "a");
    assert.equal(await redis.get("s:nx"), "c");
  });

  test("JSON values are serialized by the client and come back as objects", async () => {
    await redis.set("s:json", { x: 1, nested: { y: [1, 2, "z"] } });
    assert.deepEqual(await redis.get("s:json"), { x: 1, nested: { y: [1, 2, "z"] } });
  });

  test("a value that is literally OK survives base64 decoding", async () => {
    await redis.set("s:ok", "OK");
    assert.equal(await redis.get("s:ok"), "OK");
    assert.deepEqual(await redis.mget("s:ok", "s:ok"), ["OK", "OK"]);
  });
});

describe("numbers", () => {
  test("counters", async () => {
    assert.equal(await redis.incr("n:c"), 1);
    assert.equal(await redis.incrby("n:c", 41), 42);
    assert.equal(await redis.decrby("n:c", 2), 40);
    assert.equal(await redis.incrbyfloat("n:f", 0.1), 0.1);
    assert.equal(await redis.incrbyfloat("n:f", 0.2), 0.3);
  });

  test("floats keep their exact text on the way in", async () => {
    await redis.set("n:a", 0.1 + 0.2);
    await redis.set("n:b", 1e21);
    const raw = await stack.rest("/", { body: JSON.stringify(["MGET", "n:a", "n:b"]) });
    assert.deepEqual(JSON.parse(raw.text), { result: ["0.30000000000000004", "1e+21"] });
    assert.equal(await redis.get("n:a"), 0.30000000000000004);
    assert.equal(await redis.get("n:b"), 1e21);
  });

  test("big integers keep all their digits", async () => {
    // The client keeps integers it cannot represent exactly as strings.
    await redis.set("n:big", "12345678901234567890");
    assert.equal(await redis.get("n:big"), "12345678901234567890");
    // A JSON number literal beyond 2^53 reaches Redis as written.
    const res = await stack.rest("/", { body: '["SET","n:lit",123456789012345678901234567890]' });
    assert.equal(res.status, 200);
    assert.equal(await redis.get("n:lit"), "123456789012345678901234567890");
    const incr = await stack.rest("/", { body: '["INCRBY","n:i",9007199254740993]' });
    assert.equal(incr.text, '{"result":9007199254740993}');
  });
});

describe("hashes, sets, sorted sets, lists", () => {
  test("hashes", async () => {
    assert.equal(await redis.hset("h:1", { name: "ada", age: 36 }), 2);
    assert.equal(await redis.hget("h:1", "name"), "ada");
    assert.equal(await redis.hincrby("h:1", "age", 1), 37);
    assert.deepEqual(await redis.hgetall("h:1"), { name: "ada", age: 37 });
    assert.deepEqual(await redis.hmget("h:1", "name", "nope"), { name: "ada", nope: null });
    assert.equal(await redis.hgetall("h:missing"), null);
  });

  test("sets", async () => {
    assert.equal(await redis.sadd("set:1", "a", "b", "c"), 3);
    assert.deepEqual((await redis.smembers("set:1")).sort(), ["a", "b", "c"]);
    assert.equal(await redis.sismember("set:1", "b"), 1);
    assert.equal(await redis.srem("set:1", "b"), 1);
    assert.equal(await redis.scard("set:1"), 2);
  });

  test("sorted sets with fractional scores", async () => {
    assert.equal(await redis.zadd("z:1", { score: 1.5, member: "m1" }, { score: 2, member: "m2" }), 2);
    assert.equal(await redis.zscore("z:1", "m1"), 1.5);
    assert.deepEqual(await redis.zrange("z:1", 0, -1, { withScores: true }), ["m1", 1.5, "m2", 2]);
    assert.equal(await redis.zincrby("z:1", 0.25, "m1"), 1.75);
    assert.equal(await redis.zrank("z:1", "m2"), 1);
    assert.deepEqual(await redis.zrange("z:1", 1, 2, { byScore: true }), ["m1", "m2"]);
  });

  test("lists", async () => {
    assert.equal(await redis.rpush("l:1", "a", "b"), 2);
    assert.equal(await redis.lpush("l:1", "z"), 3);
    assert.deepEqual(await redis.lrange("l:1", 0, -1), ["z", "a", "b"]);
    assert.equal(await redis.lpop("l:1"), "z");
    assert.equal(await redis.llen("l:1"), 2);
  });

  test("scan with types (Upstash extension)", async () => {
    await redis.set("scan:s", "v");
    await redis.hset("scan:h", { f: "v" });
    const [cursor, keys] = await redis.scan(0, { match: "scan:*", count: 1000, withType: true });
    assert.equal(cursor, "0");
    assert.deepEqual(
      keys.sort((a, b) => a.key.localeCompare(b.key)),
      [{ key: "scan:h", type: "hash" }, { key: "scan:s", type: "string" }],
    );
  });
});

describe("expiry", () => {
  test("ex, ttl, pexpire, persist", async () => {
    await redis.set("e:1", "v", { ex: 100 });
    const ttl = await redis.ttl("e:1");
    assert.ok(ttl > 0 && ttl <= 100, `ttl ${ttl}`);
    assert.equal(await redis.pexpire("e:1", 50000), 1);
    const pttl = await redis.pttl("e:1");
    assert.ok(pttl > 0 && pttl <= 50000, `pttl ${pttl}`);
    assert.equal(await redis.persist("e:1"), 1);
    assert.equal(await redis.ttl("e:1"), -1);
  });

  test("an expiry in the past removes the key", async () => {
    await redis.set("e:2", "v");
    assert.equal(await redis.expireat("e:2", Math.floor(Date.now() / 1000) - 10), 1);
    assert.equal(await redis.get("e:2"), null);
    assert.equal(await redis.ttl("e:2"), -2);
  });
});

describe("unicode and binary", () => {
  test("unicode round trips", async () => {
    const value = "héllo ✓ 😀 日本語 \u0000 \"q\" \\ \n\t";
    await redis.set("u:1", value);
    assert.equal(await redis.get("u:1"), value);
    await redis.hset("u:h", { "ключ": "значение" });
    assert.deepEqual(await redis.hgetall("u:h"), { "ключ": "значение" });
  });

  test("every code point 0..255 survives", async () => {
    const value = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)).join("");
    await redis.set("b:1", value);
    assert.equal(await redis.get("b:1"), value);
  });

  test("raw bytes: exact over base64 on the wire, lossy after the client's UTF-8 decode", async () => {
    const put = await stack.rest("/set/b:raw", { body: Buffer.from([0xff, 0xfe, 0x00, 0x41]) });
    assert.equal(put.status, 200);
    const raw = await stack.rest("/get/b:raw", { method: "GET", headers: { "Upstash-Encoding": "base64" } });
    assert.deepEqual(Buffer.from(JSON.parse(raw.text).result, "base64"), Buffer.from([0xff, 0xfe, 0x00, 0x41]));
    // Documented limitation of the JS client (docs/upstash-rest-protocol.md §6): it UTF-8-decodes after base64.
    assert.equal(await redis.get("b:raw"), "\ufffd\ufffd\u0000A");
  });
});

describe("pipelines", () => {
  test("explicit pipeline with a failing entry throws, or keeps errors on request", async () => {
    const p = redis.pipeline();
    p.set("p:1", 1);
    p.incr("p:1");
    p.hset("p:1", { f: 1 });
    p.get("p:1");
    await assert.rejects(p.exec(), /Command 3 \[ hset \] failed: WRONGTYPE/);

    const q = redis.pipeline();
    q.set("p:2", "x");
    q.incr("p:2");
    q.get("p:2");
    const res = await q.exec({ keepErrors: true });
    assert.deepEqual(res.map((r) => r.result), ["OK", undefined, "x"]);
    assert.match(res[1].error, /ERR value is not an integer/);
  });

  test("auto-pipelined calls fail one by one", async () => {
    await stack.resetStats();
    const [a, b, c] = await Promise.allSettled([
      redis.set("p:3", "x"),
      redis.incr("p:3"),
      redis.set("p:4", "y"),
    ]);
    assert.equal(a.status, "fulfilled");
    assert.equal(b.status, "rejected");
    assert.match(String(b.reason), /Command failed: ERR value is not an integer/);
    assert.equal(c.status, "fulfilled");
    const stats = await stack.stats();
    assert.equal(stats.http_requests.pipeline, 1, JSON.stringify(stats));
    assert.equal(stats.http_requests.total, 1);
    assert.equal(stats.commands.total, 3);
  });
});

describe("transactions", () => {
  test("applied", async () => {
    const tx = redis.multi();
    tx.set("t:1", 1);
    tx.incr("t:1");
    tx.get("t:1");
    assert.deepEqual(await tx.exec(), ["OK", 2, 2]);
  });

  test("runtime errors are per entry", async () => {
    const tx = redis.multi();
    tx.set("t:2", "x");
    tx.incr("t:2");
    await assert.rejects(tx.exec(), /Command 2 \[ incr \] failed: ERR value is not an integer/);
    assert.equal(await redis.get("t:2"), "x");
  });

  test("discarded as a whole on a queue-time error", async () => {
    await redis.set("t:3", "before");
    const tx = redis.multi();
    tx.set("t:3", "after");
    tx.hset("t:h", {}); // HSET with no field: wrong arity, refused at queue time
    await assert.rejects(tx.exec(), /EXECABORT/);
    assert.equal(await redis.get("t:3"), "before");
  });
});

describe("scripts", () => {
  test("eval, scriptLoad + evalsha, NOSCRIPT", async () => {
    assert.equal(await redis.eval("return ARGV[1]", [], ["hi"]), "hi");
    assert.deepEqual(await redis.eval("return {KEYS[1], tonumber(ARGV[1]) + 1}", ["k"], [41]), ["k", 42]);
    const script = "return redis.call('GET', KEYS[1])";
    assert.equal(await redis.scriptLoad(script), sha1(script));
    await redis.set("sc:1", "v");
    assert.equal(await redis.evalsha(sha1(script), ["sc:1"], []), "v");
    await assert.rejects(redis.evalsha("0".repeat(40), [], []), /NOSCRIPT/);
  });

  test("createScript falls back to EVAL once, then is one EVALSHA round trip, even with Upstash-only flags", async () => {
    const script = redis.createScript("#!lua flags=allow-key-locking\nreturn redis.call('INCR', KEYS[1])");
    await stack.resetStats();
    assert.equal(await script.exec(["sc:n"], []), 1);
    let stats = await stack.stats();
    assert.equal(stats.http_requests.total, 2, JSON.stringify(stats));
    assert.deepEqual(stats.commands.by_name, { evalsha: 1, eval: 1 });

    await stack.resetStats();
    assert.equal(await script.exec(["sc:n"], []), 2);
    stats = await stack.stats();
    assert.equal(stats.http_requests.total, 1, JSON.stringify(stats));
    assert.deepEqual(stats.commands.by_name, { evalsha: 1 });
    assert.equal(stats.errors, 0);
  });

  test("scriptLoad of a flagged script answers the client's own SHA", async () => {
    const text = "#!lua flags=allow-key-locking\nreturn 7";
    assert.equal(await redis.scriptLoad(text), sha1(text));
    assert.deepEqual(await redis.scriptExists(sha1(text)), [1]);
    assert.equal(await redis.evalsha(sha1(text), [], []), 7);
  });
});

describe("protocol details", () => {
  test("the sync token changes after every command", async () => {
    await redis.set("rw:1", "a");
    const first = redis.readYourWritesSyncToken;
    await redis.get("rw:1");
    const second = redis.readYourWritesSyncToken;
    assert.ok(first && second, "tokens are set");
    assert.notEqual(first, second);
  });

  test("a wrong token is refused with WRONGPASS", async () => {
    const bad = new Redis({ url: stack.url, token: "wrong", retry: false });
    await assert.rejects(bad.get("x"), /WRONGPASS invalid or missing auth token/);
    const res = await fetch(`${stack.url}/`, { method: "POST", body: '["PING"]' });
    assert.equal(res.status, 401);
  });

  test("an oversized request is refused with the Upstash error", async () => {
    await assert.rejects(redis.set("big", "x".repeat(11 * 1024 * 1024)), /ERR max request size exceeded/);
    assert.equal(await redis.exists("big"), 0);
  });

  test("commands refused by the server surface as errors", async () => {
    const res = await stack.rest("/", { body: '["SUBSCRIBE","chan"]' });
    assert.equal(res.status, 400);
    assert.deepEqual(JSON.parse(res.text), { error: "ERR Command is not available: 'SUBSCRIBE'" });
    // The server is still fine afterwards.
    assert.equal(await redis.ping(), "PONG");
  });
});
