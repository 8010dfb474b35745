#!/usr/bin/env bash
# NodeMesh demo: two nodes with two pods each, one agent per node, real traffic between pods, and
# proof from a packet capture of the node link that no pod plaintext crosses it.
#
#   node1: n1p1 (client), n1p2 (HTTP)          node2: n2p1 (HTTP), n2p2 (iperf3 sink)
#   ext:   a host outside the mesh (HTTP)
#
# Traffic from n1p1: HTTP to n2p1 (cross-node, the request carries a random marker), HTTP to n1p2
# (same node), 100 MB to n2p2 (cross-node bulk), HTTP to ext (passthrough, plaintext by design).
# Checks on the capture of node1's link: the marker never appears, the tunnel port 15008 does,
# no packet goes pod-to-pod in the clear, and a control token sent in the clear to ext is found
# (so the capture demonstrably sees plaintext when there is some).
#
# Usage: tests/demo/run-demo.sh [--nodemesh PATH] [--keep]   (./build.sh demo builds and passes PATH)
#   --keep   keep the temp dir (capture, configs, logs) to inspect; namespaces and processes still go
# Everything (agents, servers, tcpdump, namespaces, temp dir) is removed on exit, failure or Ctrl-C.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../netns/topology.sh
source "$SCRIPT_DIR/../netns/topology.sh"
# bg, stop_pid, wait_port, rand_hex, the cleanup traps and the agent start-up.
# shellcheck source-path=SCRIPTDIR source=../netns/procs.sh
source "$SCRIPT_DIR/../netns/procs.sh"

NODEMESH=$REPO_DIR/artifacts/bin/nodemesh
TRUST_DOMAIN=cluster.local
HTTP_PORT=8080
BULK_PORT=5201
TUNNEL_PORT=15008
KEEP=0

# Colours only on a terminal.
if [[ -t 1 ]]; then B=$'\033[1m' RED=$'\033[31m' GREEN=$'\033[32m' N=$'\033[0m'; else B='' RED='' GREEN='' N=''; fi
say() { printf '%s==> %s%s\n' "$B" "$*" "$N"; }
info() { printf '    %s\n' "$*"; }
die() {
    printf '%sdemo FAILED: %s%s\n' "$RED" "$*" "$N" >&2
    exit 1
}

parse_args() {
    while (($# > 0)); do
        case "$1" in
        --nodemesh)
            NODEMESH=${2:?--nodemesh needs a path}
            shift 2
            ;;
        --keep)
            KEEP=1
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument: $1 (usage: run-demo.sh [--nodemesh PATH] [--keep])" ;;
        esac
    done
}

check_tools() {
    local t missing=()
    for t in ip ss iptables curl iperf3 tcpdump nginx awk grep od; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} - run ./build.sh deps"
    [[ $EUID -eq 0 ]] || die "must run as root (network namespaces, iptables)"
    [[ -x "$NODEMESH" ]] || die "nodemesh binary not found at $NODEMESH - build it with ./build.sh publish (or run ./build.sh demo)"
    NODEMESH=$(cd "$(dirname "$NODEMESH")" && pwd)/$(basename "$NODEMESH")
}

# ---------------------------------------------------------------------------------------------
# Cleanup (procs.sh stops every process, removes the namespaces and, without --keep, the temp dir).

