# shellcheck shell=bash
# NodeMesh test process helpers, shared by the demo and the benchmark: background processes in
# the topology's namespaces, stopped by pid; the EXIT/INT/TERM cleanup; the two-node agent set-up.
#
# Usage (a library only; like topology.sh it changes no shell options):
#   source tests/netns/topology.sh; source tests/netns/procs.sh
#   WORK=$(mktemp -d ...) PREFIX=xyz$(rand_hex 3); procs_traps [HOOK]
#   bg NAME NS CMD...; wait_port NS PORT [ADDR] [SECONDS]; stop_pid PID; stop_all
#   mesh_ca_init; mesh_start_agents PODS SA_NS; mesh_wait_ready I PODS || die "$MESH_ERROR"
# The caller provides die MESSAGE, and WORK (temp dir, logs) and PREFIX (namespaces) before the
# first bg; the agent helpers also use NODEMESH (the binary) and TRUST_DOMAIN.

# rand_hex N: N random bytes as hex (unique namespace prefixes, markers).
rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# ---------------------------------------------------------------------------------------------
# Processes: every one is started here, remembered by pid, and stopped by pid, never by name
# (other sessions may run the same programs).

PIDS=()

# bg NAME NS CMD...: run CMD in namespace NS with its output in $WORK/NAME.log; pid in $BG_PID.
bg() {
    local name=$1 ns=$2
    shift 2
    ip netns exec "$ns" "$@" >"$WORK/$name.log" 2>&1 &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

# nginx_run NAME NS PORT LOCATION [HTTP_LINES] [CONNECTIONS]: one nginx worker in NS listening on PORT,
# its files in $WORK/NAME; LOCATION is the body of `location /`, HTTP_LINES more http-level directives
# (default: access_log off). The config is checked first (returns 1 if it is refused); the process
# is started with bg, its pid in BG_PID. The caller waits for the port.
nginx_run() {
    local name=$1 ns=$2 port=$3 location=$4 lines=${5:-access_log off;} conns=${6:-1024} dir=$WORK/$1
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $conns; }
http {
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    $lines
    server {
        listen $port;
        location / { $location }
    }
}
EOF
    ip netns exec "$ns" nginx -t -q -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" || return 1
    bg "$name" "$ns" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf"
}

# stop_pid PID: TERM, up to 5 s to exit, then KILL; reaped so it leaves no zombie.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
}

