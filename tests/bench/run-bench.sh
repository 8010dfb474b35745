#!/usr/bin/env bash
# NodeMesh benchmark: the same client/server load over four paths between pod n1p1 (node1) and
# pod n2p1 (node2), each on a freshly built topology with fresh servers:
#   direct    plain TCP routed by the nodes (no mesh, no encryption) - the floor
#   nodemesh  one agent per node, pods captured transparently, mTLS tunnel between the agents
#   telemetry nodemesh again with OTLP export of metrics, traces and logs on (no idle connections)
#   haproxy   one haproxy per node doing the same mTLS 1.3 hop (client certificate required
#             and verified); the client connects to node1's haproxy directly (no capture)
# Load: iperf3 1 and 8 streams, wrk keep-alive (req/s, p50, p99) and wrk with
# "Connection: close" (new connections per second) against nginx in n2p1; for the proxies also
# CPU seconds per GB moved (over the iperf runs), peak RSS (VmHWM) idle and after the load, and
# what idle connections cost them: 5,000 connections to nginx that send nothing (idle-conns.py in
# n1p1), current RSS (VmRSS) before, while held (-> KiB per connection) and 60 s after they close
# (10 s with --quick; -> MiB not given back).
# The gateway (an API gateway's job: HTTP from outside, ext, through a reverse proxy on node1 to the
# same nginx in n2p1), four ways, each on a fresh topology:
#   gw_nodemesh        NodeMesh's gateway (node1's agent, access log off) routing to the mesh service
#                      web (endpoint n2p1): through the node1 -> node2 mTLS tunnel, node2's agent delivers
#   gw_nodemesh_plain  the same gateway to n2p1's plain address (no tunnel): the same work as these two:
#   gw_nginx           nginx reverse proxy in node1 (plain HTTP, upstream keepalive 64)
#   gw_haproxy         haproxy in node1 (mode http, plain HTTP, http-reuse always)
# Load: wrk keep-alive -t2 -c64 (HTTP/1.1) and h2load -c16 -m10 (HTTP/2 cleartext, prior knowledge):
# req/s (h2load: succeeded) and p99 (h2load: from its per-request log), proxy CPU per request, peak
# RSS; NodeMesh/nginx ratios against the issue's targets (req/s >= nginx's, p99 <= 1.5x nginx's).
# Then the tunnel protocol microbench (tests/NodeMesh.Bench, needs the .NET SDK): the agent's own
# tunnel protocol against Nerdbank.Streams' MultiplexingStream, in one process over loopback TLS 1.3
# at equal 1 MiB stream windows (1 and 8 streams, 64-byte round trips, memory), reported apart.
# And the registry (once, after the rounds): on etcd-server in ext, the time from `nodemesh workload add`
# on node2 to the first encrypted flow from n1p1 to it (5 times, median); then, in process (NodeMesh.Bench
# registry), the agent's etcd source with 10,000 workloads: first sync, memory held, one change's time.
#
# Usage: tests/bench/run-bench.sh [--nodemesh PATH] [--quick] [--out FILE] [--haproxy-threads N] [--only LIST] [--rounds N] [--perf DIR]
#   --nodemesh PATH       agent binary (default: artifacts/bin/nodemesh; column is n/a if missing)
#   --quick               3 s per measurement instead of 10 s (microbench: 3 runs of 2 s, not 5 of 5 s;
#                         idle connections: RSS 10 s after they close, not 60 s)
#   --out FILE            also write the results as a markdown table to FILE
#   --haproxy-threads N   set haproxy's nbthread, the gateway's haproxy too (default: haproxy's own, one per CPU)
#   --only LIST           run only these of direct,nodemesh,telemetry,haproxy,gateway,microbench,registry
#                         (comma-separated; telemetry is nodemesh's runs with OTLP export on, to show what
#                         telemetry costs; gateway is its four variants)
#   --rounds N            run the scenarios N times (default 3, 1 with --quick), each round every scenario
#                         once on fresh topologies, the order reversed every other round; the table shows
#                         medians, the ratios are medians of each round's own ratios (this machine's speed
#                         drifts by 20 % within minutes: a ratio of two runs minutes apart is mostly drift).
#                         Idle connections are measured in the first round only.
#   --perf DIR            profile the gateway's agent with perf (perf record -g, 499 Hz) during its wrk and
#                         h2load runs: DIR/<variant>-h1.data and -h2.data, for `perf report -i`. The Native AOT
#                         binary keeps its symbols, so managed frames show by name. Costs the figures a little.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../netns/topology.sh
source "$SCRIPT_DIR/../netns/topology.sh"
# bg, stop_pid, stop_all, wait_port, rand_hex, the cleanup traps and the agent start-up.
# shellcheck source-path=SCRIPTDIR source=../netns/procs.sh
source "$SCRIPT_DIR/../netns/procs.sh"

NODEMESH=$REPO_DIR/artifacts/bin/nodemesh
QUICK=0
OUT=""
HAPROXY_THREADS=""
ONLY="direct,nodemesh,telemetry,haproxy,gateway,microbench,registry"
ROUNDS=""
PERF_DIR=""

# Fixed by the topology (2 nodes x 1 pod).
SERVER_IP=10.240.2.2
NODE2_IP=10.231.0.2
POD_GW1=10.240.1.1
IPERF_PORT=5201
HTTP_PORT=8080
# nginx's answer in n2p1 (the gateway scenario checks each proxy returns it).
HTTP_BODY="nodemesh bench: small body 0123456789abcdef"
OTLP_SINK_PORT=4318
# haproxy: plain frontends on node1 (pod side), TLS listeners on node2 (lan side), one per service.
HA_IPERF_FRONT=15101
HA_HTTP_FRONT=15180
HA_IPERF_TLS=15443
HA_HTTP_TLS=15444
TRUST_DOMAIN=cluster.local
# Idle connections opened to nginx through each proxy (issue #11's memory targets are for 5,000).
IDLE_CONNS=5000

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf '[bench] ERROR: %s\n' "$*" >&2
    exit 1
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

parse_args() {
    while (($# > 0)); do
        case "$1" in
        --nodemesh)
            NODEMESH=${2:?--nodemesh needs a path}
            shift 2
            ;;
        --quick)
            QUICK=1
            shift
            ;;
        --out)
            OUT=${2:?--out needs a file}
            shift 2
            ;;
        --haproxy-threads)
            HAPROXY_THREADS=${2:?--haproxy-threads needs a number}
            [[ "$HAPROXY_THREADS" =~ ^[1-9][0-9]*$ ]] || die "--haproxy-threads: not a number"
            shift 2
            ;;
        --perf)
            PERF_DIR=${2:?--perf needs a directory}
            command -v perf >/dev/null 2>&1 || die "--perf: perf is not installed (Debian's linux-perf)"
            mkdir -p "$PERF_DIR"
            PERF_DIR=$(cd "$PERF_DIR" && pwd)
            shift 2
            ;;
        --only)
            ONLY=${2:?--only needs a list}
            [[ "$ONLY" =~ ^(direct|nodemesh|telemetry|haproxy|gateway|microbench|registry)(,(direct|nodemesh|telemetry|haproxy|gateway|microbench|registry))*$ ]] ||
                die "--only: a comma-separated list of direct, nodemesh, telemetry, haproxy, gateway, microbench, registry"
            shift 2
            ;;
        --rounds)
            ROUNDS=${2:?--rounds needs a number}
            [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds: not a number"
            shift 2
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown argument: $1"
            ;;
        esac
    done
    if ((QUICK)); then DURATION=3; else DURATION=10; fi
    if [[ -z "$ROUNDS" ]]; then if ((QUICK)); then ROUNDS=1; else ROUNDS=3; fi; fi
}

check_tools() {
    local t missing=()
    for t in ip iptables iperf3 wrk nginx haproxy openssl curl ss awk python3 pgrep; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    if wanted gateway; then command -v h2load >/dev/null 2>&1 || missing+=(h2load); fi
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} - run ./build.sh deps"
    [[ $EUID -eq 0 ]] || die "must run as root (network namespaces)"
}

# ---------------------------------------------------------------------------------------------
# Cleanup (procs.sh). Every process this script starts runs inside one of its own namespaces;
# topo_destroy also ends anything left in them, by pid.

# on_exit RC: runs before the common cleanup. A scenario still running (interrupted) is stopped
# with everything it started in the namespaces: it can only run its own EXIT trap once its
# foreground command has been ended by topo_destroy. Stopping and destroying again is a no-op.
on_exit() {
    [[ -n "${SCENARIO_PID:-}" ]] || return 0
    kill -TERM "$SCENARIO_PID" 2>/dev/null || true
    stop_all
    topo_destroy "$PREFIX"
    stop_pid "$SCENARIO_PID"
}

# ---------------------------------------------------------------------------------------------
# Servers in n2p1 and the measurements (same commands for every scenario).

start_servers() {
    local ns=$PREFIX-n2p1
    bg iperf3-server "$ns" iperf3 -s -p "$IPERF_PORT"
    start_http_server
    wait_port "$ns" "$IPERF_PORT" "$SERVER_IP" || die "iperf3 server did not start: $(cat "$WORK/iperf3-server.log")"
}

# start_http_server: nginx in n2p1 on HTTP_PORT (every HTTP figure is against this one), until it listens.
start_http_server() {
    local ns=$PREFIX-n2p1 dir=$WORK/nginx
    # A small body; huge keepalive_requests so wrk's keep-alive connections are never recycled. A
    # connection that has sent nothing is closed after client_header_timeout (60 s by default): the
    # idle connections of measure_idle must stay open however long their connects take.
    nginx_run nginx "$ns" "$HTTP_PORT" "default_type text/plain; return 200 \"$HTTP_BODY\\n\";" \
        'access_log off; keepalive_requests 100000000; keepalive_timeout 75s; client_header_timeout 5m;' 8192 ||
        die "nginx config test failed (see above)"
    wait_port "$ns" "$HTTP_PORT" "$SERVER_IP" || die "nginx did not start: $(cat "$WORK/nginx.log" "$dir/error.log" 2>/dev/null)"
}

