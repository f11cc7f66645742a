// The Workers runtime as Tollgate's wasm uses it. Each function does in one call what would
// otherwise cross the JS↔wasm boundary once per header, property or promise: header sets travel
// as one string of "name:value" lines, answers of subrequests as one array, and timeouts are
// raced here so a call costs no timer object of the wasm's own.
//
// Header lines: a header value never holds a line break (the Fetch standard forbids it), and a
// header name never holds ":", so "name:value" lines joined by "\n" are unambiguous.

/**
 * Calls `each(name, value)` for every "name:value" line (a line without ":" is skipped).
 */
function eachLine(lines, each) {
  if (lines === "") return;
  let start = 0;
  while (start <= lines.length) {
    let end = lines.indexOf("\n", start);
    if (end < 0) end = lines.length;
    const colon = lines.indexOf(":", start);
    if (colon > start && colon < end) each(lines.slice(start, colon), lines.slice(colon + 1, end));
    start = end + 1;
  }
}

/**
 * "name:value" lines as a header init object. An object is the cheapest init the runtime reads
 * (an array of pairs costs it three times as much); repeated names are joined with ", " as the
 * Fetch standard combines them, except `set-cookie`, whose values are returned apart to append.
 */
function headerInit(lines) {
  const init = {};
  let cookies = null;
  eachLine(lines, (name, value) => {
    if (name === "set-cookie") (cookies ??= []).push(value);
    else if (Object.hasOwn(init, name)) init[name] += `, ${value}`;
    else init[name] = value;
  });
  return [init, cookies];
}

/** A new `Headers` from "name:value" lines. */
function headersOf(lines) {
  const [init, cookies] = headerInit(lines);
  const headers = new Headers(init);
  if (cookies !== null) for (const c of cookies) headers.append("set-cookie", c);
  return headers;
}

/** A `Headers` object as "name:value" lines (names lower-case, as the runtime iterates them). */
function lines(headers) {
  let out = "";
  for (const [name, value] of headers) out += out === "" ? `${name}:${value}` : `\n${name}:${value}`;
  return out;
}

/** What the gate reads of a request: "METHOD\nURL" then its header lines. */
export function requestHead(request) {
  const headers = lines(request.headers);
  return headers === "" ? `${request.method}\n${request.url}` : `${request.method}\n${request.url}\n${headers}`;
}

/** A response of `status` with the header `lines` and a copy of `body` (none when empty). */
export function response(status, headerLines, body) {
  const [headers, cookies] = headerInit(headerLines);
  const r = new Response(body.length === 0 ? null : body.slice(), { status, headers });
  if (cookies !== null) for (const c of cookies) r.headers.append("set-cookie", c);
  return r;
}

/**
 * `promise`'s value, or `undefined` when it has not settled within `ms` milliseconds. The
 * promise itself goes on; racing it again waits for the same answer.
 */