# wait_port NS PORT [ADDR] [SECONDS]: until something listens on PORT in NS (10 s by default);
# with ADDR only a listener on ADDR or on a wildcard address counts.
wait_port() {
    local ns=$1 port=$2 addr=${3:-} secs=${4:-10} re=. i
    [[ -z "$addr" ]] || re="($addr|\*|0\.0\.0\.0|\[::\]):$port"
    for ((i = 0; i < secs * 10; i++)); do
        if ip netns exec "$ns" ss -Hltn "sport = :$port" 2>/dev/null | grep -Eq "$re"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# Cleanup on exit, failure or Ctrl-C: every process, the PREFIX-* namespaces and $WORK go
# (KEEP=1 keeps $WORK).

PROCS_ON_EXIT=""

# procs_traps [HOOK]: install the cleanup. HOOK RC runs first, while everything still runs (to
# show logs, or stop a subshell in its own order); the rest is safe to repeat after it.
procs_traps() {
    PROCS_ON_EXIT=${1:-}
    trap procs_cleanup EXIT
    # Through exit, so that the EXIT trap does the cleanup once, with the conventional status.
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

procs_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # A failing hook must not cut the cleanup short.
    if [[ -n "$PROCS_ON_EXIT" ]]; then "$PROCS_ON_EXIT" "$rc" || true; fi
    stop_all
    [[ -n "${PREFIX:-}" ]] && topo_destroy "$PREFIX"
    if [[ -n "${WORK:-}" && -d "$WORK" ]] && ((!${KEEP:-0})); then rm -rf "$WORK"; fi
    exit "$rc"
}

# ---------------------------------------------------------------------------------------------
# Agents: one per node on a 2-node topology (topo_create PREFIX 2 PODS), pod n<i>p<j> at
# 10.240.<i>.<j+1> with identity spiffe://TRUST_DOMAIN/ns/SA_NS/sa/n<i>p<j>.

AGENT_PIDS=()

# agent_config I PODS SA_NS: node I's config - its pods local, the other node's pods remote.
agent_config() {
    local i=$1 pods=$2 sa=$3 k=$((3 - $1)) j sep
    printf '{\n  "node": { "name": "node%d", "address": "10.231.0.%d" },\n' "$i" "$i"
    printf '  "trustDomain": "%s",\n  "ca": { "dir": "%s" },\n' "$TRUST_DOMAIN" "$WORK/ca"
    printf '  "stateDir": "%s",\n  "apiSocket": "%s",\n' "$WORK/n$i/state" "$WORK/n$i/agent.sock"
    printf '  "workloads": [\n'
    for ((j = 1; j <= pods; j++)); do
        sep=$([[ $j == "$pods" ]] || echo ,)
        printf '    { "name": "n%dp%d", "ip": "10.240.%d.%d", "identity": "spiffe://%s/ns/%s/sa/n%dp%d", "netns": "/var/run/netns/%s-n%dp%d" }%s\n' \
            "$i" "$j" "$i" $((j + 1)) "$TRUST_DOMAIN" "$sa" "$i" "$j" "$PREFIX" "$i" "$j" "$sep"
    done
    printf '  ],\n  "nodes": [ { "name": "node%d", "address": "10.231.0.%d" } ],\n' "$k" "$k"
    printf '  "remoteWorkloads": [\n'
    for ((j = 1; j <= pods; j++)); do
        sep=$([[ $j == "$pods" ]] || echo ,)
        printf '    { "name": "n%dp%d", "ip": "10.240.%d.%d", "identity": "spiffe://%s/ns/%s/sa/n%dp%d", "node": "node%d" }%s\n' \
            "$k" "$j" "$k" $((j + 1)) "$TRUST_DOMAIN" "$sa" "$k" "$j" "$k" "$sep"
    done
    printf '  ]'
    # MESH_POLICIES: a JSON array of authorization policies for every agent (e.g. the demo's denial).
    if [[ -n "${MESH_POLICIES:-}" ]]; then printf ',\n  "policies": %s' "$MESH_POLICIES"; fi
    printf '\n}\n'
}

mesh_ca_init() {
    "$NODEMESH" ca init --dir "$WORK/ca" --trust-domain "$TRUST_DOMAIN" >"$WORK/ca-init.log" 2>&1 ||
        die "nodemesh ca init failed: $(cat "$WORK/ca-init.log")"
}

# mesh_start_agents PODS SA_NS: start both agents (pids in AGENT_PIDS, logs agent-n<i>.log); it
# does not wait, so that both start up at the same time.
mesh_start_agents() {
    local pods=$1 sa=$2 i
    AGENT_PIDS=()
    for i in 1 2; do
        mkdir -p "$WORK/n$i/state"
        agent_config "$i" "$pods" "$sa" >"$WORK/n$i.json"
        bg "agent-n$i" "$PREFIX-n$i" "$NODEMESH" run --config "$WORK/n$i.json"
        AGENT_PIDS+=("$BG_PID")
    done
}

# mesh_wait_ready I PODS: until node I's `workload list` answers and names its PODS pods (~15 s).
# Returns 1 with the reason in MESH_ERROR: each script words the failure (and its evidence) itself.
# shellcheck disable=SC2034 # MESH_ERROR is read by the caller
mesh_wait_ready() {
    local i=$1 pods=$2 out n j ok
    for ((n = 0; n < 150; n++)); do
        if ! kill -0 "${AGENT_PIDS[i - 1]}" 2>/dev/null; then
            MESH_ERROR="the node$i agent exited during start-up"
            return 1
        fi
        if out=$("$NODEMESH" workload list --socket "$WORK/n$i/agent.sock" 2>/dev/null); then
            ok=1
            for ((j = 1; j <= pods; j++)); do [[ "$out" == *"10.240.$i.$((j + 1))"* ]] || ok=0; done
            ((ok)) && return 0
        fi
        sleep 0.1
    done
    MESH_ERROR="the node$i agent is not ready after 15 s ('nodemesh workload list' does not list its pods)"
    return 1
}
