// ./scripts/dev's operations: its readiness probe consumes no rate limit (checked against the
// built Worker in Miniflare), and whatever ends it — Ctrl-C through `| tee log`, TERM, HUP, the
// output pipe closing — stops every process it started, grandchildren included. The signal
// handling is scripts/lib.sh's (stop_started_on_exit, start_bg, wait_for_pid), driven here by a
// small script that starts servers the way scripts/dev does, without waiting minutes for wrangler.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { ROOT, startStack } from "./support/stack.mjs";

const LIB = path.join(ROOT, "scripts/lib.sh");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function run(command, args, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c) => (out += c));
    child.stderr.on("data", (c) => (out += c));
    child.once("exit", (code) => resolve({ code, out }));
  });
}

describe("the readiness probe", () => {
  let stack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack?.stop();
  });

  test("waits on the public health endpoint and consumes no rate limit", async () => {
    await stack.redisRest.resetStats();
    for (let i = 0; i < 5; i += 1) {
      const probe = await run("bash", ["-c", `source "${LIB}" && wait_worker_ready "$1" 20`, "probe", stack.url]);
      assert.equal(probe.code, 0, probe.out);
    }
    const wire = await stack.redisRest.stats();
    assert.equal(wire.commands.by_name.evalsha ?? 0, 0, "no limit was checked for the probes");
    assert.equal(wire.commands.by_name.eval ?? 0, 0, "no limit was checked for the probes");
    // The probe sends no CF-Connecting-IP, nor does this request: the same anonymous caller.
    const first = await stack.fetch("/anything");
    await first.text();
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-ratelimit-limit"), "30");
    assert.equal(first.headers.get("x-ratelimit-remaining"), "29", "the probes left the anonymous quota whole");
    const checked = (await stack.redisRest.stats()).commands.by_name;
    assert.ok((checked.evalsha ?? 0) + (checked.eval ?? 0) >= 1, "a gated request does run the limit script");
  });

  test("fails when the server behind the URL is gone", async () => {
    const probe = await run("bash", ["-c", `source "${LIB}" && wait_worker_ready "$1" 1`, "probe", "http://127.0.0.1:9"]);
    assert.notEqual(probe.code, 0);
    assert.match(probe.out, /did not answer/);
  });
});

// ---------------------------------------------------------------------------------------------
// Stopping everything.

const DRIVER = `#!/usr/bin/env bash
set -euo pipefail
source "${LIB}"
stop_started_on_exit
dir=$1
start_bg "$dir/a.log" sleep 300                                # a server, like redis-server
start_bg "$dir/b.log" bash -c 'sleep 300 & sleep 300 & wait'   # a server with children (npm → node → workerd)
start_bg - bash -c 'sleep 300 & wait'                          # shares the output, like wrangler
readers=$(pipe_readers 1 | tr '\\n' ' ')
{ echo "$$"; echo "$readers"; printf '%s\\n' "\${TOLLGATE_STARTED[@]}"; } >"$dir/pids.tmp"
mv "$dir/pids.tmp" "$dir/pids"
echo "driver: started \${TOLLGATE_STARTED[*]}"
status=0
wait_for_pid "$STARTED_PID" || status=$?
exit "$status"
`;

/** Whether any process is left in the process group `pgid`. */
function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return err.code !== "ESRCH";
  }
}

async function waitFor(what, probe, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/**
 * Starts the driver under `wrapper` (a bash -c script: $0 = driver, $1 = its dir) in a process
 * group of its own, as a terminal runs a pipeline.
 */
async function startDriver(wrapper) {
  const dir = mkdtempSync(path.join(tmpdir(), "tollgate-dev-signals-"));
  const driver = path.join(dir, "driver.sh");
  writeFileSync(driver, DRIVER, { mode: 0o755 });
  const shell = spawn("bash", ["-c", wrapper, driver, dir], { detached: true, stdio: "ignore" });
  const exited = new Promise((resolve) => shell.once("exit", resolve));
  await waitFor("the driver's PID file", () => existsSync(path.join(dir, "pids")), 10_000);
  const [driverLine, readersLine, ...groupLines] = readFileSync(path.join(dir, "pids"), "utf8").trim().split("\n");
  const driverPid = Number(driverLine);
  // The processes reading the driver's output (tee), as scripts/lib.sh's pipe_readers found them.
  const readers = readersLine.trim().split(/\s+/).filter(Boolean).map(Number);
  const groups = groupLines.map(Number);
  assert.equal(groups.length, 3);
  // start_bg's setsid makes each child a group leader a moment after its PID is known.
  await waitFor("every started process group to run", () => groups.every(groupAlive), 10_000);
  return {
    dir,
    shell,
    driverPid,
    readers,
    groups,
    exited,
    /** Every group the driver started is gone, and the driver has exited. */
    async assertAllStopped() {
      await waitFor("every started process group to end", () => groups.every((g) => !groupAlive(g)), 15_000);
      await waitFor("the driver to exit", () => {
        try {
          process.kill(driverPid, 0);
          return false;
        } catch {
          return true;
        }
      }, 15_000);
    },
    cleanup() {
      for (const g of [...groups, shell.pid]) {
        if (groupAlive(g)) process.kill(-g, "SIGKILL");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// `./scripts/dev 2>&1 | tee log` in the foreground.
const FOREGROUND_TEE = `"$0" "$1" 2>&1 | tee "$1/log" >/dev/null`;

describe("stopping every child", () => {
  test("Ctrl-C through `| tee log` (INT to the whole pipeline) stops every child", async () => {
    const d = await startDriver(FOREGROUND_TEE);
    try {
      process.kill(-d.shell.pid, "SIGINT");
      await d.assertAllStopped();
    } finally {
      d.cleanup();
    }
  });

  for (const signal of ["SIGTERM", "SIGHUP", "SIGINT"]) {
    test(`${signal} to the script alone, output through tee, stops every child`, async () => {
      const d = await startDriver(FOREGROUND_TEE);
      try {
        process.kill(d.driverPid, signal);
        await d.assertAllStopped();
        assert.match(readFileSync(path.join(d.dir, "log"), "utf8"), /stopping the local stack/);
      } finally {
        d.cleanup();
      }
    });
  }

  test("the output pipe closing (tee ends) stops every child, with nothing written meanwhile", async () => {
    const d = await startDriver(FOREGROUND_TEE);
    try {
      assert.equal(d.readers.length, 1, "tee is the one reader of the driver's output");
      await sleep(1_500); // the driver is waiting, writing nothing
      process.kill(d.readers[0], "SIGTERM");
      await d.assertAllStopped();
    } finally {
      d.cleanup();
    }
  });

  test("Ctrl-C after tee has ended (a message into the closed pipe) still stops every child", async () => {
    const d = await startDriver(FOREGROUND_TEE);
    try {
      assert.equal(d.readers.length, 1);
      process.kill(d.readers[0], "SIGKILL");
      process.kill(d.driverPid, "SIGINT");
      await d.assertAllStopped();
    } finally {
      d.cleanup();
    }
  });

  test("a normal exit of the waited-for child stops the others", async () => {
    const d = await startDriver(FOREGROUND_TEE);
    try {
      process.kill(-d.groups[2], "SIGTERM");
      await d.assertAllStopped();
    } finally {
      d.cleanup();
    }
  });
});
