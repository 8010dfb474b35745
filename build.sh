#!/usr/bin/env bash
# NodeMesh: one entry point for building, testing, publishing (Native AOT), the demo and the benchmark.
#   ./build.sh demo     build the AOT binaries and run the demo (needs root)
#   ./build.sh test     unit and integration tests (needs root: namespaces, iptables)
#   ./build.sh package  the .deb: artifacts/nodemesh_<version>_amd64.deb
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
  "python3:python3" "gcc:gcc" "ping:iputils-ping" "prometheus:prometheus" "chromium:chromium"
  "dpkg-deb:dpkg" "lintian:lintian" "systemd-analyze:systemd" "groff:groff-base" "man:man-db"
  "etcd:etcd-server" "etcdctl:etcd-client" "/usr/lib/cni/bridge:containernetworking-plugins" "jq:jq"
  "h2load:nghttp2-client" "/usr/lib/python3/dist-packages/websockets:python3-websockets" "/usr/lib/python3/dist-packages/h2:python3-h2"
  "/usr/lib/python3/dist-packages/grpc:python3-grpcio"
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
  bench     deps + publish + the benchmark: the mesh against direct traffic and a haproxy mTLS pair, the
            gateway against nginx and haproxy as reverse proxies (./build.sh bench --quick for a short run;
            --only direct,nodemesh,telemetry,haproxy,gateway,microbench,registry for some of them)
  package   publish + artifacts/nodemesh_<version>_amd64.deb (binaries, hardened systemd unit, default
            config, man page); --bin DIR packages the binaries in DIR instead, --out DIR writes the .deb there
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
    # A command on PATH or in /usr/sbin, or a full path (the CNI reference plug-ins are not on PATH).
    if [[ "$cmd" == /* ]]; then [[ -x "$cmd" ]] || missing+=("$pkg"); continue; fi
    if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$cmd" ]]; then missing+=("$pkg"); fi
  done
  if ((${#missing[@]} == 0)); then return 0; fi
  # One package can provide several commands (iptables and ip6tables): name each once.
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
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
  local output="$ARTIFACTS/test-output.log" status=0
  NODEMESH_BIN="$BIN/nodemesh" dotnet test "$ROOT/tests/NodeMesh.Tests/NodeMesh.Tests.csproj" -c "$CONFIGURATION" -nologo \
    --logger "console;verbosity=normal" "$@" 2>&1 | tee "$output" || status=$?
  if ((status != 0)); then
    # CI keeps only the end of the output: repeat each failure (name, message, the top of its stack) before
    # the summary, so the failing test is named where it will be read.
    log "failed tests (the whole output: $output)"
    awk '/^  Failed [A-Za-z]/ { n = 30 } n > 0 { print; n-- }' "$output"
    log "failed: $(grep -E '^  Failed [A-Za-z]' "$output" | sed 's/^  Failed //; s/ \[.*//' | sort -u | paste -sd' ')"
    awk '/^Test Run (Failed|Successful)/ { p = 1 } p' "$output"
  fi
  return "$status"
}

# The .deb. Its version is the agent's own (`nodemesh version`, from the assembly's Version), with Debian revision 1.
package() {
  local bin="" out="$ARTIFACTS"
  while (($#)); do
    case "$1" in
      --bin) bin="${2:?--bin needs a directory}"; shift 2 ;;
      --out) out="${2:?--out needs a directory}"; shift 2 ;;
      *) die "package: unknown option '$1' (--bin DIR, --out DIR)" ;;
    esac
  done
  command -v dpkg-deb >/dev/null || die "package: dpkg-deb is missing; run ./build.sh deps"
  if [[ -z "$bin" ]]; then publish; bin="$BIN"; fi
  [[ -x "$bin/nodemesh" && -x "$bin/nodemesh-cni" ]] || die "package: no nodemesh and nodemesh-cni binaries in $bin"
  local upstream version root deb pkg="$ROOT/packaging"
  upstream="$("$bin/nodemesh" version | awk '{ print $2 }')"
  upstream="${upstream%%+*}"
  [[ "$upstream" =~ ^[0-9][0-9A-Za-z.~]*$ ]] || die "package: '$upstream' (from nodemesh version) is not a Debian upstream version"
  version="$upstream-1"
  root="$(mktemp -d)"; chmod 0755 "$root"
  trap 'rm -rf "$root"' RETURN
  install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/nodemesh" \
    "$root/usr/share/man/man1" "$root/usr/share/doc/nodemesh" "$root/usr/share/lintian/overrides"
  install -d -m 0700 "$root/var/lib/nodemesh"
  install -m 0755 "$bin/nodemesh" "$bin/nodemesh-cni" "$root/usr/bin/"
  # Where Debian's container runtimes look for CNI plug-ins (containernetworking-plugins installs there too).
  install -d -m 0755 "$root/usr/lib/cni"
  ln -s ../../bin/nodemesh-cni "$root/usr/lib/cni/nodemesh-cni"
  install -m 0644 "$pkg/nodemesh.service" "$root/lib/systemd/system/nodemesh.service"
  install -m 0644 "$pkg/config.json" "$root/etc/nodemesh/config.json"
  gzip -9n < "$pkg/man/nodemesh.1" > "$root/usr/share/man/man1/nodemesh.1.gz"
  install -m 0644 "$pkg/deb/copyright" "$ROOT/README.md" "$root/usr/share/doc/nodemesh/"
  install -m 0644 "$pkg/deb/lintian-overrides" "$root/usr/share/lintian/overrides/nodemesh"
  sed -e "s/@VERSION@/$version/" -e "s/@DATE@/$(date -R -u -d "@$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)")/" \
    "$pkg/deb/changelog" | gzip -9n > "$root/usr/share/doc/nodemesh/changelog.Debian.gz"
  chmod 0644 "$root/usr/share/man/man1/nodemesh.1.gz" "$root/usr/share/doc/nodemesh/changelog.Debian.gz"
  install -m 0755 "$pkg/deb/postinst" "$pkg/deb/prerm" "$pkg/deb/postrm" "$root/DEBIAN/"
  install -m 0644 "$pkg/deb/conffiles" "$root/DEBIAN/"
  sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$(du -sk --exclude=DEBIAN "$root" | cut -f1)/" "$pkg/deb/control" > "$root/DEBIAN/control"
  # Every file but the conffile (dpkg keeps the conffile's own checksum).
  (cd "$root" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
  chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
  mkdir -p "$out"
  deb="$out/nodemesh_${version}_amd64.deb"
  dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
  log "package -> $deb"
  echo "$deb"
}

case "${1:-help}" in
  deps) deps ;;
  build) build ;;
  publish) publish ;;
  test) shift; run_tests "$@" ;;
  demo) require_root demo; deps; publish; shift; exec "$ROOT/tests/demo/run-demo.sh" --nodemesh "$BIN/nodemesh" "$@" ;;
  package) shift; package "$@" ;;
  bench) require_root bench; deps; publish; shift; exec "$ROOT/tests/bench/run-bench.sh" --nodemesh "$BIN/nodemesh" "$@" ;;
  clean) rm -rf "$ARTIFACTS"; find "$ROOT" -type d \( -name bin -o -name obj \) -prune -exec rm -rf {} + ;;
  help|-h|--help) usage ;;
  *) usage; exit 2 ;;
esac