function within(promise, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

// The wasm's executor (src/host/task.rs): `settle(id, ok, value)` delivers a promise's outcome to
// the future waiting in slot `id`, `run()` polls the tasks woken outside it. Installed once.
let settle = null;
let run = null;

/** Installs the executor's two callbacks. */
export function install(settleFn, runFn) {
  settle = settleFn;
  run = runFn;
}

/** Runs the woken tasks in a microtask. */
export function schedule() {
  queueMicrotask(run);
}

/** Settles slot `id` with `promise`'s outcome. */
export function settleOn(promise, id) {
  promise.then(
    (value) => settle(id, true, value),
    (error) => settle(id, false, error),
  );
}

/**
 * Settles slot `id` with `promise`'s outcome, or with `undefined` once `ms` milliseconds passed
 * (the promise goes on; a later outcome is ignored by the slot).
 */
export function settleWithin(promise, ms, id) {
  const timer = setTimeout(() => settle(id, true, undefined), ms);
  promise.then(
    (value) => {
      clearTimeout(timer);
      settle(id, true, value);
    },
    (error) => {
      clearTimeout(timer);
      settle(id, false, error);
    },
  );
}

/** Resolves after `ms` milliseconds; `cancel` stops it. */
export function sleep(ms) {
  let timer;
  const promise = new Promise((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  promise.timer = timer;
  return promise;
}

/** Stops the timer of a promise from `sleep` (it never resolves then). */
export function cancel(promise) {
  clearTimeout(promise.timer);
}

/**
 * POSTs `body` to a REST server: resolves to `[status, sync token or null, ArrayBuffer]`.
 * `syncToken` is sent when not empty.
 */
export function restPost(url, authorization, body, syncToken) {
  const headers = { authorization, "content-type": "application/json", "upstash-encoding": "base64" };
  if (syncToken !== "") headers["upstash-sync-token"] = syncToken;
  return fetch(url, { method: "POST", headers, body }).then((r) =>
    r.arrayBuffer().then((bytes) => [r.status, r.headers.get("upstash-sync-token"), bytes]),
  );
}

/**
 * A subrequest whose answer is read whole (cache fills): resolves to `[status, header lines,
 * ArrayBuffer]`, or to `undefined` when the answer is not complete within `ms` (the request is
 * aborted then).
 */
export function fetchWhole(url, method, headerLines, body, ms) {
  const controller = new AbortController();
  const init = { method, headers: headersOf(headerLines), redirect: "manual", signal: controller.signal };
  if (body.length > 0 && method !== "GET" && method !== "HEAD") init.body = body.slice();
  const answer = fetch(url, init).then((r) => r.arrayBuffer().then((bytes) => [r.status, lines(r.headers), bytes]));
  return within(answer, ms).then((done) => {
    if (done === undefined) controller.abort();
    return done;
  });
}

/**
 * Sends `request` on to `url`: its headers copied by the runtime, the `removed` names (one per
 * line) deleted and the header `added` lines set; the body is `body` when given, else the
 * request's own stream (none for GET and HEAD). Resolves to the origin's `Response` once its
 * headers arrived, or to `undefined` when they did not within `ms` (the request is aborted then).
 * The body is not part of the timeout: a long stream is not cut.
 */
export function forward(request, url, method, removed, added, body, ms) {
  const headers = new Headers(request.headers);
  if (removed !== "") for (const name of removed.split("\n")) headers.delete(name);
  change(headers, added);
  const controller = new AbortController();
  const init = { method, headers, redirect: "manual", signal: controller.signal };
  if (method !== "GET" && method !== "HEAD") {
    if (body != null) init.body = body.slice();
    else if (request.body !== null) init.body = request.body;
  }
  return within(fetch(url, init), ms).then((r) => {
    if (r === undefined) controller.abort();
    return r;
  });
}

/** Applies header `lines` to `headers`: the first line of a name replaces, later ones append. */
function change(headers, lines) {
  let seen = null;
  eachLine(lines, (name, value) => {
    if (seen !== null && seen.has(name)) headers.append(name, value);
    else {
      (seen ??= new Set()).add(name);
      headers.set(name, value);
    }
  });
}

/**
 * Resolves when the client of `request` goes away: the runtime aborts the request's signal then
 * (with the `enable_request_signal` compatibility flag). Never resolves without a signal.
 */
export function whenGone(request) {
  const signal = request.signal;
  if (signal == null) return new Promise(() => {});
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}

/** "STATUS\n" then the header lines of a response. */
export function responseHead(r) {
  const headers = lines(r.headers);
  return headers === "" ? `${r.status}` : `${r.status}\n${headers}`;
}

/**
 * `r` passed on with `body` (a stream, or `null` for the origin's own), its status and headers
 * copied by the runtime and changed by the header `lines` (the first line of a name replaces the
 * origin's values, later ones are appended).
 */
export function passOn(r, headerLines, body) {
  const out = new Response(body == null ? r.body : body, r);
  change(out.headers, headerLines);
  return out;
}

/**
 * Keeps the invocation of `ctx` alive (`ctx.waitUntil`) until the returned function is called.
 */
export function keepAlive(ctx) {
  let done;
  ctx.waitUntil(
    new Promise((resolve) => {
      done = resolve;
    }),
  );
  return done;
}

/** One error line for the logs (`wrangler tail`, Logpush). */
export function errorLine(text) {
  console.error(text);
}
