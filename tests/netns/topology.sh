#!/usr/bin/env bash
# NodeMesh test topology builder: the single source of truth for the network-namespace
# layouts used by the integration tests, the demo and the benchmark.
#
# Usage (as a command):
#   topology.sh create  PREFIX NODES PODS_PER_NODE   build PREFIX-lan, PREFIX-n<i>, PREFIX-n<i>p<j>, PREFIX-ext
#   topology.sh destroy PREFIX                       remove every namespace PREFIX-* (idempotent)
#   topology.sh env     PREFIX NODES PODS_PER_NODE   print shell-sourceable TOPO_* variables
#   topology.sh ipv6    PREFIX NODES PODS_PER_NODE   add ULA addresses to a created topology (opt-in)
#   topology.sh selftest [NODES PODS_PER_NODE]       build a throw-away topology, ping across it, destroy it
#
# Usage (as a library):
#   source tests/netns/topology.sh
#   topo_create nmt4f2a 2 2 && eval "$(topo_env nmt4f2a 2 2)" ... ; topo_destroy nmt4f2a
#
# Layout (other code depends on it, keep it exactly so):
#   PREFIX-lan         bridge br0 (the "switch"); lan-side veth ends vn<i> (nodes) and vx (ext)
#   PREFIX-n<i>        link0 10.231.0.<i>/24 on the lan; bridge pods0 10.240.<i>.1/24; ip_forward=1;
#                      route 10.240.<k>.0/24 via 10.231.0.<k> for every other node k
#   PREFIX-n<i>p<j>    eth0 10.240.<i>.<j+1>/24, default via 10.240.<i>.1; node-side end vp<j> on pods0
#   PREFIX-ext         eth0 10.231.0.200/24 on the lan, route 10.240.<k>.0/24 via 10.231.0.<k> per node
# With `ipv6` (opt-in; fd00::/8 ULAs, only inside these namespaces), mirroring the IPv4 plan:
#   PREFIX-n<i>        link0 fd00:231::<i>/64; pods0 fd00:240:<i>::1/64; forwarding=1;
#                      route fd00:240:<k>::/64 via fd00:231::<k> for every other node k
#   PREFIX-n<i>p<j>    eth0 fd00:240:<i>::<j+1>/64, default via fd00:240:<i>::1
#   PREFIX-ext         eth0 fd00:231::200/64, route fd00:240:<k>::/64 via fd00:231::<k> per node
# Every interface also has its kernel-made link-local fe80:: address (IPv6 is on in every namespace).
# Every namespace has lo up; node and pod namespaces have rp_filter=0. Veths are created straight
# into their namespaces, so no interface ever appears in the root namespace.

# Limits that keep every address inside its /24 (ext is .200 on the lan, pods are .2 .. .254).
TOPO_MAX_NODES=199
TOPO_MAX_PODS=253
TOPO_EXT_ADDR=10.231.0.200

_topo_err() { printf 'topology.sh: %s\n' "$*" >&2; }

# A prefix is letters, digits and underscores only: no '-', so that "PREFIX-*" never matches the
# namespaces of another prefix (prefix "a" must not destroy "a-b-n1").
_topo_check_prefix() {
    if [[ ! "${1:-}" =~ ^[A-Za-z0-9_]{1,32}$ ]]; then
        _topo_err "invalid PREFIX '${1:-}': use 1-32 letters, digits or '_' (no '-')"
        return 1
    fi
}

_topo_check_counts() {
    local nodes=${1:-} pods=${2:-}
    if [[ ! "$nodes" =~ ^[0-9]+$ ]] || ((nodes < 1 || nodes > TOPO_MAX_NODES)); then
        _topo_err "invalid NODES '$nodes': must be 1..$TOPO_MAX_NODES"
        return 1
    fi
    if [[ ! "$pods" =~ ^[0-9]+$ ]] || ((pods < 1 || pods > TOPO_MAX_PODS)); then
        _topo_err "invalid PODS_PER_NODE '$pods': must be 1..$TOPO_MAX_PODS"
        return 1
    fi
}