# run_iperf HOST PORT STREAMS: prints "BITS_PER_SECOND BYTES" (receiver side).
run_iperf() {
    local host=$1 port=$2 streams=$3 json out
    json=$WORK/iperf-$streams.json
    if ! timeout $((DURATION + 30)) ip netns exec "$PREFIX-n1p1" \
        iperf3 -c "$host" -p "$port" -P "$streams" -t "$DURATION" --connect-timeout 5000 -J >"$json" 2>&1; then
        die "iperf3 -P $streams to $host:$port failed: $(grep -m1 '"error"' "$json" || tail -3 "$json")"
    fi
    # iperf3's JSON is one key per line: take bytes and bits_per_second of end.sum_received.
    out=$(awk '/"sum_received"/ { s = 1 }
        s && /"bytes"/ { gsub(/[^0-9.]/, "", $2); b = $2 }
        s && /"bits_per_second"/ { gsub(/[^0-9.eE+]/, "", $2); r = $2 }
        s && /}/ { print r, b; exit }' "$json")
    [[ "$out" =~ ^[0-9.eE+]+\ [0-9]+$ ]] || die "cannot parse iperf3 output ($json)"
    echo "$out"
}

# run_wrk URL [close]: prints "REQ_PER_S P50_MS P99_MS ERRORS REQUESTS". From n1p1 with 32
# connections, or from WRK_NS with WRK_CONNS.
run_wrk() {
    local url=$1 mode=${2:-} out
    local -a extra=()
    [[ "$mode" == close ]] && extra=(-H 'Connection: close')
    if ! out=$(timeout $((DURATION + 30)) ip netns exec "${WRK_NS:-$PREFIX-n1p1}" \
        wrk --latency -t2 -c"${WRK_CONNS:-32}" -d"${DURATION}s" "${extra[@]}" "$url" 2>&1); then
        die "wrk $url failed: $out"
    fi
    printf '%s\n' "$out" >>"$WORK/wrk.log"
    awk 'function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /s$/) return v * 1000
            return v + 0 }
        /Requests\/sec:/ { rps = $2 }
        / requests in / { n = $1 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { err += $NF }
        END { if (rps == "") exit 1; printf "%s %s %s %d %d\n", rps, p50, p99, err, n }' <<<"$out" ||
        die "cannot parse wrk output: $out"
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# sum_over FUNC PID...: sum of FUNC over the processes.
sum_over() {
    local f=$1 pid total=0 v
    shift
    for pid in "$@"; do
        v=$("$f" "$pid") || die "process $pid is gone"
        total=$((total + v))
    done
    echo "$total"
}

# record SCENARIO KEY VALUE: results survive the scenario's subshell through a file.
record() { printf '%s.%s=%s\n' "$1" "$2" "$3" >>"$RESULTS"; }

# measure SCENARIO IPERF_HOST IPERF_PORT HTTP_URL [PROXY_PID...]: with proxies also their idle
# connections (measure_idle) to HTTP_URL's host and port.
measure() {
    local scen=$1 host=$2 port=$3 url=$4 t0 t1 r1 r8 w hz out kib idle_host idle_port
    shift 4
    idle_host=${url#http://} idle_host=${idle_host%%/*}
    idle_port=${idle_host##*:} idle_host=${idle_host%:*}
    local -a procs=("$@")
    hz=$(getconf CLK_TCK)
    if ((${#procs[@]} > 0)); then
        kib=$(sum_over hwm_kib "${procs[@]}")
        record "$scen" rss_idle_mib "$(mib "$kib")"
        t0=$(sum_over cpu_ticks "${procs[@]}")
    fi
    log "$scen: iperf3 1 stream, ${DURATION}s"
    out=$(run_iperf "$host" "$port" 1)
    read -r -a r1 <<<"$out"
    log "$scen: iperf3 8 streams, ${DURATION}s"
    out=$(run_iperf "$host" "$port" 8)
    read -r -a r8 <<<"$out"
    # A scenario may look at its proxies right after the bulk runs (before wrk adds thousands of flows).
    if [[ -n "${AFTER_IPERF:-}" ]]; then "$AFTER_IPERF"; fi
    record "$scen" iperf1_gbps "$(awk -v b="${r1[0]}" 'BEGIN { printf "%.2f", b / 1e9 }')"
    record "$scen" iperf8_gbps "$(awk -v b="${r8[0]}" 'BEGIN { printf "%.2f", b / 1e9 }')"
    if ((${#procs[@]} > 0)); then
        t1=$(sum_over cpu_ticks "${procs[@]}")
        record "$scen" cpu_s_per_gb "$(awk -v t=$((t1 - t0)) -v hz="$hz" -v b1="${r1[1]}" -v b8="${r8[1]}" \
            'BEGIN { printf "%.2f", (t / hz) / ((b1 + b8) / 1e9) }')"
    fi
    measure_wrk "$scen" "$url"
    if ((${#procs[@]} > 0)); then
        kib=$(sum_over hwm_kib "${procs[@]}")
        record "$scen" rss_load_mib "$(mib "$kib")"
        if ((MEASURE_IDLE)); then measure_idle "$scen" "$idle_host" "$idle_port" "${procs[@]}"; fi
    fi
}

# measure_wrk SCENARIO HTTP_URL: wrk keep-alive, then wrk with Connection: close.
measure_wrk() {
    local scen=$1 url=$2 out
    local -a w
    log "$scen: wrk keep-alive -t2 -c32, ${DURATION}s"
    out=$(run_wrk "$url")
    read -r -a w <<<"$out"
    record "$scen" ka_rps "$(printf '%.0f' "${w[0]}")"
    record "$scen" ka_p50_ms "$(printf '%.3f' "${w[1]}")"
    record "$scen" ka_p99_ms "$(printf '%.3f' "${w[2]}")"
    record "$scen" ka_errors "${w[3]}"
    log "$scen: wrk Connection: close -t2 -c32, ${DURATION}s"
    out=$(run_wrk "$url" close)
    read -r -a w <<<"$out"
    record "$scen" cc_rps "$(printf '%.0f' "${w[0]}")"
    record "$scen" cc_p99_ms "$(printf '%.3f' "${w[2]}")"
    record "$scen" cc_errors "${w[3]}"
}

# idle_line PREFIX: the first line of the idle client's output starting with PREFIX, waiting
# while the client runs (up to 300 s: 5,000 connects, 200 at a time, into a black hole time out
# after 250 s); empty if it never came.
idle_line() {
    local prefix=$1 i line
    for ((i = 0; i < 3000; i++)); do
        line=$(grep -m1 "^$prefix " "$WORK/idle-conns.log" || true)
        if [[ -n "$line" ]] || ! kill -0 "$IDLE_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    [[ -n "$line" ]] || line=$(grep -m1 "^$prefix " "$WORK/idle-conns.log" || true)
    echo "$line"
}

# server_conns: connections nginx in n2p1 has established now.
server_conns() { ip netns exec "$PREFIX-n2p1" ss -Htn state established "sport = :$HTTP_PORT" | wc -l; }

# measure_idle SCENARIO HOST PORT PROXY_PID...: IDLE_CONNS connections from n1p1 to HOST:PORT
# (nginx through the proxies) that send nothing. The proxies' current RSS (VmRSS, summed) before,
# while the connections are held and a while after they are closed gives the KiB per idle
# connection (over the connections held) and the memory not given back. The counts (connected,
# failed, closed by the far end, seen by nginx) and any failure of the client are recorded too,
# so that the report shows when the figures rest on fewer connections than asked for.
measure_idle() {
    local scen=$1 host=$2 port=$3 settle=60 before held after line rc=0 i srv=0
    local _w n_held n_conn n_failed n_early secs n_closed n_peer
    shift 3
    ((QUICK)) && settle=10
    before=$(sum_over rss_kib "$@")
    log "$scen: $IDLE_CONNS idle connections to $host:$port"
    bg idle-conns "$PREFIX-n1p1" python3 "$SCRIPT_DIR/idle-conns.py" --count "$IDLE_CONNS" "$host" "$port"
    IDLE_PID=$BG_PID
    line=$(idle_line held)
    if [[ -z "$line" ]]; then
        stop_pid "$IDLE_PID"
        record "$scen" idle_error "the idle client reported no connections: $(tail -3 "$WORK/idle-conns.log" | tr '\n' ' ')"
        return 0
    fi
    read -r _w n_held _w n_conn _w n_failed _w n_early _w secs <<<"$line"
    # Through a proxy the last connections reach nginx a little after the client's connect.
    for ((i = 0; i < 100; i++)); do
        srv=$(server_conns)
        ((srv < n_held)) || break
        sleep 0.1
    done
    held=$(sum_over rss_kib "$@")
    kill -USR1 "$IDLE_PID"
    line=$(idle_line closed)
    wait "$IDLE_PID" || rc=$?
    read -r _w n_closed _w n_peer <<<"${line:-closed 0 peer_closed $n_conn}"
    # Held while the RSS was taken: neither closed by the far end nor missing at nginx.
    n_held=$((n_conn - n_peer < srv ? n_conn - n_peer : srv))
    log "$scen: $n_held held ($n_conn connected in $secs s, $n_failed failed, $n_peer closed by the far end), nginx had $srv; RSS after ${settle}s"
    sleep "$settle"
    after=$(sum_over rss_kib "$@")
    if ((n_held == IDLE_CONNS)); then record "$scen" idle_conns "$n_held"; else record "$scen" idle_conns "$n_held of $IDLE_CONNS"; fi
    record "$scen" idle_counts "$n_conn $n_failed $n_early $n_peer $srv $secs"
    record "$scen" idle_rss_mib "$(mib "$before") $(mib "$held") $(mib "$after")"
    ((rc == 0)) || record "$scen" idle_error "the idle client exited with status $rc ($n_closed closed by it): $(grep -v '^held \|^closed ' "$WORK/idle-conns.log" | tail -3 | tr '\n' ' ')"
    if ((n_held > 0)); then
        record "$scen" idle_kib_per_conn "$(awk -v h="$held" -v b="$before" -v n="$n_held" 'BEGIN { printf "%.1f", (h - b) / n }')"
    fi
    record "$scen" idle_rss_after_mib_delta "$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.1f", (a - b) / 1024 }')"
}

# ---------------------------------------------------------------------------------------------
# Scenarios. Each runs in its own subshell on a fresh topology and tears it down at the end.

fresh_topology() {
    topo_destroy "$PREFIX"
    topo_create "$PREFIX" 2 1 || die "could not create the topology"
}

scenario_direct() {
    fresh_topology
    start_servers
    measure direct "$SERVER_IP" "$IPERF_PORT" "http://$SERVER_IP:$HTTP_PORT/"
}

# --- nodemesh ---

# Proof the iperf3 traffic went through the mesh and not around it: node1's agent lists its flows.
nm_check_flows() {
    local flows
    flows=$("$NODEMESH" flows --socket "$WORK/n1/agent.sock" --json 2>/dev/null | grep -c "$SERVER_IP:$IPERF_PORT" || true)
    record nodemesh flows_seen "${flows:-0}"
    ((${flows:-0} > 0)) || log "WARNING: node1 agent reports no flow to $SERVER_IP:$IPERF_PORT - was the traffic captured?"
}

scenario_nodemesh() {
    local i
    fresh_topology
    # A new CA and agent state every round.
    rm -rf "$WORK/ca" "$WORK/n1" "$WORK/n2"
    mesh_ca_init
    mesh_start_agents 1 bench
    for i in 1 2; do
        mesh_wait_ready "$i" 1 || die "$MESH_ERROR; log: $(tail -20 "$WORK/agent-n$i.log")"
    done
    start_servers
    # Same commands as direct: the pod connects to the other pod's IP; the agents capture it.
    AFTER_IPERF=nm_check_flows
    measure nodemesh "$SERVER_IP" "$IPERF_PORT" "http://$SERVER_IP:$HTTP_PORT/" "${AGENT_PIDS[@]}"
    for i in 1 2; do kill -0 "${AGENT_PIDS[i - 1]}" 2>/dev/null || die "agent node$i died during the run"; done
}

# --- nodemesh with OTLP export ---

# An OTLP/HTTP sink on ext: nginx answers every POST with an empty 200, which the SDK's exporters
# take as accepted, and logs each one so the report can show that the export happened.
start_otlp_sink() {
    local ns=$PREFIX-ext dir=$WORK/otlp-sink
    nginx_run otlp-sink "$ns" "$OTLP_SINK_PORT" 'return 200;' \
        "log_format post '\$request_uri \$request_length'; access_log $dir/posts.log post; client_max_body_size 64m;" ||
        die "OTLP sink: nginx config test failed"
    wait_port "$ns" "$OTLP_SINK_PORT" "$TOPO_EXT_ADDR" || die "the OTLP sink did not start: $(cat "$dir/error.log" 2>/dev/null)"
}

# posts_to SIGNAL: how many exports of that signal (metrics, traces, logs) the sink received.
posts_to() { grep -c "^/v1/$1 " "$WORK/otlp-sink/posts.log" 2>/dev/null || true; }

# The nodemesh scenario's runs with both agents exporting metrics, a span per flow and logs over
# OTLP/HTTP, set by the standard variables: what telemetry costs is the difference to nodemesh.
scenario_telemetry() {
    local i
    fresh_topology
    rm -rf "$WORK/ca" "$WORK/n1" "$WORK/n2" "$WORK/otlp-sink"
    start_otlp_sink
    mesh_ca_init
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://$TOPO_EXT_ADDR:$OTLP_SINK_PORT OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
    export OTEL_METRIC_EXPORT_INTERVAL=1000 OTEL_BSP_SCHEDULE_DELAY=1000
    mesh_start_agents 1 bench
    for i in 1 2; do
        mesh_wait_ready "$i" 1 || die "$MESH_ERROR; log: $(tail -20 "$WORK/agent-n$i.log")"
    done
    start_servers
    # The same sequence as nodemesh (iperf3 first: the bulk runs leave the agents' heaps bigger and the wrk
    # figures after them lower), without the idle connections.
    MEASURE_IDLE=0 measure telemetry "$SERVER_IP" "$IPERF_PORT" "http://$SERVER_IP:$HTTP_PORT/" "${AGENT_PIDS[@]}"
    sleep 2
    record telemetry otlp_posts "$(posts_to metrics) $(posts_to traces) $(posts_to logs)"
    for i in 1 2; do kill -0 "${AGENT_PIDS[i - 1]}" 2>/dev/null || die "agent node$i died during the run"; done
}

# --- haproxy ---

# make_cert NAME SUBJECT_ALT_NAME: EC P-256 leaf signed by the bench CA, as NAME.pem (cert+key).
make_cert() {
    local d=$WORK/pki name=$1 san=$2
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
        -keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null
    printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
        "$san" >"$d/$name.ext"
    openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
        -days 2 -sha256 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
    cat "$d/$name.crt" "$d/$name.key" >"$d/$name.pem"
}

make_pki() {
    local d=$WORK/pki
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -sha256 \
        -subj "/CN=nodemesh-bench-ca" -keyout "$d/ca.key" -out "$d/ca.crt" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null ||
        die "openssl: cannot create the bench CA"
    make_cert node1 "DNS:node1.mesh,URI:spiffe://$TRUST_DOMAIN/ns/bench/sa/n1p1" || die "openssl: node1 cert"
    make_cert node2 "DNS:node2.mesh,URI:spiffe://$TRUST_DOMAIN/ns/bench/sa/n2p1" || die "openssl: node2 cert"
}

haproxy_global() {
    cat <<EOF
global
    maxconn 8000
${HAPROXY_THREADS:+    nbthread $HAPROXY_THREADS
}    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3
defaults
    mode tcp
    # Not 5 s: measure_idle's burst of 5,000 connections queues as many mTLS handshakes between
    # the two haproxys, and at 5 s node1 dropped more than half of them (client closed, nginx never
    # reached) before they were all up. The agents set flows up over pooled tunnel connections.
    timeout connect 30s
    timeout client 2m
    timeout server 2m
EOF
}

write_haproxy_configs() {
    local d=$WORK/pki svc front tls dport
    {
        haproxy_global
        for svc in iperf http; do
            if [[ $svc == iperf ]]; then front=$HA_IPERF_FRONT tls=$HA_IPERF_TLS; else front=$HA_HTTP_FRONT tls=$HA_HTTP_TLS; fi
            cat <<EOF
frontend ${svc}_out
    bind $POD_GW1:$front
    default_backend ${svc}_tunnel
backend ${svc}_tunnel
    server node2 $NODE2_IP:$tls ssl crt $d/node1.pem ca-file $d/ca.crt verify required verifyhost node2.mesh sni str(node2.mesh)
EOF
        done
    } >"$WORK/haproxy-node1.cfg"
    {
        haproxy_global
        for svc in iperf http; do
            if [[ $svc == iperf ]]; then tls=$HA_IPERF_TLS dport=$IPERF_PORT; else tls=$HA_HTTP_TLS dport=$HTTP_PORT; fi
            cat <<EOF
frontend ${svc}_in
    bind $NODE2_IP:$tls ssl crt $d/node2.pem ca-file $d/ca.crt verify required
    default_backend ${svc}_pod
backend ${svc}_pod
    server n2p1 $SERVER_IP:$dport
EOF
        done
    } >"$WORK/haproxy-node2.cfg"
}

# Prove the hop is really mutual TLS 1.3: without a client certificate node2 refuses; with it the
# request reaches nginx over TLSv1.3.
verify_haproxy_mtls() {
    local d=$WORK/pki url="https://node2.mesh:$HA_HTTP_TLS/" v
    local -a common=(--silent --max-time 5 --cacert "$d/ca.crt" --resolve "node2.mesh:$HA_HTTP_TLS:$NODE2_IP")
    if ip netns exec "$PREFIX-n1" curl "${common[@]}" -o /dev/null "$url"; then
        die "haproxy on node2 accepted a client without a certificate"
    fi
    v=$(ip netns exec "$PREFIX-n1" curl "${common[@]}" --cert "$d/node1.crt" --key "$d/node1.key" \
        -o /dev/null -w '%{http_code}' -v "$url" 2>&1) || die "mTLS request through haproxy failed: $v"
    [[ "$v" == *"TLSv1.3"* && "$v" == *200 ]] || die "mTLS check: expected TLSv1.3 and HTTP 200, got: $v"
    record haproxy mtls_verified yes
}

scenario_haproxy() {
    local i pids=()
    fresh_topology
    make_pki
    write_haproxy_configs
    start_servers
    for i in 1 2; do
        ip netns exec "$PREFIX-n$i" haproxy -c -q -f "$WORK/haproxy-node$i.cfg" ||
            die "haproxy config for node$i is invalid"
        # -db: stay in the foreground, one process (no master-worker), so its pid is the one measured.
        bg "haproxy-n$i" "$PREFIX-n$i" haproxy -db -f "$WORK/haproxy-node$i.cfg"
        pids+=("$BG_PID")
    done
    wait_port "$PREFIX-n1" "$HA_HTTP_FRONT" "$POD_GW1" || die "haproxy node1 not listening: $(cat "$WORK/haproxy-n1.log")"
    wait_port "$PREFIX-n2" "$HA_HTTP_TLS" "$NODE2_IP" || die "haproxy node2 not listening: $(cat "$WORK/haproxy-n2.log")"
    record haproxy threads "$(awk '/^Threads:/ { print $2 }' "/proc/${pids[0]}/status")"
    verify_haproxy_mtls
    # The client connects to haproxy on node1 (its pod gateway address) instead of the server.
    measure haproxy "$POD_GW1" "$HA_IPERF_FRONT" "http://$POD_GW1:$HA_HTTP_FRONT/" "${pids[@]}"
    for i in 1 2; do kill -0 "${pids[i - 1]}" 2>/dev/null || die "haproxy node$i died during the run"; done
}

# --- gateway: NodeMesh's gateway against nginx and haproxy as reverse proxies ---
#
# Four variants, each on a fresh topology, all with the client (wrk, h2load) in ext, the proxy on
# node1 listening on node1's lan address, and nginx in n2p1 (start_http_server) as the backend:
#   gw_nodemesh        node1's agent's gateway -> mesh service web (endpoint n2p1): through the
#                      node1 -> node2 mTLS tunnel; node2's agent delivers to its captured pod
#   gw_nodemesh_plain  the same gateway -> backendRefs address 10.240.2.2:8080, plain HTTP (no tunnel,
#                      no agent on node2): the same work as nginx and haproxy
#   gw_nginx           nginx as a reverse proxy in node1's namespace, plain HTTP, upstream keepalive 64
#   gw_haproxy         haproxy in node1's namespace, mode http, plain HTTP, http-reuse always

GW_VARIANTS=(gw_nodemesh gw_nodemesh_plain gw_nginx gw_haproxy)
GW_ADDR=10.231.0.1
GW_HTTP_PORT=8000
GW_H2C_PORT=8001
GW_SERVICE_IP=10.96.0.10
GW_WRK_CONNS=64
GW_H2_CONNS=16
GW_H2_STREAMS=10
GW_UPSTREAM_KEEPALIVE=64

# gw_agent_config I MODE: node I's agent_config (pod n<I>p1 local, the other node's pod remote) with
# the service web on both nodes (MODE mesh) and, on node1, the gateway to web (mesh) or to n2p1's
# address (plain), access log off.
gw_agent_config() {
    local i=$1 mode=$2
    agent_config "$i" 1 bench | python3 -c '
import json, sys
i, mode, svc_ip, port, addr, http_port, h2c_port, backend = sys.argv[1:]
c = json.load(sys.stdin)
if mode == "mesh":
    c["services"] = [{"name": "web", "addresses": [svc_ip], "ports": [{"port": int(port)}], "endpoints": ["n2p1"]}]
if i == "1":
    ref = {"name": "web", "port": int(port)} if mode == "mesh" else {"address": backend}
    c["gateway"] = {
        "listeners": [{"name": "http", "address": addr, "port": int(http_port)},
                      {"name": "h2c", "address": addr, "port": int(h2c_port), "protocol": "H2c"}],
        "accessLog": False,
        "httpRoutes": [{"name": "all", "rules": [{"backendRefs": [ref]}]}],
    }
json.dump(c, sys.stdout, indent=2)
print()' "$i" "$mode" "$GW_SERVICE_IP" "$HTTP_PORT" "$GW_ADDR" "$GW_HTTP_PORT" "$GW_H2C_PORT" "$SERVER_IP:$HTTP_PORT"
}

# gw_start_agents MODE: the agents with the gateway (mesh: both nodes; plain: node1 only), until
# they are ready and the gateway listens.
gw_start_agents() {
    local mode=$1 i n=2
    [[ $mode == mesh ]] || n=1
    rm -rf "$WORK/ca" "$WORK/n1" "$WORK/n2"
    mesh_ca_init
    AGENT_PIDS=()
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$WORK/n$i/state"
        gw_agent_config "$i" "$mode" >"$WORK/n$i.json" || die "cannot write node$i's gateway config"
        bg "agent-n$i" "$PREFIX-n$i" "$NODEMESH" run --config "$WORK/n$i.json"
        AGENT_PIDS+=("$BG_PID")
    done
    for ((i = 1; i <= n; i++)); do
        mesh_wait_ready "$i" 1 || die "$MESH_ERROR; log: $(tail -20 "$WORK/agent-n$i.log")"
    done
    for i in "$GW_HTTP_PORT" "$GW_H2C_PORT"; do
        wait_port "$PREFIX-n1" "$i" "$GW_ADDR" || die "the gateway does not listen on $GW_ADDR:$i; log: $(tail -20 "$WORK/agent-n1.log")"
    done
}

# gw_write_nginx_config FILE: nginx as the reverse proxy, one worker per CPU (as for production;
# haproxy and the agent use every CPU too), the backend's keep-alive connections reused.
gw_write_nginx_config() {
    local dir=$WORK/gw-nginx
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    upstream web {
        server $SERVER_IP:$HTTP_PORT;
        keepalive $GW_UPSTREAM_KEEPALIVE;
        keepalive_requests 100000000;
        keepalive_timeout 75s;
    }
    server {
        listen $GW_ADDR:$GW_HTTP_PORT;
        # A plaintext port with http2 (nginx 1.22): HTTP/2 with prior knowledge (h2c).
        listen $GW_ADDR:$GW_H2C_PORT http2;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

gw_write_haproxy_config() {
    {
        cat <<EOF
global
    maxconn 8000
${HAPROXY_THREADS:+    nbthread $HAPROXY_THREADS
}defaults
    mode http
    timeout connect 5s
    timeout client 2m
    timeout server 2m
    timeout http-keep-alive 75s
frontend http
    bind $GW_ADDR:$GW_HTTP_PORT
    default_backend web
frontend h2c
    bind $GW_ADDR:$GW_H2C_PORT proto h2
    default_backend web
backend web
    http-reuse always
    server n2p1 $SERVER_IP:$HTTP_PORT
EOF
    } >"$WORK/gw-haproxy.cfg"
}

# gw_check SCENARIO: one HTTP/1.1 and one h2c request from ext through the proxy get nginx's answer
# (so that nothing is measured against a proxy that answers errors).
gw_check() {
    local scen=$1 out
    local -a curl=(ip netns exec "$PREFIX-ext" curl -s -S --max-time 5 -w '%{http_code} %{http_version}')
    out=$("${curl[@]}" "http://$GW_ADDR:$GW_HTTP_PORT/" 2>&1) || die "$scen: curl HTTP/1.1 through the proxy failed: $out"
    [[ "$out" == "$HTTP_BODY"$'\n'"200 1.1" ]] || die "$scen: HTTP/1.1 through the proxy: expected nginx's 200, got: $out"
    out=$("${curl[@]}" --http2-prior-knowledge "http://$GW_ADDR:$GW_H2C_PORT/" 2>&1) || die "$scen: curl --http2-prior-knowledge through the proxy failed: $out"
    [[ "$out" == "$HTTP_BODY"$'\n'"200 2" ]] || die "$scen: h2c through the proxy: expected nginx's 200 over HTTP/2, got: $out"
}

# run_h2load SCENARIO URL: h2load, h2c with prior knowledge, from ext; prints
# "SUCCEEDED_PER_S P99_MS MEAN_MS MAX_MS SUCCEEDED FAILED ERRORED NON_2XX CUT_OFF". In duration mode
# h2load stops the requests in flight when the time is up (started, not done; some versions count
# them as failed): the rate is of those that succeeded; p99 is over the 2xx requests of its
# per-request log (start us, status, duration us).
run_h2load() {
    local scen=$1 url=$2 out log=$WORK/h2load-$1.tsv p99
    if ! out=$(timeout $((DURATION + 30)) ip netns exec "$PREFIX-ext" \
        h2load -c "$GW_H2_CONNS" -m "$GW_H2_STREAMS" -D "$DURATION" --log-file="$log" "$url" 2>&1); then
        die "h2load $url failed: $out"
    fi
    printf '%s\n' "$out" >>"$WORK/h2load.log"
    p99=$(awk -F'\t' '$2 >= 200 && $2 < 300 { print $3 }' "$log" | sort -n |
        awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; i = int(NR * 0.99 + 0.999999); if (i > NR) i = NR; printf "%.3f", v[i] / 1000 }') ||
        die "h2load $url: no successful request in its log: $out"
    awk -v p99="$p99" 'function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /s$/) return v * 1000
            return v + 0 }
        function secs(v) {
            if (v ~ /ms,?$/) return v / 1000
            if (v ~ /us,?$/) return v / 1e6
            return v + 0 }
        /^finished in / { t = secs($3) }
        /^requests: / { cut = $4 - $6; ok = $8; failed = $10; errored = $12 }
        /^status codes: / { non2xx = $5 + $7 + $9 }
        /^time for request:/ { mean = ms($6); max = ms($5) }
        END {
            if (t <= 0 || ok == "") exit 1
            printf "%.0f %s %.3f %.3f %d %d %d %d %d\n", ok / t, p99, mean, max, ok, failed, errored, non2xx, cut
        }' <<<"$out" || die "cannot parse h2load output: $out"
}

# gw_proc_tree PID...: the processes and their children (nginx's workers).
gw_proc_tree() {
    local pid
    for pid in "$@"; do
        echo "$pid"
        pgrep -P "$pid" || true
    done
}

# other_cpu_ticks: CPU ticks (utime+stime+cutime+cstime) of the user processes outside this
# benchmark - neither in its namespaces nor descended from this script - summed. A process that
# exits leaves its ticks in its parent's cutime once reaped, so the sum grows by the work done
# (a parent that ignores its children loses theirs). Kernel threads are left out: they do this
# benchmark's network work too.
other_cpu_ticks() {
    local ns
    local -a ours=()
    for ns in /var/run/netns/"$PREFIX"-*; do [[ -e "$ns" ]] && ours+=("net:[$(stat -L -c %i "$ns")]"); done
    python3 -c '
import os, sys
me, ours, procs = int(sys.argv[1]), set(sys.argv[2:]), {}
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        with open(f"/proc/{p}/stat") as f:
            s = f.read()
        net = os.readlink(f"/proc/{p}/ns/net")
    except OSError:
        continue
    f = s[s.rindex(")") + 2:].split()
    if int(f[6]) & 0x200000:  # PF_KTHREAD
        continue
    procs[int(p)] = (int(f[1]), sum(int(x) for x in f[11:15]), net)
def ours_by_descent(pid):
    while pid in procs:
        if pid == me:
            return True
        pid = procs[pid][0]
    return False
print(sum(t for pid, (_, t, net) in procs.items() if net not in ours and not ours_by_descent(pid)))' "$$" "${ours[@]}"
}

# gw_measure SCENARIO PROXY_PID...: wrk keep-alive and h2load through the proxy on node1, from ext;
# CPU per request and peak RSS of the proxy processes (and their children).
# gw_perf_start SCENARIO RUN PID: with --perf, records the gateway agent PID (NodeMesh variants only)
# until gw_perf_stop.
PERF_PID=""
gw_perf_start() {
    [[ -n "$PERF_DIR" && $1 == gw_nodemesh* ]] || return 0
    perf record -q -F 499 -g -p "$3" -o "$PERF_DIR/$1-$2.data" >"$PERF_DIR/$1-$2.log" 2>&1 &
    PERF_PID=$!
}

gw_perf_stop() {
    [[ -n "$PERF_PID" ]] || return 0
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=""
}

gw_measure() {
    local scen=$1 hz t0 t1 o0 o1 s0 s1 out
    shift
    local -a procs w h
    mapfile -t procs < <(gw_proc_tree "$@")
    hz=$(getconf CLK_TCK)
    gw_check "$scen"
    # Other work on the machine moves these figures: what it used of the CPUs meanwhile goes with them.
    o0=$(other_cpu_ticks) s0=$EPOCHREALTIME
    log "$scen: wrk keep-alive -t2 -c$GW_WRK_CONNS from ext, ${DURATION}s"
    t0=$(sum_over cpu_ticks "${procs[@]}")
    gw_perf_start "$scen" h1 "$1"
    out=$(WRK_NS=$PREFIX-ext WRK_CONNS=$GW_WRK_CONNS run_wrk "http://$GW_ADDR:$GW_HTTP_PORT/")
    gw_perf_stop
    t1=$(sum_over cpu_ticks "${procs[@]}")
    read -r -a w <<<"$out"
    record "$scen" h1_rps "$(printf '%.0f' "${w[0]}")"
    record "$scen" h1_p50_ms "$(printf '%.3f' "${w[1]}")"
    record "$scen" h1_p99_ms "$(printf '%.3f' "${w[2]}")"
    record "$scen" h1_errors "${w[3]}"
    if ((w[4] > 0)); then
        record "$scen" h1_cpu_us "$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="${w[4]}" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')"
    fi
    log "$scen: h2load -c$GW_H2_CONNS -m$GW_H2_STREAMS (h2c) from ext, ${DURATION}s"
    t0=$(sum_over cpu_ticks "${procs[@]}")
    gw_perf_start "$scen" h2 "$1"
    out=$(run_h2load "$scen" "http://$GW_ADDR:$GW_H2C_PORT/")
    gw_perf_stop
    t1=$(sum_over cpu_ticks "${procs[@]}")
    read -r -a h <<<"$out"
    o1=$(other_cpu_ticks) s1=$EPOCHREALTIME
    record "$scen" other_cpu "$(awk -v t=$((o1 - o0)) -v hz="$hz" -v a="$s0" -v b="$s1" -v n="$(nproc)" \
        'BEGIN { printf "%.1f %.0f", t / hz, (b - a) * n }')"
    record "$scen" h2_rps "${h[0]}"
    record "$scen" h2_p99_ms "${h[1]}"
    record "$scen" h2_mean_ms "${h[2]}"
    record "$scen" h2_max_ms "${h[3]}"
    record "$scen" h2_counts "${h[4]} ${h[5]} ${h[6]} ${h[7]} ${h[8]}"
    if ((h[4] > 0)); then
        record "$scen" h2_cpu_us "$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="${h[4]}" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')"
    fi
    record "$scen" rss_load_mib "$(mib "$(sum_over hwm_kib "${procs[@]}")")"
    record "$scen" procs "${#procs[@]}"
}

# gw_check_tunnel: proof that the gateway's requests crossed the mTLS tunnel: node1's agent is
# stopped (its pooled connections to the backend end), then node2's agent lists the inbound
# flows it delivered to n2p1 - encrypted, from the gateway's identity.
gw_check_tunnel() {
    local n
    stop_pid "${AGENT_PIDS[0]}"
    sleep 1
    n=$("$NODEMESH" flows --socket "$WORK/n2/agent.sock" --json 2>/dev/null | python3 -c '
import json, sys
gw = sys.argv[1]
fs = [json.loads(l) for l in sys.stdin if l.strip()]
print(sum(1 for f in fs if f.get("encrypted") and f.get("sourceIdentity") == gw and f.get("destination", "").endswith(":" + sys.argv[2])))' \
        "spiffe://$TRUST_DOMAIN/ns/nodemesh-system/sa/gateway" "$HTTP_PORT" || echo 0)
    record gw_nodemesh tunnel_flows "${n:-0}"
    ((${n:-0} > 0)) || log "WARNING: node2's agent lists no encrypted flow from the gateway's identity to n2p1:$HTTP_PORT"
}

scenario_gw_nodemesh() {
    fresh_topology
    start_http_server
    gw_start_agents mesh
    gw_measure gw_nodemesh "${AGENT_PIDS[@]}"
    local i
    for i in 1 2; do kill -0 "${AGENT_PIDS[i - 1]}" 2>/dev/null || die "agent node$i died during the run"; done
    gw_check_tunnel
}

scenario_gw_nodemesh_plain() {
    fresh_topology
    start_http_server
    gw_start_agents plain
    gw_measure gw_nodemesh_plain "${AGENT_PIDS[@]}"
    kill -0 "${AGENT_PIDS[0]}" 2>/dev/null || die "agent node1 died during the run"
}

scenario_gw_nginx() {
    local dir=$WORK/gw-nginx pid
    fresh_topology
    start_http_server
    gw_write_nginx_config
    ip netns exec "$PREFIX-n1" nginx -t -q -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" ||
        die "the reverse proxy's nginx config is invalid: $(cat "$dir/error.log" 2>/dev/null)"
    bg gw-nginx "$PREFIX-n1" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf"
    pid=$BG_PID
    wait_port "$PREFIX-n1" "$GW_H2C_PORT" "$GW_ADDR" || die "nginx (reverse proxy) not listening: $(cat "$WORK/gw-nginx.log" "$dir/error.log" 2>/dev/null)"
    # Its workers, one per CPU, are up once the master has forked them.
    sleep 0.5
    record gw_nginx workers "$(pgrep -c -P "$pid" || echo 0)"
    gw_measure gw_nginx "$pid"
    kill -0 "$pid" 2>/dev/null || die "nginx (reverse proxy) died during the run"
}

scenario_gw_haproxy() {
    local pid
    fresh_topology
    start_http_server
    gw_write_haproxy_config
    ip netns exec "$PREFIX-n1" haproxy -c -q -f "$WORK/gw-haproxy.cfg" || die "the gateway haproxy config is invalid"
    bg gw-haproxy "$PREFIX-n1" haproxy -db -f "$WORK/gw-haproxy.cfg"
    pid=$BG_PID
    wait_port "$PREFIX-n1" "$GW_H2C_PORT" "$GW_ADDR" || die "haproxy (reverse proxy) not listening: $(cat "$WORK/gw-haproxy.log")"
    record gw_haproxy threads "$(awk '/^Threads:/ { print $2 }' "/proc/$pid/status")"
    gw_measure gw_haproxy "$pid"
    kill -0 "$pid" 2>/dev/null || die "haproxy (reverse proxy) died during the run"
}

# --- tunnel protocol microbench ---

# run_microbench: builds and runs tests/NodeMesh.Bench on this host's loopback (no namespaces);
# its report goes to MICROBENCH_TEXT, its markdown to $WORK/microbench.md.
run_microbench() {
    local dir=$WORK/microbench
    local -a args=(--markdown "$WORK/microbench.md")
    ((QUICK)) && args+=(--quick)
    MICROBENCH_TEXT=""
    log "=== tunnel protocol microbench ==="
    if ! command -v dotnet >/dev/null 2>&1; then
        MICROBENCH_STATUS="n/a: the .NET SDK (dotnet) is not on PATH"
        log "microbench: $MICROBENCH_STATUS"
        return 0
    fi
    if ! dotnet build "$REPO_DIR/tests/NodeMesh.Bench/NodeMesh.Bench.csproj" -c Release -o "$dir" -nologo -v quiet \
        >"$WORK/microbench-build.log" 2>&1; then
        MICROBENCH_STATUS="failed: the build failed: $(tail -5 "$WORK/microbench-build.log")"
    elif ! MICROBENCH_TEXT=$(dotnet "$dir/NodeMesh.Bench.dll" "${args[@]}"); then
        MICROBENCH_STATUS="failed (see the messages above)"
    else
        MICROBENCH_STATUS=ok
        return 0
    fi
    log "microbench: $MICROBENCH_STATUS"
    FAILED+=(microbench)
}

# --- registry: workload add -> first encrypted flow on etcd; the registry at 10,000 workloads ---

ETCD_IP=10.231.0.200
ETCD_PORT=23790

# agent_config_etcd I PODS: node I on discovery.source etcd (no nodes or remote workloads in the file),
# its first PODS pods local, the pods' range in mesh.cidrs.
agent_config_etcd() {
    local i=$1 pods=$2
    printf '{\n  "node": { "name": "node%d", "address": "10.231.0.%d" },\n' "$i" "$i"
    printf '  "trustDomain": "%s",\n  "ca": { "dir": "%s" },\n' "$TRUST_DOMAIN" "$WORK/ca"
    printf '  "stateDir": "%s",\n  "apiSocket": "%s",\n' "$WORK/n$i/state" "$WORK/n$i/agent.sock"
    printf '  "discovery": { "source": "etcd", "etcd": { "endpoints": ["http://%s:%d"], "leaseTtl": "5s" } },\n' "$ETCD_IP" "$ETCD_PORT"
    printf '  "mesh": { "cidrs": ["10.240.0.0/16"], "holdTimeout": "2s" },\n  "workloads": ['
    if ((pods > 0)); then
        printf '\n    { "name": "n%dp1", "ip": "10.240.%d.2", "identity": "spiffe://%s/ns/bench/sa/n%dp1", "netns": "/var/run/netns/%s-n%dp1" }\n  ' \
            "$i" "$i" "$TRUST_DOMAIN" "$i" "$PREFIX" "$i"
    fi
    printf ']\n}\n'
}

# registry_view I: node I's registry as "STATE NODES REMOTE_WORKLOADS".
registry_view() {
    "$NODEMESH" status --json --socket "$WORK/n$1/agent.sock" 2>/dev/null |
        python3 -c 'import json, sys; r = json.load(sys.stdin)["registry"]; print(r["state"], r["nodes"], r["remoteWorkloads"])' 2>/dev/null || true
}

# wait_registry I VIEW: until registry_view I prints VIEW (10 s).
wait_registry() {
    local n
    for ((n = 0; n < 100; n++)); do
        [[ "$(registry_view "$1")" == "$2" ]] && return 0
        sleep 0.1
    done
    die "node$1's registry is '$(registry_view "$1")', not '$2', after 10 s; log: $(tail -5 "$WORK/agent-n$1.log")"
}

scenario_registry() {
    local i r t0 t1 code
    local -a times=()
    fresh_topology
    rm -rf "$WORK/ca" "$WORK/n1" "$WORK/n2" "$WORK/etcd"
    mesh_ca_init
    bg etcd "$PREFIX-ext" etcd --name bench --data-dir "$WORK/etcd" \
        --listen-client-urls "http://$ETCD_IP:$ETCD_PORT" --advertise-client-urls "http://$ETCD_IP:$ETCD_PORT" \
        --listen-peer-urls "http://$ETCD_IP:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://$ETCD_IP:$((ETCD_PORT + 1))" \
        --initial-cluster "bench=http://$ETCD_IP:$((ETCD_PORT + 1))"
    wait_port "$PREFIX-ext" "$ETCD_PORT" "$ETCD_IP" || die "etcd did not start: $(tail -5 "$WORK/etcd.log")"
    AGENT_PIDS=()
    for i in 1 2; do
        mkdir -p "$WORK/n$i/state"
        agent_config_etcd "$i" $((2 - i)) >"$WORK/n$i.json"
        bg "agent-n$i" "$PREFIX-n$i" "$NODEMESH" run --config "$WORK/n$i.json"
        AGENT_PIDS+=("$BG_PID")
    done
    mesh_wait_ready 1 1 || die "$MESH_ERROR; log: $(tail -20 "$WORK/agent-n1.log")"
    mesh_wait_ready 2 0 || die "$MESH_ERROR; log: $(tail -20 "$WORK/agent-n2.log")"
    start_servers
    wait_registry 1 "synced 1 0"
    for ((r = 1; r <= 5; r++)); do
        t0=$(date +%s%N)
        "$NODEMESH" workload add --socket "$WORK/n2/agent.sock" --name n2p1 --ip "$SERVER_IP" \
            --identity "spiffe://$TRUST_DOMAIN/ns/bench/sa/n2p1" --netns "/var/run/netns/$PREFIX-n2p1" >/dev/null
        # The first connect is held at node1 (mesh.cidrs) until its registry places n2p1.
        code=$(ip netns exec "$PREFIX-n1p1" curl -s -o /dev/null --max-time 5 -w '%{http_code}' "http://$SERVER_IP:$HTTP_PORT/" || true)
        t1=$(date +%s%N)
        [[ "$code" == 200 ]] || die "the first flow after workload add got '$code'; node1 log: $(tail -5 "$WORK/agent-n1.log")"
        times+=("$(((t1 - t0) / 1000000))")
        "$NODEMESH" workload remove --socket "$WORK/n2/agent.sock" --name n2p1 >/dev/null
        wait_registry 1 "synced 1 0"
    done
    local encrypted
    encrypted=$("$NODEMESH" flows --socket "$WORK/n1/agent.sock" --json 2>/dev/null |
        python3 -c 'import json, sys; fs = [json.loads(l) for l in sys.stdin if l.strip()]; print(sum(1 for f in fs if f.get("encrypted") and f["path"] == "tunnel" and f["result"] == "ok"))')
    ((encrypted >= 5)) || die "node1 recorded $encrypted encrypted tunnel flows, not 5"
    record registry add_to_flow_ms "$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)"
    record registry add_to_flow_all "$(IFS=,; echo "${times[*]}")"
}

# run_registry_bench: NodeMesh.Bench registry (10,000 workloads, in process); its text in REGISTRY_TEXT.
run_registry_bench() {
    local dir=$WORK/microbench
    REGISTRY_TEXT=""
    if ! command -v dotnet >/dev/null 2>&1; then
        REGISTRY_STATUS="n/a: the .NET SDK (dotnet) is not on PATH"
    elif ! dotnet build "$REPO_DIR/tests/NodeMesh.Bench/NodeMesh.Bench.csproj" -c Release -o "$dir" -nologo -v quiet >"$WORK/registry-build.log" 2>&1; then
        REGISTRY_STATUS="failed: the build failed: $(tail -5 "$WORK/registry-build.log")"
    elif ! REGISTRY_TEXT=$(dotnet "$dir/NodeMesh.Bench.dll" registry --workloads 10000 --markdown "$WORK/registry.md"); then
        REGISTRY_STATUS="failed (see the messages above)"
    else
        REGISTRY_STATUS=ok
        return 0
    fi
    log "registry bench: $REGISTRY_STATUS"
    FAILED+=(registry-bench)
}

# run_scenario NAME: the scenario in a subshell (errexit works there) with its own cleanup;
# a failed scenario is recorded and the others still run. The subshell runs in the background
# and is waited for, so that Ctrl-C / SIGTERM reach this script's trap at once (bash defers
# traps while a foreground child runs).
run_scenario() {
    local name=$1 rc=0
    log "=== scenario: $name ==="
    (
        set -e
        PIDS=()
        trap 'stop_all; topo_destroy "$PREFIX"' EXIT
        "scenario_$name"
    ) &
    SCENARIO_PID=$!
    wait "$SCENARIO_PID" || rc=$?
    SCENARIO_PID=""
    if ((rc != 0)); then
        record "$name" status "failed (see messages above)"
        FAILED+=("$name")
    else
        record "$name" status ok
    fi
}

# ---------------------------------------------------------------------------------------------
# Report.

declare -A R=()

# load_results: R[scen.key] is the median over the rounds of a number (the first round's value
# otherwise); R[nh.key] and R[nd.key] the medians of each round's nodemesh/haproxy and
# nodemesh/direct ratios, R[nh_rounds.key] those ratios in round order; for the gateway R[gn.key],
# R[gpn.key] and R[gh.key] those of gw_nodemesh/gw_nginx, gw_nodemesh_plain/gw_nginx and
# gw_nodemesh/gw_haproxy (3 decimals: the targets are judged on them).
load_results() {
    local k v r key f
    local -A all=()
    for ((r = 1; r <= ROUNDS; r++)); do
        f=$WORK/results.$r
        [[ -f "$f" ]] || continue
        while IFS='=' read -r k v; do
            [[ -n "${R[$k]:-}" ]] || R[$k]=$v
            if [[ "$v" =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then all[$k]+="$v "; fi
        done <"$f"
    done
    local -a values
    for k in "${!all[@]}"; do
        read -r -a values <<<"${all[$k]}"
        R[$k]=$(median "${values[@]}")
    done
    for key in "${!all[@]}"; do
        [[ "$key" == nodemesh.* ]] || continue
        key=${key#nodemesh.}
        ratios_over_rounds haproxy "$key" nh
        ratios_over_rounds direct "$key" nd
    done
    for key in "${GW_METRICS[@]}"; do
        key=${key%%|*}
        ratios_over_rounds gw_nginx "$key" gn gw_nodemesh 3
        ratios_over_rounds gw_nginx "$key" gpn gw_nodemesh_plain 3
        ratios_over_rounds gw_haproxy "$key" gh gw_nodemesh 3
    done
}

# median N...: the middle value (the mean of the middle two for an even count), as given.
# The mean of two keeps the decimals its inputs have (integers stay integers).
median() {
    printf '%s\n' "$@" | sort -g | awk '
        function decimals(x) { return index(x, ".") ? length(x) - index(x, ".") : 0 }
        { v[NR] = $1 }
        END {
            if (NR % 2) { print v[(NR + 1) / 2]; exit }
            a = v[NR / 2]; b = v[NR / 2 + 1]; d = decimals(a) > decimals(b) ? decimals(a) : decimals(b)
            fmt = "%." d "f\n"; printf fmt, (a + b) / 2
        }'
}

# ratios_over_rounds OTHER KEY NAME [SCENARIO [DECIMALS]]: SCENARIO (nodemesh)/OTHER per round for KEY,
# into R[NAME.KEY] (median) and R[NAME_rounds.KEY].
ratios_over_rounds() {
    local other=$1 key=$2 name=$3 scen=${4:-nodemesh} decimals=${5:-2} r n o v list=""
    for ((r = 1; r <= ROUNDS; r++)); do
        n=$(round_value "$r" "$scen.$key") o=$(round_value "$r" "$other.$key")
        [[ -n "$n" && -n "$o" ]] || continue
        v=$(ratio "$n" "$o" "$decimals")
        [[ "$v" == n/a ]] || list+="$v "
    done
    [[ -n "$list" ]] || return 0
    local -a values
    read -r -a values <<<"$list"
    R[$name.$key]=$(median "${values[@]}")
    R[${name}_rounds.$key]=${list% }
}

round_value() { awk -F= -v k="$2" '$1 == k { v = $2 } END { print v }' "$WORK/results.$1" 2>/dev/null; }

ratio() { # A B [DECIMALS] -> A/B (2 decimals) or n/a
    if [[ "$1" =~ ^[0-9.]+$ && "$2" =~ ^[0-9.]+$ ]] && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
        awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { printf "%." d "f", a / b }'
    else
        echo "n/a"
    fi
}

# cell SCENARIO KEY: the value, or why there is none.
cell() {
    local s=$1 k=$2
    if [[ -n "${R[$s.$k]:-}" ]]; then
        echo "${R[$s.$k]}"
    elif [[ "${R[$s.status]:-}" == ok || -z "${R[$s.status]:-}" ]]; then
        echo "-"
    else
        echo "n/a"
    fi
}

METRICS=(
    "iperf1_gbps|iperf3 1 stream (Gbit/s)"
    "iperf8_gbps|iperf3 8 streams (Gbit/s)"
    "ka_rps|HTTP keep-alive (req/s)"
    "ka_p50_ms|HTTP keep-alive p50 (ms)"
    "ka_p99_ms|HTTP keep-alive p99 (ms)"
    "cc_rps|HTTP Connection: close (new conn/s)"
    "cc_p99_ms|HTTP Connection: close p99 (ms)"
    "cpu_s_per_gb|proxy CPU s per GB, both nodes (iperf runs)"
    "rss_idle_mib|proxy peak RSS idle, both nodes (MiB)"
    "rss_load_mib|proxy peak RSS after load, both nodes (MiB)"
    "idle_conns|idle connections held through the proxies"
    "idle_kib_per_conn|proxy RSS per idle connection, both nodes (KiB)"
    "idle_rss_after_mib_delta|proxy RSS kept after idle close, both nodes (MiB)"
)

table_rows() { # prints "metric|direct|nodemesh|haproxy|nm/ha|nm/direct" lines
    local m key label d n h
    for m in "${METRICS[@]}"; do
        key=${m%%|*} label=${m#*|}
        d=$(cell direct "$key") n=$(cell nodemesh "$key") h=$(cell haproxy "$key")
        printf '%s|%s|%s|%s|%s|%s\n' "$label" "$d" "$n" "$h" "${R[nh.$key]:-$(ratio "$n" "$h")}" "${R[nd.$key]:-$(ratio "$n" "$d")}"
    done
}

notes() {
    local s
    echo "Topology: 2 nodes x 1 pod in network namespaces (veth + bridges), client in n1p1, servers in n2p1 (iperf3 -s, nginx 1 worker)."
    echo "Each measurement ${DURATION}s; wrk --latency -t2 -c32; $(nproc) CPUs, kernel $(uname -r)."
    if ((ROUNDS > 1)); then
        echo "$ROUNDS rounds, each every scenario once on fresh topologies (order reversed every other round): figures are medians over the rounds, ratios the medians of each round's own ratios. nodemesh/haproxy per round: $(round_ratios)."
    fi
    echo "direct: n1p1 -> $SERVER_IP, routed by the nodes, plaintext."
    echo "nodemesh: ${NODEMESH_NOTE}"
    echo "haproxy: $(haproxy -v 2>/dev/null | head -1 | awk '{print $1, $3}'), nbthread ${HAPROXY_THREADS:-default (one per CPU)} -> ${R[haproxy.threads]:-?} thread(s) per process; client in n1p1 connects to node1's haproxy at $POD_GW1 directly (no capture); node1 -> node2 over TLS 1.3 with EC P-256 client and server certificates, verify required on both sides (mTLS checked: ${R[haproxy.mtls_verified]:-no}); one TLS listener per service on node2, plain TCP to n2p1."
    echo "CPU s per GB: utime+stime of both proxy processes over the two iperf3 runs, divided by the bytes the iperf3 receivers got (1 GB = 10^9 bytes). RSS: VmHWM of both processes summed."
    echo "Idle connections (after the wrk runs): $IDLE_CONNS TCP connections from n1p1 to nginx that send nothing (tests/bench/idle-conns.py, 200 connects in flight; nodemesh: to $SERVER_IP:$HTTP_PORT, captured; haproxy: to $POD_GW1:$HA_HTTP_FRONT; haproxy's maxconn 8000 covers them), held until nginx has them all (at most 10 s more), then closed. RSS here is VmRSS (current, not peak) of both proxy processes summed: KiB per idle connection = (RSS while held - RSS before) / connections held (open at the client and at nginx); RSS kept after idle close = RSS $( ((QUICK)) && echo 10 || echo 60 ) s after closing them - RSS before."
    for s in nodemesh haproxy; do idle_notes "$s"; done
    for s in direct nodemesh haproxy; do
        if [[ -n "${R[$s.ka_errors]:-}" || -n "${R[$s.cc_errors]:-}" ]] && ((${R[$s.ka_errors]:-0} + ${R[$s.cc_errors]:-0} > 0)); then
            echo "$s: wrk reported errors: keep-alive ${R[$s.ka_errors]:-0}, close ${R[$s.cc_errors]:-0}."
        fi
        [[ "${R[$s.status]:-ok}" == ok || "${R[$s.status]}" == n/a* ]] || echo "$s: ${R[$s.status]}."
    done
    telemetry_note
    if [[ "${R[nodemesh.flows_seen]:-}" == 0 ]]; then
        echo "nodemesh: WARNING: node1's agent listed no flow to $SERVER_IP:$IPERF_PORT after the iperf3 runs: the traffic may have bypassed the mesh."
    elif [[ -n "${R[nodemesh.flows_seen]:-}" ]]; then
        echo "nodemesh: node1's agent listed ${R[nodemesh.flows_seen]} flow(s) to $SERVER_IP:$IPERF_PORT after the iperf3 runs (traffic went through the mesh)."
    fi
    return 0
}

# telemetry_cost KEY: the median over the rounds of each round's telemetry/nodemesh KEY, as a loss in %.
telemetry_cost() {
    local key=$1 r n t v
    local -a values=()
    for ((r = 1; r <= ROUNDS; r++)); do
        n=$(round_value "$r" "nodemesh.$key") t=$(round_value "$r" "telemetry.$key")
        [[ -n "$n" && -n "$t" ]] || continue
        v=$(ratio "$t" "$n")
        [[ "$v" == n/a ]] || values+=("$v")
    done
    ((${#values[@]} > 0)) || { echo "n/a"; return 0; }
    awk -v r="$(median "${values[@]}")" 'BEGIN { if (r >= 1) printf "none (%+.1f %% faster, within the drift)", (r - 1) * 100; else printf "%.1f %%", (1 - r) * 100 }'
}

telemetry_note() {
    [[ "${R[telemetry.status]:-}" == ok ]] || { [[ -z "${R[telemetry.status]:-}" ]] || echo "telemetry: ${R[telemetry.status]}."; return 0; }
    local posts
    read -r -a posts <<<"${R[telemetry.otlp_posts]:-0 0 0}"
    echo "telemetry: nodemesh again with both agents exporting over OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT to an nginx sink on ext answering 200; metrics every 1 s, a span per flow, logs): keep-alive ${R[telemetry.ka_rps]:-?} req/s against ${R[nodemesh.ka_rps]:-?} without export, cost: $(telemetry_cost ka_rps) (target: at most 5 %); new connections ${R[telemetry.cc_rps]:-?}/s against ${R[nodemesh.cc_rps]:-?}/s, cost: $(telemetry_cost cc_rps). The sink received ${posts[0]:-0} metric, ${posts[1]:-0} trace and ${posts[2]:-0} log exports in the last round."
}

round_ratios() {
    local m key out=""
    for m in iperf1_gbps iperf8_gbps ka_rps cc_rps cpu_s_per_gb rss_load_mib; do
        [[ -n "${R[nh_rounds.$m]:-}" ]] && out+="${out:+; }$m ${R[nh_rounds.$m]}"
    done
    echo "${out:-n/a}"
}

# idle_notes SCENARIO: the idle-connection counts and RSS behind the table's figures, and why
# they may rest on fewer connections than asked for.
idle_notes() {
    local s=$1 before held after conn failed early peer srv secs n
    if [[ -n "${R[$s.idle_error]:-}" ]]; then echo "$s: WARNING: idle connections: ${R[$s.idle_error]}"; fi
    [[ -n "${R[$s.idle_counts]:-}" ]] || return 0
    read -r before held after <<<"${R[$s.idle_rss_mib]}"
    read -r conn failed early peer srv secs <<<"${R[$s.idle_counts]}"
    echo "$s idle: RSS before $before MiB, held $held MiB, after $after MiB; $conn of $IDLE_CONNS connected in $secs s ($failed failed), $early closed by the far end within 2 s, $peer by the time they were released; nginx had $srv."
    n=${R[$s.idle_conns]%% *}
    if ((n < IDLE_CONNS)); then
        echo "$s: WARNING: only $n of the $IDLE_CONNS idle connections asked for were held end to end (client and nginx): the per-connection figure is over those $n, the 'after' figure is not for $IDLE_CONNS."
    fi
}

# --- the gateway's table and notes ---

GW_METRICS=(
    "h1_rps|HTTP/1.1 keep-alive (req/s)"
    "h1_p50_ms|HTTP/1.1 keep-alive p50 (ms)"
    "h1_p99_ms|HTTP/1.1 keep-alive p99 (ms)"
    "h2_rps|HTTP/2 h2c (succeeded req/s)"
    "h2_p99_ms|HTTP/2 h2c p99 (ms, h2load log)"
    "h2_mean_ms|HTTP/2 h2c mean (ms, h2load)"
    "h2_max_ms|HTTP/2 h2c max (ms, h2load)"
    "h1_cpu_us|proxy CPU per request, HTTP/1.1 (us)"
    "h2_cpu_us|proxy CPU per request, HTTP/2 (us)"
    "rss_load_mib|proxy peak RSS after load (MiB)"
)

gw_table_rows() { # prints "metric|nm-mesh|nm-addr|nginx|haproxy|nm-mesh/nginx|nm-addr/nginx|nm-mesh/haproxy" lines
    local m key label n p x h
    for m in "${GW_METRICS[@]}"; do
        key=${m%%|*} label=${m#*|}
        n=$(cell gw_nodemesh "$key") p=$(cell gw_nodemesh_plain "$key") x=$(cell gw_nginx "$key") h=$(cell gw_haproxy "$key")
        printf '%s|%s|%s|%s|%s|%s|%s|%s\n' "$label" "$n" "$p" "$x" "$h" \
            "${R[gn.$key]:-$(ratio "$n" "$x" 3)}" "${R[gpn.$key]:-$(ratio "$p" "$x" 3)}" "${R[gh.$key]:-$(ratio "$n" "$h" 3)}"
    done
}

GW_TABLE_HEAD="metric|nm-mesh|nm-addr|nginx|haproxy|nm-mesh/nginx|nm-addr/nginx|nm-mesh/haproxy"

# gw_target RATIO OP LIMIT: "RATIOx met" or "RATIOx not met" (OP ge or le), "n/a" without a ratio.
gw_target() {
    local r=$1 op=$2 limit=$3
    [[ "$r" =~ ^[0-9.]+$ ]] || { echo "n/a"; return 0; }
    if awk -v r="$r" -v l="$limit" -v op="$op" 'BEGIN { exit !(op == "ge" ? r >= l : r <= l) }'; then
        echo "${r}x met"
    else
        echo "${r}x not met"
    fi
}

# gw_targets NAME LABEL: the issue's targets for one NodeMesh variant against nginx (R[NAME.*]).
gw_targets() {
    local name=$1 label=$2
    echo "target (issue): $label req/s >= nginx's: HTTP/1.1 $(gw_target "${R[$name.h1_rps]:-}" ge 1), HTTP/2 $(gw_target "${R[$name.h2_rps]:-}" ge 1); $label p99 <= 1.5x nginx's: HTTP/1.1 $(gw_target "${R[$name.h1_p99_ms]:-}" le 1.5), HTTP/2 $(gw_target "${R[$name.h2_p99_ms]:-}" le 1.5)."
}

# gw_other SCENARIO: "USED of AVAILABLE s" from R[SCENARIO.other_cpu].
gw_other() {
    local v
    read -r -a v <<<"${R[$1.other_cpu]:-}"
    if ((${#v[@]} == 2)); then echo "${v[0]} of ${v[1]} s"; else echo "?"; fi
}

gw_notes() {
    local s c
    local -a h
    echo "Gateway: the client in ext ($TOPO_EXT_ADDR); the proxy on node1, listening on $GW_ADDR:$GW_HTTP_PORT (HTTP/1.1) and $GW_ADDR:$GW_H2C_PORT (HTTP/2 cleartext, prior knowledge); the backend for all: nginx in n2p1 ($SERVER_IP:$HTTP_PORT, 1 worker, as in the other scenarios). Each column on a fresh topology, in the same run, on the same $(nproc) CPUs (client, proxy and backend share them)."
    echo "Load, ${DURATION}s each: wrk --latency -t2 -c$GW_WRK_CONNS (keep-alive); h2load -c$GW_H2_CONNS -m$GW_H2_STREAMS -D$DURATION (h2c). When the time is up h2load stops the requests still in flight (some versions count them as failed): its req/s here is succeeded requests / duration; its p99 is computed from its --log-file over the 2xx requests; mean and max are its 'time for request'."
    echo "nm-mesh: NodeMesh's gateway in node1's agent, one route to the mesh service web ($GW_SERVICE_IP:$HTTP_PORT, endpoint n2p1): every request crosses the node1 -> node2 mTLS tunnel under the gateway's identity (spiffe://$TRUST_DOMAIN/ns/nodemesh-system/sa/gateway) and node2's agent delivers it to its captured pod - encryption and workload identity included, which the nginx and haproxy columns do not do (plain HTTP to the pod). Proof: after the load node2's agent listed ${R[gw_nodemesh.tunnel_flows]:-no} encrypted flow(s) from the gateway's identity to n2p1:$HTTP_PORT."
    echo "nm-addr: the same gateway with backendRefs [{address: $SERVER_IP:$HTTP_PORT}]: plain HTTP to the pod, no tunnel, no agent on node2 - the same work as nginx and haproxy."
    echo "Access logs off in all: the gateway's \"accessLog\": false, nginx access_log off, haproxy with no log. Agent: $NODEMESH."
    echo "nginx $(nginx -v 2>&1 | sed 's|.*nginx/||'): worker_processes auto (${R[gw_nginx.workers]:-?} workers), upstream keepalive $GW_UPSTREAM_KEEPALIVE (keepalive_requests 10^8), proxy_http_version 1.1, listen ... http2 for h2c. haproxy $(haproxy -v 2>/dev/null | head -1 | awk '{print $3}'): mode http, http-reuse always, bind ... proto h2 for h2c, nbthread ${HAPROXY_THREADS:-default} -> ${R[gw_haproxy.threads]:-?} thread(s)."
    echo "Proxy CPU per request: utime+stime of the proxy's processes over the run / requests completed (nm-mesh: both agents, node2's does the tunnel's far end; nm-addr: node1's agent; nginx: master and workers; haproxy: its one process). Peak RSS: VmHWM of the same processes, summed."
    if ((ROUNDS > 1)); then
        echo "Ratios are the medians of each round's own ratios; nm-mesh/nginx per round: h1_rps ${R[gn_rounds.h1_rps]:-n/a}; h1_p99_ms ${R[gn_rounds.h1_p99_ms]:-n/a}; h2_rps ${R[gn_rounds.h2_rps]:-n/a}; h2_p99_ms ${R[gn_rounds.h2_p99_ms]:-n/a}."
    fi
    echo "Other work on the machine during each column's runs$( ((ROUNDS > 1)) && echo " (first round)"), CPU seconds used by user processes outside this benchmark of the CPU seconds there were: nm-mesh $(gw_other gw_nodemesh), nm-addr $(gw_other gw_nodemesh_plain), nginx $(gw_other gw_nginx), haproxy $(gw_other gw_haproxy); a large share means that column's figures were lowered by the other work."
    gw_targets gn nm-mesh
    gw_targets gpn nm-addr
    for s in "${GW_VARIANTS[@]}"; do
        case $s in gw_nodemesh) c=nm-mesh ;; gw_nodemesh_plain) c=nm-addr ;; *) c=${s#gw_} ;; esac
        if [[ "${R[$s.status]:-}" != ok ]]; then
            echo "$c: ${R[$s.status]:-not run}."
            continue
        fi
        read -r -a h <<<"${R[$s.h2_counts]:-}"
        if ((${#h[@]} == 5)); then
            echo "$c: h2load (first round): ${h[0]} succeeded, ${h[1]} failed, ${h[2]} errored, ${h[3]} non-2xx, ${h[4]} in flight when the time was up (stopped, not counted); wrk errors ${R[$s.h1_errors]:-?}."
        fi
    done
    return 0
}

# main_wanted: one of the scenarios of the main table was asked for.
main_wanted() { wanted direct || wanted nodemesh || wanted telemetry || wanted haproxy; }

print_report() {
    local rows gw_rows
    rows=$(table_rows)
    gw_rows=$(gw_table_rows)
    if main_wanted; then
        echo
        {
            echo "metric|direct|nodemesh|haproxy|nodemesh/haproxy|nodemesh/direct"
            echo "$rows"
        } | awk -F'|' '{ printf "%-50s %10s %10s %10s %17s %16s\n", $1, $2, $3, $4, $5, $6 }'
        echo
        notes | sed 's/^/  /'
    fi
    echo
    echo "Gateway (HTTP from ext through a proxy on node1 to nginx in n2p1):"
    if wanted gateway; then
        {
            echo "$GW_TABLE_HEAD"
            echo "$gw_rows"
        } | awk -F'|' '{ printf "%-40s %9s %9s %9s %9s %14s %14s %16s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
        echo
        gw_notes | sed 's/^/  /'
    else
        echo "  not run (--only $ONLY)"
    fi
    echo
    echo "Tunnel protocol microbench (in process, loopback TLS; ratios within this run are what counts):"
    if [[ "$MICROBENCH_STATUS" == ok ]]; then echo "$MICROBENCH_TEXT"; else echo "  $MICROBENCH_STATUS"; fi
    echo
    echo "Registry (etcd):"
    echo "  workload add on node2 -> first encrypted flow from node1: $(registry_line)"
    if [[ "$REGISTRY_STATUS" == ok ]]; then echo "$REGISTRY_TEXT"; else echo "  10,000 workloads: $REGISTRY_STATUS"; fi
    if [[ -n "$OUT" ]]; then
        {
            echo "# NodeMesh benchmark ($(date -u +%Y-%m-%dT%H:%MZ))"
            if main_wanted; then
                echo
                echo "| metric | direct | nodemesh | haproxy | nodemesh/haproxy | nodemesh/direct |"
                echo "|---|---:|---:|---:|---:|---:|"
                echo "$rows" | awk -F'|' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }'
                echo
                notes | sed 's/^/- /'
            fi
            echo
            echo "## Gateway"
            echo
            if wanted gateway; then
                echo "| ${GW_TABLE_HEAD//|/ | } |"
                echo "|---|---:|---:|---:|---:|---:|---:|---:|"
                echo "$gw_rows" | awk -F'|' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
                echo
                gw_notes | sed 's/^/- /'
            else
                echo "not run (--only $ONLY)"
            fi
            echo
            echo "## Tunnel protocol microbench"
            echo
            if [[ "$MICROBENCH_STATUS" == ok ]]; then cat "$WORK/microbench.md"; else echo "$MICROBENCH_STATUS"; fi
            echo
            echo "## Registry (etcd)"
            echo
            echo "- workload add on node2 -> first encrypted flow from node1: $(registry_line)"
            echo
            if [[ "$REGISTRY_STATUS" == ok ]]; then cat "$WORK/registry.md"; else echo "10,000 workloads: $REGISTRY_STATUS"; fi
        } >"$OUT"
        echo
        echo "markdown written to $OUT"
    fi
}

wanted() { [[ ",$ONLY," == *",$1,"* ]]; }

# registry_line: the add -> first flow result (median of 5, and each), or why there is none.
registry_line() {
    local f=$WORK/results.registry median all status
    [[ -f "$f" ]] || { echo "not run (--only $ONLY)"; return; }
    median=$(awk -F= '$1 == "registry.add_to_flow_ms" { print $2 }' "$f")
    all=$(awk -F= '$1 == "registry.add_to_flow_all" { print $2 }' "$f")
    status=$(awk -F= '$1 == "registry.status" { print $2 }' "$f")
    if [[ -n "$median" ]]; then echo "median $median ms (each: $all ms)"; else echo "${status:-failed}"; fi
}

# run_wanted SCENARIO: runs it, or records why not.
run_wanted() {
    case $1 in
    nodemesh)
        if ! wanted nodemesh; then
            NODEMESH_NOTE="not run (--only $ONLY)"
            record nodemesh status "not run"
        elif [[ -x "$NODEMESH" ]]; then
            NODEMESH=$(cd "$(dirname "$NODEMESH")" && pwd)/$(basename "$NODEMESH")
            NODEMESH_NOTE="$NODEMESH; pods captured by the agents' iptables rules, same client commands as direct."
            run_scenario nodemesh
        else
            NODEMESH_NOTE="n/a: binary missing ($NODEMESH); build it with ./build.sh publish."
            log "nodemesh: n/a: binary missing ($NODEMESH)"
            record nodemesh status "n/a: binary missing"
        fi
        ;;
    telemetry)
        if wanted telemetry && [[ -x "$NODEMESH" ]]; then run_scenario telemetry; else record telemetry status "not run"; fi
        ;;
    gateway)
        # The variants in the round's order (reversed every other round, as the scenarios are).
        local v
        local -a variants=("${GW_VARIANTS[@]}")
        ((ROUND % 2)) || variants=(gw_haproxy gw_nginx gw_nodemesh_plain gw_nodemesh)
        for v in "${variants[@]}"; do
            if ! wanted gateway; then
                record "$v" status "not run"
            elif [[ "$v" == gw_nodemesh* && ! -x "$NODEMESH" ]]; then
                log "$v: n/a: binary missing ($NODEMESH)"
                record "$v" status "n/a: binary missing"
            else
                run_scenario "$v"
            fi
        done
        ;;
    *) if wanted "$1"; then run_scenario "$1"; else record "$1" status "not run"; fi ;;
    esac
}

main() {
    parse_args "$@"
    check_tools
    WORK=$(mktemp -d /tmp/nodemesh-bench.XXXXXX)
    PREFIX=nmb$(rand_hex 3)
    FAILED=()
    procs_traps on_exit
    log "work dir $WORK, namespaces $PREFIX-*"

    local s
    local -a order
    # The nodemesh binary's full path before any scenario (the gateway's variants use it too).
    if [[ -x "$NODEMESH" ]]; then NODEMESH=$(cd "$(dirname "$NODEMESH")" && pwd)/$(basename "$NODEMESH"); fi
    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        RESULTS=$WORK/results.$ROUND
        : >"$RESULTS"
        MEASURE_IDLE=$((ROUND == 1))
        # telemetry runs next to nodemesh, so the machine's drift touches both alike.
        if ((ROUND % 2)); then order=(direct nodemesh telemetry haproxy gateway); else order=(gateway haproxy telemetry nodemesh direct); fi
        ((ROUNDS == 1)) || log "=== round $ROUND of $ROUNDS ==="
        for s in "${order[@]}"; do run_wanted "$s"; done
    done
    if wanted microbench; then run_microbench; else MICROBENCH_STATUS="not run (--only $ONLY)"; fi
    REGISTRY_STATUS="not run (--only $ONLY)"
    if wanted registry; then
        RESULTS=$WORK/results.registry
        : >"$RESULTS"
        if [[ -x "$NODEMESH" ]]; then run_scenario registry; else record registry status "n/a: binary missing"; fi
        run_registry_bench
    fi

    load_results
    print_report
    if ((${#FAILED[@]} > 0)); then
        die "scenario(s) failed: ${FAILED[*]}"
    fi
}

main "$@"
