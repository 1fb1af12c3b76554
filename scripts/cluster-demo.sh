#!/usr/bin/env bash
# A Corral cluster on one machine, to try the cluster commands (make cluster-demo, -pause, -resume, -down).
#
#   bash scripts/cluster-demo.sh up|pause|resume|down|status      (as root, after make build)
#
# up:     PostgreSQL, `corral cluster init`, a controller, and three agents, each in a network namespace of its
#         own (corral-demo-h1..h3) linked to the controller by a veth on a bridge; prints the CORRAL_* exports.
# pause:  stops the controller and PostgreSQL (an outage); the agents and their VMs keep running.
# resume: starts them again and waits until the controller sees every host up.
# down:   kills everything it made (agents, their QEMUs, controller, PostgreSQL), deletes the namespaces, veths,
#         bridge and the state dir.
# status: what runs.
#
# Everything lives under one state dir (CORRAL_DEMO_DIR, default /var/lib/corral-demo): config.env (the settings
# below, fixed at the first `up`), env (the exports), pg/ (PostgreSQL's data and socket dir), controller/ (its data
# dir: token, cluster-ca.crt), h1/ h2/ h3/ (the agents' data dirs), base/ (the tiny image, built once), logs/, pids/.
# Settings (env, read at the first `up`): CORRAL_DEMO_BRIDGE (crldemo0), CORRAL_DEMO_NET (10.77.0: the first three
# numbers of a /24; the bridge is .1, the hosts .11 .12 .13), CORRAL_DEMO_NETNS (corral-demo: namespaces
# corral-demo-h1..h3), CORRAL_DEMO_PG_PORT (5499), CORRAL_DEMO_CONTROLLER_PORT (8443), CORRAL_DEMO_AGENT_PORT (8444),
# CORRAL_DEMO_TINY_FROM (a data dir whose images/tiny to copy instead of building one), CORRAL_PG_BIN.
# PostgreSQL trusts every connection from loopback and from the demo subnet (no password): for this demo only.
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLI_JS=$REPO/dist/src/cli/main.js
NODE=$(command -v node || true)
HOSTS=(h1 h2 h3)

die() { echo "cluster-demo: $*" >&2; exit 1; }
say() { echo "$*" >&2; }

