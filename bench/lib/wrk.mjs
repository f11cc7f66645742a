// Runs wrk with bench/wrk/bench.lua and returns its BENCH_JSON numbers (plus wrk's own CPU time).

import { spawn } from "node:child_process";
import path from "node:path";

import { readFileSync } from "node:fs";

/** utime + stime of a whole process (exited threads included), ns; 0 when it is gone. */
function processCpuNs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * 1e7; // fields 14 and 15, USER_HZ = 100
  } catch {
    return 0;
  }
}

/**
 * @param {object} o
 * @param {string} o.root
 * @param {string} o.url        base URL of the Worker
 * @param {object} o.request    {mode, method, path, headers: {}, body, stopAfter, ipBase, env: {}}
 * @param {number} o.seconds
 * @param {number} o.threads
 * @param {number} o.connections
 */
export function runWrk({ root, url, request, seconds, threads, connections, timeoutS = 10 }) {
  const script = path.join(root, "bench/wrk/bench.lua");
  const headers = Object.entries(request.headers ?? {}).map(([k, v]) => `${k}: ${v}`).join("\n");
  const env = {
    ...process.env,
    BENCH_MODE: request.mode ?? "fixed",
    BENCH_METHOD: request.method ?? "GET",
    BENCH_PATH: request.path ?? "/",
    BENCH_HEADERS: headers,
    BENCH_BODY: request.body ?? "",
    BENCH_STOP_AFTER: String(request.stopAfter ?? 0),
    BENCH_IP_BASE: String(request.ipBase ?? 0),
    ...(request.env ?? {}),
  };
  const args = [
    `-t${threads}`, `-c${connections}`, `-d${seconds}s`, `--timeout`, `${timeoutS}s`, "--latency",
    "-s", script, `${url}${request.mode === "fixed" || !request.mode ? request.path ?? "/" : "/"}`,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn("wrk", args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let threadsDone = 0;
    let cpu = 0;
    const sampler = setInterval(() => {
      cpu = Math.max(cpu, processCpuNs(child.pid));
    }, 50);
    const guard = setTimeout(() => child.kill("SIGKILL"), (seconds + timeoutS + 30) * 1000);
    child.stdout.on("data", (chunk) => {
      const text = chunk.toString();
      out += text;
      if (request.stopAfter) {
        threadsDone += (text.match(/BENCH_THREAD_DONE/g) ?? []).length;
        // Every thread has its answers: end wrk now (it would otherwise sleep the whole -d).
        if (threadsDone >= threads) child.kill("SIGINT");
      }
    });
    child.stderr.on("data", (chunk) => {
      err += chunk.toString();
    });
    child.once("error", (e) => {
      clearInterval(sampler);
      clearTimeout(guard);
      reject(e);
    });
    child.once("exit", (code) => {
      clearInterval(sampler);
      clearTimeout(guard);
      const line = out.split("\n").find((l) => l.startsWith("BENCH_JSON "));
      if (!line) {
        reject(new Error(`wrk exited ${code} without numbers:\n${out}\n${err}`));
        return;
      }
      const data = JSON.parse(line.slice("BENCH_JSON ".length));
      data.wrk_cpu_ns = cpu;
      resolve(data);
    });
  });
}
