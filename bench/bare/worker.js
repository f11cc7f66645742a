// The floor: a bare pass-through Worker with no limits and no cache. Every request goes to
// ORIGIN_URL unchanged (same path, query, method, headers, body), except `/__bare/static`, which
// answers a fixed 200 without any subrequest (the CPU floor of workerd answering a request).

const STATIC_BODY = JSON.stringify({ ok: true });

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/__bare/static" || url.pathname === "/__bare/health") {
      return new Response(STATIC_BODY, { headers: { "content-type": "application/json" } });
    }
    return fetch(new Request(`${env.ORIGIN_URL}${url.pathname}${url.search}`, request));
  },
};