_topo_check_tools() {
    local t
    for t in ip sysctl; do
        if ! command -v "$t" >/dev/null 2>&1; then
            _topo_err "'$t' not found; run ./build.sh deps"
            return 1
        fi
    done
    if [[ $EUID -ne 0 ]]; then
        _topo_err "must run as root (network namespaces)"
        return 1
    fi
}

# Names of the existing namespaces that belong to PREFIX.
_topo_list() {
    local prefix=$1 ns
    # `ip netns list` prints "name" or "name (id: N)".
    while read -r ns _; do
        [[ -n "$ns" && "$ns" == "$prefix"-* ]] && printf '%s\n' "$ns"
    done < <(ip netns list 2>/dev/null)
    return 0
}

# Run one creation step; on failure say which step and why.
_topo_step() {
    local what=$1 out
    shift
    if ! out=$("$@" 2>&1); then
        _topo_err "create failed at step '$what': $* -> ${out:-exit status non-zero}"
        return 1
    fi
}

# Sysctls for a node or pod namespace: no reverse-path filtering (the mesh redirects and
# transparently re-sources traffic), no IPv6 duplicate-address-detection delays.
_topo_sysctls() {
    local ns=$1
    _topo_step "sysctl rp_filter in $ns" ip netns exec "$ns" sysctl -qw \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 || return 1
    # IPv6 is not used; these only avoid DAD delays and may be absent if IPv6 is compiled out.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 \
        net.ipv6.conf.default.accept_dad=0 >/dev/null 2>&1 || true
}

_topo_add_ns() {
    local ns=$1
    _topo_step "add namespace $ns" ip netns add "$ns" || return 1
    _topo_step "lo up in $ns" ip -n "$ns" link set lo up || return 1
}

_topo_build() {
    local p=$1 nodes=$2 pods=$3 i j k ns pns lan=$1-lan ext=$1-ext

    # The switch.
    _topo_add_ns "$lan" || return 1
    _topo_step "bridge br0 in $lan" ip -n "$lan" link add br0 type bridge stp_state 0 forward_delay 0 || return 1
    _topo_step "br0 up in $lan" ip -n "$lan" link set br0 up || return 1

    for ((i = 1; i <= nodes; i++)); do
        ns=$p-n$i
        _topo_add_ns "$ns" || return 1
        # Sysctls before the interfaces exist, so the interfaces inherit the defaults.
        _topo_sysctls "$ns" || return 1
        _topo_step "ip_forward in $ns" ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 || return 1

        _topo_step "veth vn$i/link0 for $ns" ip -n "$lan" link add "vn$i" type veth peer name link0 netns "$ns" || return 1
        _topo_step "vn$i on br0" ip -n "$lan" link set "vn$i" master br0 up || return 1
        _topo_step "link0 address in $ns" ip -n "$ns" addr add "10.231.0.$i/24" dev link0 || return 1
        _topo_step "link0 up in $ns" ip -n "$ns" link set link0 up || return 1

        _topo_step "bridge pods0 in $ns" ip -n "$ns" link add pods0 type bridge stp_state 0 forward_delay 0 || return 1
        _topo_step "pods0 address in $ns" ip -n "$ns" addr add "10.240.$i.1/24" dev pods0 || return 1
        _topo_step "pods0 up in $ns" ip -n "$ns" link set pods0 up || return 1

        for ((j = 1; j <= pods; j++)); do
            pns=$p-n${i}p$j
            _topo_add_ns "$pns" || return 1
            _topo_sysctls "$pns" || return 1
            _topo_step "veth vp$j/eth0 for $pns" ip -n "$ns" link add "vp$j" type veth peer name eth0 netns "$pns" || return 1
            _topo_step "vp$j on pods0 in $ns" ip -n "$ns" link set "vp$j" master pods0 up || return 1
            _topo_step "eth0 address in $pns" ip -n "$pns" addr add "10.240.$i.$((j + 1))/24" dev eth0 || return 1
            _topo_step "eth0 up in $pns" ip -n "$pns" link set eth0 up || return 1
            _topo_step "default route in $pns" ip -n "$pns" route add default via "10.240.$i.1" || return 1
        done
    done

    # Routes between nodes' pod subnets (after all link0s exist).
    for ((i = 1; i <= nodes; i++)); do
        for ((k = 1; k <= nodes; k++)); do
            ((k == i)) && continue
            _topo_step "route to node$k pods in $p-n$i" \
                ip -n "$p-n$i" route add "10.240.$k.0/24" via "10.231.0.$k" dev link0 || return 1
        done
    done

    # The non-mesh external host.
    _topo_add_ns "$ext" || return 1
    _topo_step "veth vx/eth0 for $ext" ip -n "$lan" link add vx type veth peer name eth0 netns "$ext" || return 1
    _topo_step "vx on br0" ip -n "$lan" link set vx master br0 up || return 1
    _topo_step "eth0 address in $ext" ip -n "$ext" addr add "$TOPO_EXT_ADDR/24" dev eth0 || return 1
    _topo_step "eth0 up in $ext" ip -n "$ext" link set eth0 up || return 1
    for ((k = 1; k <= nodes; k++)); do
        _topo_step "route to node$k pods in $ext" ip -n "$ext" route add "10.240.$k.0/24" via "10.231.0.$k" dev eth0 || return 1
    done
}

