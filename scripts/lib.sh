# shellcheck shell=bash
# Shared functions for the scripts in this directory. Source it, do not run it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Installers are idempotent: each checks first and changes nothing when the tool is there.
# Servers are started in their own process group and stopped by that group's id; nothing here
# ever stops a process by name.

TOLLGATE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export TOLLGATE_ROOT

# cargo-installed tools live here; a fresh shell may not have it on PATH yet.
TOLLGATE_CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in
  *":$TOLLGATE_CARGO_BIN:"*) ;;
  *) PATH="$TOLLGATE_CARGO_BIN:$PATH" ;;
esac
export PATH

# ---------------------------------------------------------------------------------------------
# Messages

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Runs a command as root: directly when we are root, else with non-interactive sudo.
as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@" || die "'$*' needs root and 'sudo -n' refused; run it once by hand"
  else
    die "'$*' needs root; run it as root or install sudo"
  fi
}

# ---------------------------------------------------------------------------------------------
# Installers

_TOLLGATE_APT_UPDATED=0

# ensure_apt PKG...: installs the Debian packages that are not installed yet. Runs
# `apt-get update` at most once per script, and only when something is missing.
ensure_apt() {
  local missing=() pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and apt-get is not available"
  log "apt: installing ${missing[*]}"
  # Wait for another apt run to release its lock rather than failing at once.
  local apt_opts=(-o DPkg::Lock::Timeout=600 -q)
  if [[ $_TOLLGATE_APT_UPDATED -eq 0 ]]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update
    _TOLLGATE_APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y "${missing[@]}"
}

# ensure_rust_target TARGET: adds a rustup target when it is not installed.
ensure_rust_target() {
  local target=$1
  command -v rustup >/dev/null 2>&1 || die "rustup not found; install Rust with rustup first"
  if ! rustup target list --installed | grep -qx "$target"; then
    log "rustup: adding target $target"
    rustup target add "$target"
  fi
}

# ensure_rust_component COMPONENT...: adds rustup components (rustfmt, clippy) when missing.
ensure_rust_component() {
  local component
  command -v rustup >/dev/null 2>&1 || die "rustup not found; install Rust with rustup first"
  for component in "$@"; do
    if ! rustup component list --installed | grep -q "^$component"; then
      log "rustup: adding component $component"
      rustup component add "$component"
    fi
  done
}

# tool_version CMD: the first x.y.z in `CMD --version`, or nothing when CMD is absent.
tool_version() {
  command -v "$1" >/dev/null 2>&1 || return 0
  "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+[^[:space:]]*' | head -n 1 || true
}

# ensure_cargo_tool CRATE VERSION [CARGO-INSTALL-ARGS...]: `cargo install CRATE --version VERSION`
# unless its binary (the crate name without a trailing `-cli`) already reports VERSION.
#   ensure_cargo_tool wasm-bindgen-cli 0.2.130     (no --locked: a locked dependency is missing)
ensure_cargo_tool() {
  local crate=$1 version=$2
  shift 2
  local bin=${crate%-cli} have
  have=$(tool_version "$bin")
  [[ $have == "$version" ]] && return 0
  log "cargo install $crate $version${have:+ (found $have)} — a few minutes when cold"
  cargo install "$crate" --version "$version" "$@"
  have=$(tool_version "$bin")
  [[ $have == "$version" ]] || die "$bin reports '${have:-nothing}' after installing $crate $version; is $TOLLGATE_CARGO_BIN first on PATH?"
}