DIR=${CORRAL_DEMO_DIR:-/var/lib/corral-demo}
[[ $DIR == /* ]] || die "CORRAL_DEMO_DIR must be an absolute path, not \"$DIR\""
DIR=$(realpath -m -- "$DIR")
[[ $DIR != / ]] || die "CORRAL_DEMO_DIR must not be /"

# Settings: those the demo was made with (config.env) win over the environment, so that pause, resume and down
# act on what up made.
if [[ -f $DIR/config.env ]]; then
  # shellcheck source=/dev/null
  source "$DIR/config.env"
fi
BRIDGE=${DEMO_BRIDGE:-${CORRAL_DEMO_BRIDGE:-crldemo0}}
NET=${DEMO_NET:-${CORRAL_DEMO_NET:-10.77.0}}
NETNS=${DEMO_NETNS:-${CORRAL_DEMO_NETNS:-corral-demo}}
PG_PORT=${DEMO_PG_PORT:-${CORRAL_DEMO_PG_PORT:-5499}}
CONTROLLER_PORT=${DEMO_CONTROLLER_PORT:-${CORRAL_DEMO_CONTROLLER_PORT:-8443}}
AGENT_PORT=${DEMO_AGENT_PORT:-${CORRAL_DEMO_AGENT_PORT:-8444}}

[[ $BRIDGE =~ ^[A-Za-z0-9_-]{1,13}$ ]] || die "CORRAL_DEMO_BRIDGE \"$BRIDGE\": 1 to 13 letters, digits, - or _ (its veths are BRIDGE + h1..h3)"
[[ $NET =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || die "CORRAL_DEMO_NET \"$NET\": the first three numbers of a /24, e.g. 10.77.0"
for n in "${BASH_REMATCH[@]:1}"; do ((10#$n <= 255)) || die "CORRAL_DEMO_NET \"$NET\": $n is over 255"; done
[[ $NETNS =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || die "CORRAL_DEMO_NETNS \"$NETNS\": letters, digits, ., - or _"
for p in "$PG_PORT" "$CONTROLLER_PORT" "$AGENT_PORT"; do
  [[ $p =~ ^[0-9]{1,5}$ ]] && ((10#$p >= 1 && 10#$p <= 65535)) || die "port \"$p\" is not a TCP port"
done

GATEWAY=$NET.1
CONTROLLER_URL=https://$GATEWAY:$CONTROLLER_PORT
DB_URL=postgres://postgres@127.0.0.1:$PG_PORT/corral
PGDATA=$DIR/pg/data
PGRUN=$DIR/pg/run
LOGS=$DIR/logs
PIDS=$DIR/pids

host_ip() { echo "$NET.1${1#h}"; }      # h1 -> NET.11
netns_of() { echo "$NETNS-$1"; }
veth_of() { echo "$BRIDGE$1"; }

# ---------------------------------------------------------------------------------------------------------------
# processes

# Is PID alive and one of this demo's: its command line or its CORRAL_DATA_DIR names the state dir.
ours() {
  local pid=$1
  [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] || return 1
  local text
  # (read first, then grep: with pipefail a grep -q that stops early could fail the pipe)
  text=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline") || true
  grep -qF -- "$DIR/" <<<"$text" && return 0
  text=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ") || true
  grep -qxF -e "CORRAL_DATA_DIR=$DIR/controller" -e "CORRAL_DATA_DIR=$DIR/h1" \
    -e "CORRAL_DATA_DIR=$DIR/h2" -e "CORRAL_DATA_DIR=$DIR/h3" -e "CORRAL_DATA_DIR=$DIR/base" <<<"$text"
}

# The pid in pids/NAME when that process is alive and ours; else nothing (and a failing status).
pid_of() {
  local f=$PIDS/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  ours "$pid" || return 1
  echo "$pid"
}

# Start a command detached (a session of its own, stdin from /dev/null, output appended to logs/NAME.log); its
# pid goes to pids/NAME.pid, written by the process itself before it execs the command (so it is the real one).
detach() {
  local name=$1
  shift
  rm -f "$PIDS/$name.pid"
  # shellcheck disable=SC2016
  setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$PIDS/$name.pid" "$@" \
    </dev/null >>"$LOGS/$name.log" 2>&1 &
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $PIDS/$name.pid ]] && return 0
    sleep 0.05
  done
  die "$name did not start (see $LOGS/$name.log)"
}

# SIGTERM a process, wait up to SECONDS for it to go, then SIGKILL it.
stop_pid() {
  local pid=$1 seconds=${2:-10} i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < seconds * 10; i++)); do
    [[ -e /proc/$pid ]] || return 0
    # a zombie is gone for our purposes
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

stop_named() {
  local pid
  if pid=$(pid_of "$1"); then stop_pid "$pid" "${2:-10}"; fi
  rm -f "$PIDS/$1.pid"
}

log_tail() { [[ -f $1 ]] && tail -n 30 "$1" | sed 's/^/    | /' >&2 || true; }

# ---------------------------------------------------------------------------------------------------------------
# PostgreSQL (as the postgres user: initdb and the server refuse to run as root)

pg_bin() {
  if [[ -n ${CORRAL_PG_BIN:-} ]]; then echo "$CORRAL_PG_BIN"; return; fi
  local v
  v=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sed 's|/usr/lib/postgresql/||; s|/.*||' | sort -n | tail -n 1)
  [[ -n $v ]] || die "no PostgreSQL server under /usr/lib/postgresql (scripts/host-deps.sh installs the Debian package postgresql), or set CORRAL_PG_BIN"
  echo "/usr/lib/postgresql/$v/bin"
}

as_pg() { (cd / && runuser -u postgres -- "$@"); }

pg_running() { [[ -f $PGDATA/PG_VERSION ]] && as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }

pg_start() {
  local bin
  bin=$(pg_bin)
  if pg_running; then say "    PostgreSQL already running"; return; fi
  touch "$LOGS/postgresql.log"
  chown postgres: "$LOGS/postgresql.log"
  if ! as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$LOGS/postgresql.log" -w -t 60 start </dev/null >>"$LOGS/postgresql.log" 2>&1; then
    log_tail "$LOGS/postgresql.log"
    die "PostgreSQL did not start (log: $LOGS/postgresql.log)"
  fi
}

pg_stop() {
  [[ -f $PGDATA/PG_VERSION ]] || return 0
  pg_running || return 0
  as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" -m "$1" -w -t 60 stop </dev/null >>"$LOGS/postgresql.log" 2>&1 || true
}

# ---------------------------------------------------------------------------------------------------------------
# the CLI

# corral against the demo's controller
ctl_cli() {
  CORRAL_URL=$CONTROLLER_URL CORRAL_TOKEN=$(<"$DIR/controller/token") CORRAL_TLS_CA=$DIR/controller/cluster-ca.crt \
    "$NODE" "$CLI_JS" "$@"
}

# Does the agent's API (its unix socket) answer?
agent_answers() {
  [[ -S $DIR/$1/corral.sock ]] || return 1
  "$NODE" -e '
    const req = require("node:http").request({ socketPath: process.argv[1], path: "/v1/pool", timeout: 5000 }, (res) => process.exit(res.statusCode === 200 ? 0 : 1));
    req.on("error", () => process.exit(1)); req.on("timeout", () => process.exit(1)); req.end();' "$DIR/$1/corral.sock"
}

# The hosts the controller lists as up, one name a line.
hosts_up() {
  ctl_cli host list --json 2>/dev/null | "$NODE" -e '
    let s = ""; process.stdin.on("data", (d) => { s += d; }).on("end", () => {
      for (const h of JSON.parse(s)) if (h.state === "up") console.log(h.name);
    });'
}

wait_hosts_up() {
  local i up missing=()
  for ((i = 0; i < 120; i++)); do
    up=$(hosts_up || true)
    missing=()
    for h in "${HOSTS[@]}"; do grep -qx "$h" <<<"$up" || missing+=("$h"); done
    ((${#missing[@]} == 0)) && return 0
    sleep 0.5
  done
  die "the controller does not list ${missing[*]} as up after 60 s (logs: $LOGS/)"
}

exports() {
  local token
  token=$(<"$DIR/controller/token")
  {
    echo "export CORRAL_URL=$CONTROLLER_URL"
    echo "export CORRAL_TOKEN=$token"
    echo "export CORRAL_TLS_CA=$DIR/controller/cluster-ca.crt"
  } >"$DIR/env.tmp"
  chmod 600 "$DIR/env.tmp"
  mv "$DIR/env.tmp" "$DIR/env"
  say ""
  say "The demo cluster is up: a controller at $CONTROLLER_URL, hosts ${HOSTS[*]} in namespaces $(netns_of h1)..h3."
  say "Point the CLI at it (or: source $DIR/env):"
  say ""
  cat "$DIR/env"
}

# ---------------------------------------------------------------------------------------------------------------
# up

need_root_and_build() {
  ((EUID == 0)) || die "run as root (namespaces, a bridge, PostgreSQL as the postgres user)"
  [[ -n $NODE ]] || die "node is not installed (make build)"
  [[ -f $CLI_JS ]] || die "$CLI_JS is missing: run make build first"
}

is_up() {
  pg_running && pid_of controller >/dev/null || return 1
  for h in "${HOSTS[@]}"; do pid_of "$h" >/dev/null || return 1; done
}

net_up() {
  local h ns veth other
  # the subnet must be ours alone
  other=$(ip -4 -o addr show to "$NET.0/24" | awk -v b="$BRIDGE" '$2 != b {print $2 " " $4}')
  [[ -z $other ]] || die "$NET.0/24 is in use on this host ($other): pick another with CORRAL_DEMO_NET"
  if ! ip link show dev "$BRIDGE" >/dev/null 2>&1; then
    ip link add name "$BRIDGE" type bridge
  fi
  ip addr replace "$GATEWAY/24" dev "$BRIDGE"
  ip link set dev "$BRIDGE" up
  for h in "${HOSTS[@]}"; do
    ns=$(netns_of "$h")
    veth=$(veth_of "$h")
    [[ -e /run/netns/$ns ]] || ip netns add "$ns"
    ip -n "$ns" link set lo up
    if ! ip link show dev "$veth" >/dev/null 2>&1; then
      ip -n "$ns" link del eth0 2>/dev/null || true
      ip link add name "$veth" type veth peer name eth0 netns "$ns"
    fi
    ip link set dev "$veth" master "$BRIDGE" up
    ip -n "$ns" addr replace "$(host_ip "$h")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route replace default via "$GATEWAY"
  done
}

# Copy the tiny image of data dir FROM into data dir TO (the image's file paths rewritten to the copies).
install_image() {
  local from=$1/images/tiny to=$2/images/tiny
  mkdir -p "$2/images"
  rm -rf "$to.tmp"
  cp -a "$from" "$to.tmp"
  "$NODE" -e '
    const fs = require("node:fs"), path = require("node:path");
    const [dir, final] = process.argv.slice(1);
    const meta = JSON.parse(fs.readFileSync(path.join(dir, "image.json"), "utf8"));
    for (const k of Object.keys(meta)) {
      const v = meta[k];
      if (typeof v === "string" && v.startsWith("/") && fs.existsSync(path.join(dir, path.basename(v)))) meta[k] = path.join(final, path.basename(v));
    }
    fs.writeFileSync(path.join(dir, "image.json"), JSON.stringify(meta, null, 2) + "\n");' "$to.tmp" "$to"
  rm -rf "$to"
  mv "$to.tmp" "$to"
}

tiny_up() {
  if [[ ! -f $DIR/base/images/tiny/image.json ]]; then
    if [[ -n ${CORRAL_DEMO_TINY_FROM:-} ]]; then
      [[ -f $CORRAL_DEMO_TINY_FROM/images/tiny/image.json ]] || die "CORRAL_DEMO_TINY_FROM=$CORRAL_DEMO_TINY_FROM holds no images/tiny"
      say "    copying it from $CORRAL_DEMO_TINY_FROM"
      install_image "$CORRAL_DEMO_TINY_FROM" "$DIR/base"
    else
      say "    building it once (log: $LOGS/build-tiny.log)"
      if ! CORRAL_DATA_DIR=$DIR/base "$NODE" "$REPO/dist/src/daemon/build-tiny.js" </dev/null >>"$LOGS/build-tiny.log" 2>&1; then
        log_tail "$LOGS/build-tiny.log"
        die "building the tiny image failed (log: $LOGS/build-tiny.log)"
      fi
    fi
  fi
  for h in "${HOSTS[@]}"; do
    [[ -f $DIR/$h/images/tiny/image.json ]] || install_image "$DIR/base" "$DIR/$h"
  done
}

postgres_up() {
  local bin
  bin=$(pg_bin)
  if [[ ! -f $PGDATA/PG_VERSION ]]; then
    rm -rf "$DIR/pg"
    mkdir -p "$PGDATA" "$PGRUN"
    chown -R postgres: "$DIR/pg"
    chmod 700 "$DIR/pg" "$PGDATA"
    as_pg "$bin/initdb" -D "$PGDATA" -A trust -U postgres -E UTF8 --no-instructions >>"$LOGS/initdb.log" 2>&1 ||
      { log_tail "$LOGS/initdb.log"; die "initdb failed (log: $LOGS/initdb.log)"; }
    as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null <<EOF

# the Corral cluster demo (scripts/cluster-demo.sh)
listen_addresses = '127.0.0.1,$GATEWAY'
port = $PG_PORT
unix_socket_directories = '$PGRUN'
max_connections = 100
shared_buffers = 32MB
EOF
    # trust, no password: for this demo only, and only from loopback and the demo's subnet
    as_pg tee "$PGDATA/pg_hba.conf" >/dev/null <<EOF
# the Corral cluster demo: trust (no password) from loopback and $NET.0/24 only; never do this on a real cluster
local all         all                trust
host  all         all 127.0.0.1/32   trust
host  all         all $NET.0/24  trust
EOF
  fi
  pg_start
  if ! as_pg "$bin/psql" -h "$PGRUN" -p "$PG_PORT" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'corral'" | grep -qx 1; then
    as_pg "$bin/createdb" -h "$PGRUN" -p "$PG_PORT" corral
  fi
}

# Start the controller (if it is not running) and wait until it listens.
controller_start() {
  if pid_of controller >/dev/null; then say "    controller already running"; return; fi
  local log=$LOGS/controller.log from pid i
  touch "$log"
  from=$(($(stat -c %s "$log") + 1))
  CORRAL_DATA_DIR=$DIR/controller CORRAL_LOG_LEVEL=info detach controller \
    "$NODE" "$CLI_JS" controller --database "$DB_URL" --listen "$GATEWAY:$CONTROLLER_PORT"
  pid=$(<"$PIDS/controller.pid")
  for ((i = 0; i < 300; i++)); do
    grep -q 'corral controller listening' < <(tail -c +"$from" "$log") && return 0
    if [[ ! -e /proc/$pid ]]; then
      tail -c +"$from" "$log" | tail -n 20 | sed 's/^/    | /' >&2
      die "the controller exited (log: $log)"
    fi
    sleep 0.1
  done
  die "the controller did not listen within 30 s (log: $log)"
}

controller_up() {
  if [[ ! -f $DIR/cluster.json ]]; then
    if ! CORRAL_DATA_DIR=$DIR/controller "$NODE" "$CLI_JS" cluster init --database "$DB_URL" --json >"$DIR/cluster.json.tmp" 2>"$LOGS/cluster-init.log"; then
      log_tail "$LOGS/cluster-init.log"
      die "corral cluster init failed (a half-made demo: make cluster-demo-down, then make cluster-demo)"
    fi
    chmod 600 "$DIR/cluster.json.tmp"
    mv "$DIR/cluster.json.tmp" "$DIR/cluster.json"
  fi
  controller_start
}

agents_up() {
  local h ns token args pid i
  local started=()
  for h in "${HOSTS[@]}"; do
    if pid_of "$h" >/dev/null; then say "    $h already running"; continue; fi
    ns=$(netns_of "$h")
    # the shared pool: one directory every host sees, as an NFS mount would be on real hosts (--pool shared, --ha)
    mkdir -p "$DIR/shared"
    chmod 711 "$DIR" "$DIR/shared"
    args=(--name "$h" --listen "$(host_ip "$h"):$AGENT_PORT" --shared-pool "$DIR/shared")
    if [[ ! -f $DIR/$h/cluster/cluster.json ]]; then
      # a single-use token for this host, from the controller
      token=$(ctl_cli cluster join-token --json | "$NODE" -e 'let s = ""; process.stdin.on("data", (d) => { s += d; }).on("end", () => console.log(JSON.parse(s).token))')
      [[ -n $token ]] || die "no join token from the controller"
      args=(--join "$CONTROLLER_URL" --token "$token" "${args[@]}")
    fi
    # nsenter enters only the network namespace (ip netns exec would also remount /sys without the cgroups)
    CORRAL_DATA_DIR=$DIR/$h CORRAL_LOG_LEVEL=info detach "$h" nsenter "--net=/run/netns/$ns" -- "$NODE" "$CLI_JS" agent "${args[@]}"
    started+=("$h")
  done
  for h in "${started[@]}"; do
    pid=$(<"$PIDS/$h.pid")
    for ((i = 0;; i++)); do
      agent_answers "$h" && break
      if [[ ! -e /proc/$pid ]]; then log_tail "$LOGS/$h.log"; die "agent $h exited (log: $LOGS/$h.log)"; fi
      ((i < 120)) || die "agent $h does not answer on $DIR/$h/corral.sock after 60 s (log: $LOGS/$h.log)"
      sleep 0.5
    done
  done
}

cmd_up() {
  need_root_and_build
  if [[ -f $DIR/config.env ]] && is_up; then
    say "The demo cluster is already up ($DIR)."
    exports
    return
  fi
  if [[ -e $DIR && ! -f $DIR/config.env && -n $(ls -A "$DIR") ]]; then
    die "$DIR is not empty and holds no demo (no config.env): pick another CORRAL_DEMO_DIR"
  fi
  mkdir -p "$DIR"
  # QEMU's user and postgres must be able to reach their dirs under it
  chmod 755 "$DIR"
  if [[ ! -f $DIR/config.env ]]; then
    cat >"$DIR/config.env" <<EOF
# the settings this demo was made with (scripts/cluster-demo.sh)
DEMO_BRIDGE=$BRIDGE
DEMO_NET=$NET
DEMO_NETNS=$NETNS
DEMO_PG_PORT=$PG_PORT
DEMO_CONTROLLER_PORT=$CONTROLLER_PORT
DEMO_AGENT_PORT=$AGENT_PORT
EOF
  fi
  mkdir -p "$LOGS" "$PIDS"
  # logs and pids are root's; postgres only needs to reach its own log file in logs/
  chmod 711 "$LOGS" "$PIDS"
  say "[1/6] network: bridge $BRIDGE ($GATEWAY/24), namespaces $(netns_of h1)..h3 with veths ($NET.11-13)"
  net_up
  say "[2/6] tiny guest image for each host"
  tiny_up
  say "[3/6] PostgreSQL on 127.0.0.1:$PG_PORT and $GATEWAY:$PG_PORT (data: $PGDATA)"
  postgres_up
  say "[4/6] cluster CA and controller on $CONTROLLER_URL (data: $DIR/controller)"
  controller_up
  say "[5/6] agents ${HOSTS[*]} (API on $NET.11-13:$AGENT_PORT and $DIR/hN/corral.sock)"
  agents_up
  say "[6/6] waiting for the controller to list ${HOSTS[*]} as up"
  wait_hosts_up
  exports
}

# ---------------------------------------------------------------------------------------------------------------
# pause, resume

need_demo() {
  [[ -f $DIR/config.env ]] || die "no demo at $DIR (make cluster-demo makes one)"
}

cmd_pause() {
  need_root_and_build
  need_demo
  say "[1/2] controller: stopping"
  stop_named controller 15
  say "[2/2] PostgreSQL: stopping"
  pg_stop fast
  say "Paused: the agents and their VMs keep running; make cluster-demo-resume starts the controller and PostgreSQL again."
}

cmd_resume() {
  need_root_and_build
  need_demo
  say "[1/3] PostgreSQL: starting"
  pg_start
  say "[2/3] controller: starting on $CONTROLLER_URL"
  controller_start
  say "[3/3] waiting for the controller to list ${HOSTS[*]} as up"
  wait_hosts_up
  exports
}

# ---------------------------------------------------------------------------------------------------------------
# down

# Kill the QEMUs (and qemu-storage-daemons) of an agent's data dir, by their pid files.
kill_vms() {
  local run=$DIR/$1/run f pid
  [[ -d $run ]] || return 0
  for f in "$run"/*/qemu.pid "$run"/*/vu-*.pid; do
    [[ -f $f ]] || continue
    pid=$(tr -dc 0-9 <"$f")
    if [[ -n $pid ]] && ours "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
}

# pids of this script and the processes above it (never to be swept)
ancestors() {
  local p=$$
  while [[ $p =~ ^[0-9]+$ ]] && ((p > 1)); do
    echo "$p"
    p=$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null || echo 0)
  done
}

# Every process still alive that is the demo's (by its command line or data dir), but not this script's line.
leftovers() {
  local mine p pid
  mine=$(ancestors)
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    grep -qx "$pid" <<<"$mine" && continue
    [[ $(awk '{print $3}' "$p/stat" 2>/dev/null) == Z ]] && continue
    ours "$pid" && echo "$pid"
  done
  return 0
}

cmd_down() {
  ((EUID == 0)) || die "run as root"
  local h ns veth pid pids
  say "[1/6] agents: stopping ${HOSTS[*]}"
  for h in "${HOSTS[@]}"; do stop_named "$h" 10; done
  say "[2/6] their VMs: killing each QEMU (run/*/qemu.pid)"
  for h in "${HOSTS[@]}"; do kill_vms "$h"; done
  say "[3/6] controller: stopping"
  stop_named controller 10
  say "[4/6] PostgreSQL: stopping"
  if [[ -f $PGDATA/PG_VERSION ]] && [[ -d /usr/lib/postgresql || -n ${CORRAL_PG_BIN:-} ]]; then pg_stop immediate; fi
  say "[5/6] network: namespaces $(netns_of h1)..h3, veths, bridge $BRIDGE"
  for h in "${HOSTS[@]}"; do
    ns=$(netns_of "$h")
    veth=$(veth_of "$h")
    if [[ -e /run/netns/$ns ]]; then
      # whatever still runs in there (a dnsmasq of a host's network, a QEMU without a pid file)
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
    ip link del dev "$veth" 2>/dev/null || true
  done
  ip link del dev "$BRIDGE" 2>/dev/null || true
  say "[6/6] leftover processes and the state dir $DIR"
  pids=$(leftovers)
  if [[ -n $pids ]]; then
    say "    killing leftovers: $(echo "$pids" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.5
  fi
  if [[ -e $DIR ]]; then
    if [[ -f $DIR/config.env || -z $(ls -A "$DIR") ]]; then
      rm -rf --one-file-system -- "$DIR"
    else
      say "    left $DIR in place: it holds no config.env, so it is not a demo's"
    fi
  fi
  say "The demo cluster is gone."
}