# topo_create PREFIX NODES PODS_PER_NODE
topo_create() {
    if (($# != 3)); then
        _topo_err "usage: topo_create PREFIX NODES PODS_PER_NODE"
        return 2
    fi
    _topo_check_tools || return 1
    _topo_check_prefix "$1" || return 1
    _topo_check_counts "$2" "$3" || return 1
    local existing
    existing=$(_topo_list "$1")
    if [[ -n "$existing" ]]; then
        # Not ours to remove: somebody else's topology (or a leftover) uses this prefix.
        _topo_err "namespaces with prefix '$1-' already exist ($(echo "$existing" | tr '\n' ' ')); run: topology.sh destroy $1"
        return 1
    fi
    if ! _topo_build "$1" "$2" "$3"; then
        _topo_err "removing the partial topology '$1'"
        topo_destroy "$1"
        return 1
    fi
}

# topo_ipv6 PREFIX NODES PODS_PER_NODE: the ULA addresses and routes above, on a topology made by
# topo_create with the same counts. `nodad`, since ext (unlike nodes and pods) does duplicate detection.
topo_ipv6() {
    if (($# != 3)); then
        _topo_err "usage: topo_ipv6 PREFIX NODES PODS_PER_NODE"
        return 2
    fi
    _topo_check_tools || return 1
    _topo_check_prefix "$1" || return 1
    _topo_check_counts "$2" "$3" || return 1
    local p=$1 nodes=$2 pods=$3 i j k ns pns ext=$1-ext
    for ((i = 1; i <= nodes; i++)); do
        ns=$p-n$i
        _topo_step "ipv6 forwarding in $ns" ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.forwarding=1 || return 1
        _topo_step "link0 ipv6 in $ns" ip -n "$ns" -6 addr add "fd00:231::$i/64" dev link0 nodad || return 1
        _topo_step "pods0 ipv6 in $ns" ip -n "$ns" -6 addr add "fd00:240:$i::1/64" dev pods0 nodad || return 1
        for ((j = 1; j <= pods; j++)); do
            pns=$p-n${i}p$j
            _topo_step "eth0 ipv6 in $pns" ip -n "$pns" -6 addr add "fd00:240:$i::$((j + 1))/64" dev eth0 nodad || return 1
            _topo_step "ipv6 default route in $pns" ip -n "$pns" -6 route add default via "fd00:240:$i::1" dev eth0 || return 1
        done
        for ((k = 1; k <= nodes; k++)); do
            ((k == i)) && continue
            _topo_step "ipv6 route to node$k pods in $ns" ip -n "$ns" -6 route add "fd00:240:$k::/64" via "fd00:231::$k" dev link0 || return 1
        done
    done
    _topo_step "eth0 ipv6 in $ext" ip -n "$ext" -6 addr add "fd00:231::200/64" dev eth0 nodad || return 1
    for ((k = 1; k <= nodes; k++)); do
        _topo_step "ipv6 route to node$k pods in $ext" ip -n "$ext" -6 route add "fd00:240:$k::/64" via "fd00:231::$k" dev eth0 || return 1
    done
}

# topo_destroy PREFIX: ends the processes still running in PREFIX-* namespaces (by pid) and deletes
# the namespaces; deleting the lan and node namespaces removes the veths and bridges with them.
# Never fails when there is nothing left to remove.
topo_destroy() {
    if (($# != 1)); then
        _topo_err "usage: topo_destroy PREFIX"
        return 2
    fi
    _topo_check_prefix "$1" || return 1
    local ns pid pids=() left tries
    local -a all
    mapfile -t all < <(_topo_list "$1")
    if ((${#all[@]} == 0)); then
        return 0
    fi

    # A process left in a namespace keeps it alive (and its addresses bound) after `ip netns del`.
    for ns in "${all[@]}"; do
        while read -r pid; do
            [[ "$pid" =~ ^[0-9]+$ ]] && pids+=("$pid")
        done < <(ip netns pids "$ns" 2>/dev/null)
    done
    if ((${#pids[@]} > 0)); then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        for ((tries = 0; tries < 20; tries++)); do
            left=()
            for pid in "${pids[@]}"; do
                kill -0 "$pid" 2>/dev/null && left+=("$pid")
            done
            ((${#left[@]} == 0)) && break
            sleep 0.1
        done
        if ((${#left[@]} > 0)); then
            kill -KILL "${left[@]}" 2>/dev/null || true
        fi
    fi

    # Pods first, then nodes, ext and the switch (order only matters for tidiness).
    for ns in "${all[@]}"; do
        if [[ "$ns" =~ -n[0-9]+p[0-9]+$ ]]; then
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    for ns in "${all[@]}"; do
        if [[ -e "/var/run/netns/$ns" ]]; then
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    left=()
    mapfile -t left < <(_topo_list "$1")
    if ((${#left[@]} > 0)); then
        _topo_err "warning: could not remove: ${left[*]}"
    fi
    return 0
}

# topo_env PREFIX NODES PODS_PER_NODE: prints KEY=value lines (values need no quoting).
topo_env() {
    if (($# != 3)); then
        _topo_err "usage: topo_env PREFIX NODES PODS_PER_NODE"
        return 2
    fi
    _topo_check_prefix "$1" || return 1
    _topo_check_counts "$2" "$3" || return 1
    local p=$1 nodes=$2 pods=$3 i j
    printf 'TOPO_PREFIX=%s\nTOPO_NODES=%s\nTOPO_PODS_PER_NODE=%s\n' "$p" "$nodes" "$pods"
    printf 'TOPO_LAN=%s\nTOPO_LAN_BRIDGE=br0\nTOPO_LAN_CIDR=10.231.0.0/24\n' "$p-lan"
    printf 'TOPO_EXT_NS=%s\nTOPO_EXT_IP=%s\nTOPO_EXT_NETNS=/var/run/netns/%s\n' "$p-ext" "$TOPO_EXT_ADDR" "$p-ext"
    for ((i = 1; i <= nodes; i++)); do
        printf 'TOPO_NODE%d_NS=%s\n' "$i" "$p-n$i"
        printf 'TOPO_NODE%d_NETNS=/var/run/netns/%s\n' "$i" "$p-n$i"
        printf 'TOPO_NODE%d_NAME=node%d\n' "$i" "$i"
        printf 'TOPO_NODE%d_IP=10.231.0.%d\n' "$i" "$i"
        printf 'TOPO_NODE%d_IF=link0\n' "$i"
        printf 'TOPO_NODE%d_POD_GW=10.240.%d.1\n' "$i" "$i"
        printf 'TOPO_NODE%d_POD_CIDR=10.240.%d.0/24\n' "$i" "$i"
        for ((j = 1; j <= pods; j++)); do
            printf 'TOPO_N%dP%d_NS=%s\n' "$i" "$j" "$p-n${i}p$j"
            printf 'TOPO_N%dP%d_NETNS=/var/run/netns/%s\n' "$i" "$j" "$p-n${i}p$j"
            printf 'TOPO_N%dP%d_NAME=n%dp%d\n' "$i" "$j" "$i" "$j"
            printf 'TOPO_N%dP%d_IP=10.240.%d.%d\n' "$i" "$j" "$i" "$((j + 1))"
        done
    done
}

# topo_selftest [NODES PODS]: every pod reaches every other pod, ext and back; then destroy.
# Uses ping when present, otherwise a TCP connect to a socat listener started in each namespace
# (destroy ends those listeners with the namespaces).
topo_selftest() {
    local nodes=${1:-2} pods=${2:-2} p rc=0 i j k l src dst probe=tcp ns
    _topo_check_counts "$nodes" "$pods" || return 1
    if command -v ping >/dev/null 2>&1; then
        probe=ping
    elif ! command -v socat >/dev/null 2>&1; then
        _topo_err "selftest needs ping or socat; run ./build.sh deps"
        return 1
    fi
    p=nmst$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
    topo_create "$p" "$nodes" "$pods" || return 1
    if [[ $probe == tcp ]]; then
        for ns in $(_topo_list "$p"); do
            [[ $ns == "$p-lan" ]] && continue
            ip netns exec "$ns" socat TCP-LISTEN:7,fork,reuseaddr EXEC:/bin/true >/dev/null 2>&1 &
        done
        sleep 0.3
    fi
    _topo_probe() { # NS DST
        local ok=0
        if [[ $probe == ping ]]; then
            ip netns exec "$1" ping -c1 -W2 -q "$2" >/dev/null 2>&1 || ok=1
        else
            ip netns exec "$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/7" 2>/dev/null || ok=1
        fi
        if ((ok == 0)); then
            printf '  ok    %-20s -> %s (%s)\n' "$1" "$2" "$probe"
        else
            printf '  FAIL  %-20s -> %s (%s)\n' "$1" "$2" "$probe"
        fi
        return "$ok"
    }
    for ((i = 1; i <= nodes; i++)); do
        for ((j = 1; j <= pods; j++)); do
            src=$p-n${i}p$j
            for ((k = 1; k <= nodes; k++)); do
                for ((l = 1; l <= pods; l++)); do
                    ((i == k && j == l)) && continue
                    dst=10.240.$k.$((l + 1))
                    _topo_probe "$src" "$dst" || rc=1
                done
            done
            _topo_probe "$src" "$TOPO_EXT_ADDR" || rc=1
            _topo_probe "$p-ext" "10.240.$i.$((j + 1))" || rc=1
        done
    done
    topo_destroy "$p"
    if [[ -n "$(_topo_list "$p")" ]]; then
        _topo_err "selftest: namespaces left behind"
        rc=1
    fi
    if ((rc == 0)); then
        echo "selftest: ok ($nodes nodes x $pods pods, destroyed)"
    fi
    return "$rc"
}

_topo_usage() {
    cat >&2 <<'EOF'
usage: topology.sh create  PREFIX NODES PODS_PER_NODE
       topology.sh destroy PREFIX
       topology.sh env     PREFIX NODES PODS_PER_NODE
       topology.sh ipv6    PREFIX NODES PODS_PER_NODE
       topology.sh selftest [NODES PODS_PER_NODE]
PREFIX: 1-32 letters, digits or '_'. Or `source` this file and call topo_create/topo_destroy/topo_env.
EOF
}

topo_main() {
    local cmd=${1:-}
    (($# > 0)) && shift
    case "$cmd" in
    create) topo_create "$@" ;;
    destroy) topo_destroy "$@" ;;
    env) topo_env "$@" ;;
    ipv6) topo_ipv6 "$@" ;;
    selftest) topo_selftest "$@" ;;
    -h | --help | help)
        _topo_usage
        return 0
        ;;
    *)
        _topo_usage
        return 2
        ;;
    esac
}

# Runnable as a command, or sourced as a library (then it changes no shell options).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    topo_main "$@"
fi