# ensure_npm: `npm ci` in the repository when node_modules is missing or older than
# package-lock.json.
ensure_npm() {
  command -v node >/dev/null 2>&1 || die "node not found; install Node.js 20"
  command -v npm >/dev/null 2>&1 || die "npm not found; install Node.js 20 with npm"
  local stamp="$TOLLGATE_ROOT/node_modules/.package-lock.json"
  local lock="$TOLLGATE_ROOT/package-lock.json"
  if [[ ! -f $lock ]]; then
    if [[ ! -d $TOLLGATE_ROOT/node_modules ]]; then
      log "npm install (no package-lock.json yet)"
      (cd "$TOLLGATE_ROOT" && npm install --no-audit --no-fund)
    fi
    return 0
  fi
  if [[ ! -f $stamp || $lock -nt $stamp ]]; then
    log "npm ci"
    (cd "$TOLLGATE_ROOT" && npm ci --no-audit --no-fund)
  fi
}

# ---------------------------------------------------------------------------------------------
# Ports

# free_port: prints a TCP port free on 127.0.0.1 right now.
free_port() {
  node -e '
    const server = require("node:net").createServer();
    server.listen(0, "127.0.0.1", () => {
      console.log(server.address().port);
      server.close();
    });'
}

# port_in_use PORT: true when something accepts connections on 127.0.0.1:PORT.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# port_or_free PORT: prints PORT when it is free, else a free port.
port_or_free() {
  if port_in_use "$1"; then
    free_port
  else
    printf '%s\n' "$1"
  fi
}

# ---------------------------------------------------------------------------------------------
# Processes

# PIDs of process groups started by start_bg, in start order.
TOLLGATE_STARTED=()

# start_bg LOGFILE CMD...: starts CMD in a new session (its own process group, no terminal,
# stdin from /dev/null), output to LOGFILE ("-" keeps the script's stdout and stderr). Sets
# STARTED_PID to the process-group leader's PID and records it for stop_started.
start_bg() {
  local logfile=$1
  shift
  if [[ $logfile == - ]]; then
    setsid "$@" </dev/null &
  else
    setsid "$@" </dev/null >"$logfile" 2>&1 &
  fi
  STARTED_PID=$!
  TOLLGATE_STARTED+=("$STARTED_PID")
}

