#!/usr/bin/env bash
# Throughput of redis-rest on loopback, next to redis-server measured directly.
#
# Starts its own redis-server and a release redis-rest on free 127.0.0.1 ports, then runs
#   (a) wrk: single GET via POST /                      (one command per HTTP request)
#   (b) wrk: 10 GETs via POST /pipeline                 (ten commands per HTTP request)
#   (c) wrk: one EVALSHA via POST /pipeline             (what a steady-state rate-limit call costs)
#   (d) redis-benchmark -t get, and (e) the same with -P 10, straight to redis-server
# and prints a Markdown table. Bounded in time (~45 s by default). Processes it starts are
# stopped by PID on exit.
#
# Env: BENCH_DURATION (wrk, default 10s), BENCH_CONNECTIONS (64), BENCH_THREADS (2),
#      BENCH_REQUESTS (redis-benchmark -n for -P 1, default 400000; x5 for -P 10),
#      REDIS_REST_BIN (skip the cargo build and use this binary).
set -euo pipefail

DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
REQUESTS=${BENCH_REQUESTS:-400000}
TOKEN=bench-token
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "run.sh: '$1' not found; install it (apt-get install $2)" >&2; exit 1; }
}
need wrk wrk
need redis-server redis-server
need redis-benchmark redis-tools
need curl curl

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$(( (RANDOM * 32768 + RANDOM) % 30000 + 20000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "run.sh: no free port found" >&2
  exit 1
}

if [[ -n "${REDIS_REST_BIN:-}" ]]; then
  BIN=$REDIS_REST_BIN
else
  (cd "$ROOT" && cargo build --release -p redis-rest >&2)
  BIN=$ROOT/target/release/redis-rest
fi

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
REST_PORT=$(free_port)
while [[ "$REST_PORT" == "$REDIS_PORT" ]]; do REST_PORT=$(free_port); done
"$BIN" --listen "127.0.0.1:$REST_PORT" --redis "redis://127.0.0.1:$REDIS_PORT" --token "$TOKEN" 2>"$WORK/rest.log" &
PIDS+=($!)

URL=http://127.0.0.1:$REST_PORT
for _ in $(seq 1 200); do
  if curl -fsS "$URL/health" >/dev/null 2>&1; then break; fi
  sleep 0.05
done
curl -fsS "$URL/health" >/dev/null || { echo "run.sh: redis-rest did not become healthy" >&2; cat "$WORK/rest.log" >&2; exit 1; }

rest() { curl -fsS -H "Authorization: Bearer $TOKEN" "$@"; }
VALUE=$(head -c 64 /dev/zero | tr '\0' 'v')
rest -X POST "$URL/" -d "[\"SET\",\"bench:key\",\"$VALUE\"]" >/dev/null
SCRIPT="#!lua flags=allow-key-locking\\nreturn redis.call('INCR', KEYS[1])"
SHA=$(rest -X POST "$URL/" -d "[\"SCRIPT\",\"LOAD\",\"$SCRIPT\"]" | sed -E 's/.*"result":"([0-9a-f]{40})".*/\1/')

wrk_script() { # $1 = file, $2 = path-less JSON body
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = '$2'
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Upstash-Encoding"] = "base64"
LUA
}
wrk_script "$WORK/single.lua" '["GET","bench:key"]'
PIPE=$(printf '["GET","bench:key"],%.0s' $(seq 1 10)); PIPE="[${PIPE%,}]"
wrk_script "$WORK/pipeline.lua" "$PIPE"
wrk_script "$WORK/evalsha.lua" "[[\"EVALSHA\",\"$SHA\",1,\"bench:counter\"]]"

ROWS=()
# wrk output → "req/s|avg|p50|p99"
run_wrk() { # $1 = label, $2 = lua, $3 = path, $4 = commands per request
  local out rps avg p50 p99 non2xx
  rest -X POST "$URL/_rest/stats/reset" >/dev/null
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$2" "$URL$3")
  echo "$out" >"$WORK/wrk-$4.txt"
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  avg=$(awk '$1 == "Latency" {print $2; exit}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  if [[ -n "$non2xx" ]]; then
    echo "run.sh: $1 had $non2xx non-2xx responses" >&2
    exit 1
  fi
  local stats cmds reqs
  stats=$(rest "$URL/_rest/stats")
  reqs=$(sed -E 's/.*"http_requests":\{"total":([0-9]+).*/\1/' <<<"$stats")
  cmds=$(sed -E 's/.*"commands":\{"total":([0-9]+).*/\1/' <<<"$stats")
  local cmd_rate
  cmd_rate=$(awk -v r="$rps" -v n="$4" 'BEGIN { printf "%.0f", r * n }')
  ROWS+=("| $1 | $(printf '%.0f' "$rps") | $cmd_rate | $avg | $p50 | $p99 | $reqs HTTP / $cmds cmds |")
}

# redis-benchmark --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
run_rb() { # $1 = label, $2 = pipeline depth, $3 = requests
  local line rps avg p50 p99
  line=$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$CONNECTIONS" -n "$3" -P "$2" -t get --csv | grep '^"GET"' | tr -d '"')
  rps=$(cut -d, -f2 <<<"$line")
  avg=$(cut -d, -f3 <<<"$line")
  p50=$(cut -d, -f5 <<<"$line")
  p99=$(cut -d, -f7 <<<"$line")
  local req_rate
  req_rate=$(awk -v r="$rps" -v n="$2" 'BEGIN { printf "%.0f", r / n }')
  ROWS+=("| $1 | $req_rate | $(printf '%.0f' "$rps") | ${avg}ms | ${p50}ms | ${p99}ms | $3 GETs |")
}

run_wrk "(a) redis-rest: POST / single GET" "$WORK/single.lua" "/" 1
run_wrk "(b) redis-rest: POST /pipeline, 10 GETs" "$WORK/pipeline.lua" "/pipeline" 10
run_wrk "(c) redis-rest: POST /pipeline, 1 EVALSHA (rate-limit call)" "$WORK/evalsha.lua" "/pipeline" 1
run_rb "(d) redis-benchmark -t get (direct)" 1 "$REQUESTS"
run_rb "(e) redis-benchmark -t get -P 10 (direct)" 10 $((REQUESTS * 5))

echo
echo "redis-rest benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(redis-server --version | awk '{print $3}' | tr -d v=), wrk -t$THREADS -c$CONNECTIONS -d$DURATION, redis-benchmark -c$CONNECTIONS, all on 127.0.0.1"
echo
echo "| scenario | HTTP req/s (or round trips/s) | Redis commands/s | avg latency | p50 | p99 | counted |"
echo "|---|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