# ---------------------------------------------------------------------------------------------------------------
# status

cmd_status() {
  ((EUID == 0)) || die "run as root"
  if [[ ! -f $DIR/config.env ]]; then echo "no demo at $DIR"; return 0; fi
  local h pid
  echo "demo at $DIR"
  if ip link show dev "$BRIDGE" >/dev/null 2>&1; then echo "  bridge      $BRIDGE $GATEWAY/24"; else echo "  bridge      $BRIDGE missing"; fi
  if pg_running; then echo "  postgresql  running on 127.0.0.1:$PG_PORT, $GATEWAY:$PG_PORT"; else echo "  postgresql  stopped"; fi
  if pid=$(pid_of controller); then echo "  controller  running (pid $pid) on $CONTROLLER_URL"; else echo "  controller  stopped"; fi
  for h in "${HOSTS[@]}"; do
    if pid=$(pid_of "$h"); then echo "  agent $h    running (pid $pid) in $(netns_of "$h"), $(host_ip "$h"):$AGENT_PORT"; else echo "  agent $h    stopped"; fi
  done
  if pid_of controller >/dev/null && [[ -f $DIR/controller/token ]]; then
    echo
    ctl_cli host list || true
  fi
}

case ${1:-} in
  up) cmd_up ;;
  pause) cmd_pause ;;
  resume) cmd_resume ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) die "usage: $0 up|pause|resume|down|status" ;;
esac