# stop_pid PID [GRACE_SECONDS]: TERM to the process group led by PID (or to PID alone when it
# leads none), KILL after the grace period (default 10 s), then reaps it.
stop_pid() {
  local pid=$1 grace=${2:-10} target pgid
  kill -0 "$pid" 2>/dev/null || {
    wait "$pid" 2>/dev/null || true
    return 0
  }
  pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ' || true)
  if [[ $pgid == "$pid" ]]; then target="-$pid"; else target="$pid"; fi
  kill -TERM -- "$target" 2>/dev/null || true
  local waited=0
  while kill -0 "$pid" 2>/dev/null && ((waited < grace * 10)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "process $pid ignored TERM for ${grace}s; killing it"
    kill -KILL -- "$target" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# stop_started: stops every process group start_bg started, newest first.
stop_started() {
  local i
  for ((i = ${#TOLLGATE_STARTED[@]} - 1; i >= 0; i--)); do
    stop_pid "${TOLLGATE_STARTED[$i]}"
  done
  TOLLGATE_STARTED=()
}

# stop_started_on_exit: makes the calling script stop everything start_bg started whenever it
# ends: a normal exit, an error, INT (Ctrl-C, also through `| tee log`), TERM, HUP, or its output
# pipe closing (a write then raises SIGPIPE; wait_for_pid also notices while nothing is written).
stop_started_on_exit() {
  trap _tollgate_stop_on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  trap 'exit 141' PIPE
}

# shellcheck disable=SC2317  # reached through the EXIT trap
_tollgate_stop_on_exit() {
  trap - EXIT INT TERM HUP
  # The output may be gone (that may be why we exit): a failed message must not end the cleanup.
  trap '' PIPE
  set +e
  if [[ ${#TOLLGATE_STARTED[@]} -gt 0 ]]; then
    log "stopping the local stack"
    stop_started
  fi
}

# pipe_readers FD [PID...]: prints the PIDs of the processes (all, or those given) that hold the
# read end of this shell's FD while FD is a pipe (Linux /proc); nothing when it is not a pipe or
# /proc cannot tell.
pipe_readers() {
  local fd=$1 target pattern match pid num flags dirs=()
  shift
  target=$(readlink "/proc/$$/fd/$fd" 2>/dev/null) || return 0
  [[ $target == pipe:* ]] || return 0
  pattern=${target//\[/\\[}
  pattern=${pattern//\]/\\]}
  if [[ $# -gt 0 ]]; then
    for pid in "$@"; do dirs+=("/proc/$pid/fd"); done
  else
    dirs=(/proc/[0-9]*/fd)
  fi
  while IFS= read -r match; do
    pid=${match#/proc/}
    pid=${pid%%/*}
    num=${match##*/}
    flags=$(sed -n 's/^flags:[[:space:]]*//p' "/proc/$pid/fdinfo/$num" 2>/dev/null)
    # Access mode 0 (O_RDONLY): a reader.
    if [[ -n $flags ]] && (((8#$flags & 3) == 0)); then printf '%s\n' "$pid"; fi
  done < <(find "${dirs[@]}" -maxdepth 1 -lname "$pattern" 2>/dev/null | sort -u)
}

# wait_for_pid PID: waits until PID (a child of this shell) exits and returns its status. Returns
# 141 early when this shell's stdout or stderr is a pipe that had readers and has none left
# (`| tee log` and tee ended), so that the caller can exit and stop the rest. Signals are handled
# at once (the wait is in steps of half a second).
wait_for_pid() {
  local pid=$1 fd readers
  local -A watched=()
  for fd in 1 2; do
    readers=$(pipe_readers "$fd" | sort -u | tr '\n' ' ')
    [[ -n ${readers// /} ]] && watched[$fd]=$readers
  done
  while kill -0 "$pid" 2>/dev/null; do
    for fd in "${!watched[@]}"; do
      # shellcheck disable=SC2086  # a list of PIDs
      if [[ -z $(pipe_readers "$fd" ${watched[$fd]}) ]]; then
        return 141
      fi
    done
    sleep 0.5 &
    wait $! || true
  done
  local status=0
  wait "$pid" || status=$?
  return "$status"
}

# ---------------------------------------------------------------------------------------------
# Waiting

# http_status URL: prints the HTTP status of GET URL (000 when nothing answers).
http_status() {
  if command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || printf '000'
  else
    node -e '
      fetch(process.argv[1], { signal: AbortSignal.timeout(2000) })
        .then((r) => console.log(r.status), () => console.log("000"));' "$1"
  fi
}

# wait_http URL TIMEOUT_SECONDS [PID]: waits until URL answers with a status below 500. Fails
# early when PID (the server being waited for) has exited.
wait_http() {
  _wait_http '^[1-4][0-9][0-9]$' "$@"
}

# wait_http_any URL TIMEOUT_SECONDS [PID]: like wait_http, but any HTTP answer will do.
wait_http_any() {
  _wait_http '^[1-5][0-9][0-9]$' "$@"
}

_wait_http() {
  local accept=$1 url=$2 timeout=$3 pid=${4:-} status=000
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    status=$(http_status "$url")
    if [[ $status =~ $accept ]]; then
      return 0
    fi
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      warn "the server behind $url exited before answering"
      return 1
    fi
    sleep 0.2
  done
  warn "$url did not answer within ${timeout}s (last status $status)"
  return 1
}

# wait_worker_ready URL TIMEOUT_SECONDS [PID]: waits until the Worker at URL answers its public
# health endpoint, GET URL/_tollgate/health, which consumes no rate limit and touches no cache
# (probing a gated path would spend the anonymous caller's quota). Any answer counts: a Worker
# with a broken policy still answers, and the user then sees why.
wait_worker_ready() {
  wait_http_any "$1/_tollgate/health" "$2" "${3:-}"
}

# random_hex BYTES: prints BYTES random bytes as hex.
random_hex() {
  od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
  printf '\n'
}