# on_exit RC: runs first, while the agent logs are still there.
on_exit() {
    local rc=$1 i
    if ((rc != 0)) && [[ -n "${WORK:-}" ]]; then
        # Leave the evidence on screen before the temp dir goes.
        for i in 1 2; do
            if [[ -s "$WORK/agent-n$i.log" ]]; then
                printf '\n--- last lines of the node%d agent log ---\n' "$i" >&2
                tail -n 25 "$WORK/agent-n$i.log" >&2
            fi
        done
    fi
    echo "==> cleaning up"
    if ((KEEP)) && [[ -n "${WORK:-}" && -d "$WORK" ]]; then
        echo "    kept $WORK (capture: $WORK/node1-link0.pcap)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Mesh set-up.

start_mesh() {
    local i
    say "Creating the CA (trust domain $TRUST_DOMAIN)"
    mesh_ca_init
    info "CA certificate and key in $WORK/ca"
    say "Starting one agent per node"
    mesh_start_agents 2 demo
    for i in 1 2; do
        mesh_wait_ready "$i" 2 || die "$MESH_ERROR"
        info "node$i agent ready (pid ${AGENT_PIDS[i - 1]}), workloads n${i}p1 n${i}p2"
    done
}

# ---------------------------------------------------------------------------------------------
# Servers and traffic.

# nginx_server NAME NS PORT BODY: an nginx answering BODY on every path.
nginx_server() {
    local name=$1 ns=$2 port=$3 body=$4 dir=$WORK/$1
    nginx_run "$name" "$ns" "$port" "default_type text/plain; return 200 \"$body\\n\";" || die "nginx ($name): config refused: $(cat "$dir/error.log" 2>/dev/null)"
    wait_port "$ns" "$port" || die "nginx ($name) did not start: $(cat "$dir/error.log" "$WORK/$name.log" 2>/dev/null)"
}

start_servers() {
    say "Starting servers"
    nginx_server http-n2p1 "$PREFIX-n2p1" "$HTTP_PORT" "hello from n2p1 (node2) $MARKER"
    info "n2p1 10.240.2.2:$HTTP_PORT  HTTP, body carries the marker"
    nginx_server http-n1p2 "$PREFIX-n1p2" "$HTTP_PORT" "hello from n1p2 (node1) $MARKER"
    info "n1p2 10.240.1.3:$HTTP_PORT  HTTP, body carries the marker"
    bg iperf3-n2p2 "$PREFIX-n2p2" iperf3 -s -p "$BULK_PORT"
    wait_port "$PREFIX-n2p2" "$BULK_PORT" || die "iperf3 -s did not start in n2p2"
    info "n2p2 10.240.2.3:$BULK_PORT  iperf3 bulk sink"
    nginx_server http-ext "$PREFIX-ext" 80 "hello from outside the mesh"
    info "ext  10.231.0.200:80    HTTP, not in the mesh"
}

start_capture() {
    say "Capturing node1's link (link0) with tcpdump"
    PCAP=$WORK/node1-link0.pcap
    # -U --immediate-mode: no packet waits in a kernel or stdio buffer when we stop it (libpcap hands
    # packets over in blocks otherwise, and the last ones are lost); -Z root: keep writing in our
    # root-only temp dir after tcpdump drops privileges; -B: a 64 MiB buffer so the bulk transfer
    # does not make it drop packets.
    bg tcpdump "$PREFIX-n1" tcpdump -i link0 -nn -U --immediate-mode -B 65536 -Z root -w "$PCAP"
    TCPDUMP_PID=$BG_PID
    local i
    for ((i = 0; i < 50; i++)); do
        grep -q 'listening on' "$WORK/tcpdump.log" 2>/dev/null && break
        kill -0 "$TCPDUMP_PID" 2>/dev/null || die "tcpdump failed: $(cat "$WORK/tcpdump.log")"
        sleep 0.1
    done
    info "writing $PCAP"
}

# http_check NAME URL EXPECTED [CURL ARGS...]: GET from n1p1, the body must contain EXPECTED.
http_check() {
    local name=$1 url=$2 want=$3 body
    shift 3
    if ! body=$(ip netns exec "$PREFIX-n1p1" curl -sS --fail --max-time 10 "$@" "$url" 2>&1); then
        die "$name: curl $url failed: $body"
    fi
    [[ "$body" == *"$want"* ]] || die "$name: unexpected answer from $url: $body"
    info "ok  $name: $url -> \"$body\""
}

send_traffic() {
    say "Sending traffic from n1p1 (10.240.1.2)"
    http_check "cross-node HTTP" "http://10.240.2.2:$HTTP_PORT/" "$MARKER" -H "X-Demo-Marker: $MARKER"
    http_check "same-node HTTP " "http://10.240.1.3:$HTTP_PORT/" "$MARKER" -H "X-Demo-Marker: $MARKER"
    local out
    if ! out=$(ip netns exec "$PREFIX-n1p1" timeout 120 iperf3 -c 10.240.2.3 -p "$BULK_PORT" -n 100M -f m --connect-timeout 5000 2>&1); then
        die "bulk transfer to n2p2 failed: $out"
    fi
    info "ok  cross-node bulk: 100 MB to 10.240.2.3:$BULK_PORT, $(awk '/receiver/ { print $(NF-2), $(NF-1) }' <<<"$out" | tail -1)"
    # Passthrough to a non-mesh host is plaintext by design: it carries a control token (never
    # the marker) that the capture must find.
    http_check "passthrough    " "http://10.231.0.200/" "outside the mesh" -H "X-Demo-Control: $CONTROL"
    # The policy 'deny-n1p2-to-n2p1' (both agents): n1p2 may not reach n2p1; node2's agent refuses it.
    local denied
    if denied=$(ip netns exec "$PREFIX-n1p2" curl -sS --fail --max-time 10 "http://10.240.2.2:$HTTP_PORT/" 2>&1); then
        OPS_FAIL+=("n1p2 reached n2p1 although the policy deny-n1p2-to-n2p1 denies it: $denied")
    else
        info "ok  denied         : n1p2 -> http://10.240.2.2:$HTTP_PORT/ refused by policy deny-n1p2-to-n2p1"
    fi
}

# What an operator looks at: the denial with both identities, readiness, a few metrics with their labels, and status.
show_operator_view() {
    say "The denial, as node2's agent reports it (nodemesh flows --denied)"
    local out
    out=$("$NODEMESH" flows --socket "$WORK/n2/agent.sock" --denied -o wide 2>&1) || OPS_FAIL+=("nodemesh flows --denied failed: $out")
    while IFS= read -r line; do info "$line"; done <<<"$out"
    grep -q "ns/demo/sa/n1p2" <<<"$out" || OPS_FAIL+=("node2 lists no denial from n1p2's identity")

    say "Readiness (curl http://10.231.0.1:15021/healthz/ready from ext)"
    out=$(ip netns exec "$PREFIX-ext" curl -sS --max-time 5 -w ' (HTTP %{http_code})' http://10.231.0.1:15021/healthz/ready 2>&1)
    info "$(tr -s ' \n' ' ' <<<"$out")"
    [[ "$out" == *"HTTP 200"* ]] || OPS_FAIL+=("node1 is not ready: $out")

    say "Metrics (curl http://10.231.0.2:15020/metrics from ext, Istio's TCP series)"
    out=$(ip netns exec "$PREFIX-ext" curl -sS --max-time 5 http://10.231.0.2:15020/metrics 2>&1)
    grep -E '^istio_tcp_connections_closed_total' <<<"$out" | sed -e 's/otel_scope_name="NodeMesh",//' | head -4 | while IFS= read -r line; do info "$line"; done
    grep -q 'istio_tcp_connections_closed_total.*response_flags="DENIED"' <<<"$out" || OPS_FAIL+=("node2's metrics show no DENIED connection")

    say "nodemesh status (node1)"
    out=$("$NODEMESH" status --socket "$WORK/n1/agent.sock" 2>&1) || OPS_FAIL+=("nodemesh status failed: $out")
    while IFS= read -r line; do info "$line"; done <<<"$out"
}

stop_capture() {
    sleep 0.5 # let the last packets (FINs) land in the capture
    stop_pid "$TCPDUMP_PID"
}

# ---------------------------------------------------------------------------------------------
# Verdicts.

pcap_count() { # FILTER -> number of packets in the capture matching it
    tcpdump -r "$PCAP" -nn "$@" 2>/dev/null | wc -l
}

check_capture() {
    say "Inspecting the capture of node1's link"
    local total tls clear_pods marker control dropped
    total=$(pcap_count)
    # tcpdump's own count of packets it could not capture: the search only covers what it saw.
    dropped=$(awk '/packets dropped by kernel/ { print $1 }' "$WORK/tcpdump.log")
    tls=$(pcap_count "port $TUNNEL_PORT")
    # Pod-to-pod packets that are not tunnel packets would be plaintext between pods.
    clear_pods=$(pcap_count "ip and src net 10.240.0.0/16 and dst net 10.240.0.0/16 and not port $TUNNEL_PORT")
    # The raw bytes of the pcap: a marker anywhere in any packet shows up here.
    marker=$(grep -a -c -F "$MARKER" "$PCAP" || true)
    control=$(grep -a -c -F "$CONTROL" "$PCAP" || true)
    info "packets captured:                     $total (dropped by kernel: ${dropped:-?})"
    info "packets on the tunnel port $TUNNEL_PORT:      $tls"
    info "pod-to-pod packets outside the tunnel: $clear_pods"
    info "control token (plaintext to ext) found: $control time(s)  (proves the capture sees plaintext)"
    info "marker $MARKER found: $marker time(s)"
    VERDICT_FAIL=()
    ((total > 0)) || VERDICT_FAIL+=("the capture is empty")
    [[ "${dropped:-0}" == 0 ]] || VERDICT_FAIL+=("tcpdump dropped ${dropped} packets: the capture is incomplete")
    ((tls > 0)) || VERDICT_FAIL+=("no packets on the tunnel port $TUNNEL_PORT")
    ((clear_pods == 0)) || VERDICT_FAIL+=("$clear_pods pod-to-pod packets crossed the node link outside the tunnel")
    ((control > 0)) || VERDICT_FAIL+=("the plaintext control token is missing from the capture (capture broken?)")
    ((marker == 0)) || VERDICT_FAIL+=("the marker appears in the capture $marker time(s): PLAINTEXT LEAK")
    CAPTURE_TOTAL=$total
    CAPTURE_TLS=$tls
}

# json_field LINE KEY: the value of KEY in a flat JSON object (strings unquoted).
json_field() {
    local re="\"$2\"[[:space:]]*:[[:space:]]*(\"([^\"]*)\"|([^,}[:space:]]*))"
    if [[ "$1" =~ $re ]]; then
        printf '%s' "${BASH_REMATCH[2]}${BASH_REMATCH[3]}"
    fi
}

short_id() { # spiffe://cluster.local/ns/demo/sa/x -> ns/demo/sa/x; none -> "-"
    if [[ -n "$1" ]]; then printf '%s' "${1#spiffe://"$TRUST_DOMAIN"/}"; else printf -- '-'; fi
}

show_flows() {
    say "Flows reported by the agents (nodemesh flows --json)"
    local i line raw n=0 enc src dst
    local fmt='%-6s %-8s %-21s %-21s %-11s %-36s %10s %10s %s\n'
    # shellcheck disable=SC2059
    printf "    $fmt" agent dir source destination path "source id -> destination id" sent received encrypted
    FLOW_FAIL=()
    for i in 1 2; do
        if ! raw=$("$NODEMESH" flows --socket "$WORK/n$i/agent.sock" --json 2>&1); then
            FLOW_FAIL+=("nodemesh flows failed on node$i: $raw")
            continue
        fi
        if ! grep -q '^[[:space:]]*{' <<<"$raw"; then
            # Not the JSON lines we expect: show what the agent printed rather than guess.
            info "node$i (raw):"
            while IFS= read -r line; do info "  $line"; done <<<"$raw"
            continue
        fi
        while IFS= read -r line; do
            [[ "$line" =~ ^[[:space:]]*\{ ]] || continue
            n=$((n + 1))
            enc=$(json_field "$line" encrypted)
            src=$(json_field "$line" source)
            dst=$(json_field "$line" destination)
            # shellcheck disable=SC2059
            printf "    $fmt" "node$i" "$(json_field "$line" direction)" "$src" "$dst" \
                "$(json_field "$line" path)" \
                "$(short_id "$(json_field "$line" sourceIdentity)") -> $(short_id "$(json_field "$line" destinationIdentity)")" \
                "$(json_field "$line" bytesSent)" "$(json_field "$line" bytesReceived)" \
                "$([[ $enc == true ]] && echo yes || echo no)"
            # A flow between two nodes' pods that carried anything must be encrypted (the denied one carried nothing).
            if [[ "$src" == 10.240.1.* && "$dst" == 10.240.2.* || "$src" == 10.240.2.* && "$dst" == 10.240.1.* ]] &&
                [[ $enc != true && "$(json_field "$line" outcome)" != Denied && "$(json_field "$line" outcome)" != Refused ]]; then
                FLOW_FAIL+=("node$i reports the cross-node flow $src -> $dst as not encrypted")
            fi
        done <<<"$raw"
    done
    ((n > 0)) || info "(no JSON flows reported)"
}

main() {
    parse_args "$@"
    check_tools
    WORK=$(mktemp -d /tmp/nodemesh-demo.XXXXXX)
    PREFIX=nmd$(rand_hex 3)
    MARKER=NODEMESH-MARKER-$(rand_hex 8)
    CONTROL=NODEMESH-CONTROL-$(rand_hex 8)
    procs_traps on_exit

    say "Building the topology: 2 nodes x 2 pods + an external host (namespaces $PREFIX-*)"
    topo_create "$PREFIX" 2 2 || die "could not create the topology"
    info "node1 10.231.0.1 pods 10.240.1.2 (n1p1) 10.240.1.3 (n1p2); node2 10.231.0.2 pods 10.240.2.2 (n2p1) 10.240.2.3 (n2p2); ext 10.231.0.200"
    OPS_FAIL=()
    # shellcheck disable=SC2034 # read by agent_config (tests/netns/procs.sh)
    MESH_POLICIES='[ { "name": "deny-n1p2-to-n2p1", "action": "DENY", "selector": { "identities": ["spiffe://'"$TRUST_DOMAIN"'/ns/demo/sa/n2p1"] },
      "rules": [ { "from": { "principals": ["spiffe://'"$TRUST_DOMAIN"'/ns/demo/sa/n1p2"] } } ] } ]'
    start_mesh
    start_servers
    start_capture
    send_traffic
    stop_capture
    check_capture
    show_flows
    show_operator_view

    echo
    local failures=("${VERDICT_FAIL[@]}" "${FLOW_FAIL[@]}" "${OPS_FAIL[@]}")
    if ((${#failures[@]} > 0)); then
        printf '    - %s\n' "${failures[@]}" >&2
        die "$((${#failures[@]})) check(s) failed"
    fi
    printf '%splaintext on node link: none (marker searched in %s packets; %s tunnel packets on port %s)%s\n' \
        "$GREEN" "$CAPTURE_TOTAL" "$CAPTURE_TLS" "$TUNNEL_PORT" "$N"
}

main "$@"
