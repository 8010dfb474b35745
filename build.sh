#!/usr/bin/env bash
# NodeMesh: one entry point for building, testing, publishing (Native AOT), the demo and the benchmark.
#   ./build.sh demo     build the AOT binaries and run the demo (needs root)
#   ./build.sh test     unit and integration tests (needs root: namespaces, iptables)
# Run ./build.sh help for the rest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ARTIFACTS="$ROOT/artifacts"
BIN="$ARTIFACTS/bin"
CONFIGURATION="${CONFIGURATION:-Release}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# Debian packages the tests, the demo and the benchmark use (command -> package).
DEPS=(
  "iptables:iptables" "ip6tables:iptables" "ip:iproute2" "nsenter:util-linux" "curl:curl" "iperf3:iperf3" "tcpdump:tcpdump"
  "haproxy:haproxy" "wrk:wrk" "socat:socat" "conntrack:conntrack" "openssl:openssl" "nginx:nginx-light"
  "python3:python3" "gcc:gcc" "ping:iputils-ping"
)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

usage() {
  cat <<'USAGE'
Usage: ./build.sh COMMAND
  deps      install the Debian packages the tests, demo and benchmark need (only what is missing)
  build     compile everything (warnings are errors)
  publish   Native AOT binaries: artifacts/bin/nodemesh and artifacts/bin/nodemesh-cni
  test      deps + publish + all tests (unit and integration; needs root) with a summary
  demo      deps + publish + the demo: 2 nodes x 2 pods in network namespaces, real traffic, a summary
  bench     deps + publish + the benchmark against direct traffic and a haproxy mTLS pair
            (./build.sh bench --quick for a short run)
  clean     remove build output
USAGE
}

require_root() {
  [[ $(id -u) -eq 0 ]] || die "'$1' needs root (network namespaces, iptables); run it with sudo or as root"
}

require_dotnet() {
  command -v dotnet >/dev/null || die "the .NET 10 SDK is required (https://dot.net); 'dotnet' is not on PATH"
}

deps() {
  local missing=() entry cmd pkg
  for entry in "${DEPS[@]}"; do
    cmd="${entry%%:*}"; pkg="${entry#*:}"
    if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$cmd" ]]; then missing+=("$pkg"); fi
  done
  if ((${#missing[@]} == 0)); then return 0; fi
  require_root deps
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
  require_dotnet
  log "build ($CONFIGURATION)"
  dotnet build "$ROOT/NodeMesh.sln" -c "$CONFIGURATION" -warnaserror -nologo -v quiet
}

publish() {
  require_dotnet
  log "publish Native AOT -> $BIN"
  mkdir -p "$BIN"
  dotnet publish "$ROOT/agent/NodeMesh.Agent.csproj" -c Release -o "$BIN" -nologo -v quiet
  dotnet publish "$ROOT/shim/NodeMesh.Shim.csproj" -c Release -o "$BIN" -nologo -v quiet
  rm -f "$BIN"/*.pdb "$BIN"/*.dbg
  ls -l "$BIN/nodemesh" "$BIN/nodemesh-cni" >&2
}

run_tests() {
  require_root test
  deps
  publish
  log "tests"
  NODEMESH_BIN="$BIN/nodemesh" dotnet test "$ROOT/tests/NodeMesh.Tests/NodeMesh.Tests.csproj" -c "$CONFIGURATION" -nologo \
    --logger "console;verbosity=normal" "$@"
}

case "${1:-help}" in
  deps) deps ;;
  build) build ;;
  publish) publish ;;
  test) shift; run_tests "$@" ;;
  demo) require_root demo; deps; publish; shift; exec "$ROOT/tests/demo/run-demo.sh" --nodemesh "$BIN/nodemesh" "$@" ;;
  bench) require_root bench; deps; publish; shift; exec "$ROOT/tests/bench/run-bench.sh" --nodemesh "$BIN/nodemesh" "$@" ;;
  clean) rm -rf "$ARTIFACTS"; find "$ROOT" -type d \( -name bin -o -name obj \) -prune -exec rm -rf {} + ;;
  help|-h|--help) usage ;;
  *) usage; exit 2 ;;
esac
