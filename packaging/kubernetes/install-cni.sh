#!/bin/sh
# install-cni.sh: installs nodemesh-cni on this node and chains it into the node's primary CNI configuration.
# Run by the DaemonSet's initContainer (packaging/kubernetes/daemonset.yaml) with the host's /opt/cni/bin and
# /etc/cni/net.d mounted; needs only sh, cp/mv/cmp/mktemp and jq.
#
#   install-cni.sh            install (or update) the binary and the chained entry
#   install-cni.sh uninstall  remove the entry from every configuration list (the binary stays)
#
# The primary configuration is what the container runtime uses: the lexically first (byte order, as libcni
# sorts) *.conflist, *.conf or *.json file in CNI_NET_DIR. {"type": "nodemesh-cni", ...} becomes the LAST
# plug-in of its list, after the network plug-in has given the pod its interface and address; an earlier
# nodemesh-cni entry is replaced, so a second run changes nothing and a changed setting is picked up. A single
# plug-in's .conf (or .json) is turned into NAME.conflist, and the .conf removed. Every write is a temporary
# file in the same directory renamed over the target, so the runtime never reads a half-written file.
#
# Settings (environment):
#   CNI_BIN_DIR         where the runtime finds plug-ins           (default /host/opt/cni/bin)
#   CNI_NET_DIR         where the runtime finds configurations     (default /host/etc/cni/net.d)
#   NODEMESH_CNI_BIN    the shim binary to install                 (default /usr/bin/nodemesh-cni)
#   AGENT_SOCKET        the agent's local API socket on the host   (default /run/nodemesh/agent.sock)
#   EXCLUDE_NAMESPACES  comma-separated namespaces the shim leaves alone (default kube-system,nodemesh-system)
#   SHIM_TIMEOUT        how long the shim waits for the agent      (default 30s: an ADD waits for the capture, and for the API server to list a new pod)
set -eu

CNI_BIN_DIR="${CNI_BIN_DIR:-/host/opt/cni/bin}"
CNI_NET_DIR="${CNI_NET_DIR:-/host/etc/cni/net.d}"
NODEMESH_CNI_BIN="${NODEMESH_CNI_BIN:-/usr/bin/nodemesh-cni}"
AGENT_SOCKET="${AGENT_SOCKET:-/run/nodemesh/agent.sock}"
EXCLUDE_NAMESPACES="${EXCLUDE_NAMESPACES-kube-system,nodemesh-system}"
SHIM_TIMEOUT="${SHIM_TIMEOUT:-30s}"
PLUGIN=nodemesh-cni

TMP=""
cleanup() { if [ -n "$TMP" ]; then rm -f "$TMP"; fi; }
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

die() { echo "install-cni: $*" >&2; exit 1; }
log() { echo "install-cni: $*" >&2; }

command -v jq >/dev/null 2>&1 || die "jq is required (it reads and writes the CNI configuration) and is not on PATH"
[ -d "$CNI_NET_DIR" ] || die "$CNI_NET_DIR does not exist (CNI_NET_DIR: the host's /etc/cni/net.d)"

# Writes stdin to $1 through a temporary file in the same directory and a rename, mode 0644. The temporary name
# starts with a dot and ends in .tmp, so a runtime watching the directory never takes it for a configuration.
write_atomically() {
  TMP="$(mktemp "$(dirname "$1")/.$PLUGIN.XXXXXX.tmp")"
  cat > "$TMP"
  chmod 0644 "$TMP"
  mv -f "$TMP" "$1"
  TMP=""
}

# The lexically first configuration file, or nothing.
primary_config() {
  (
    LC_ALL=C
    for f in "$CNI_NET_DIR"/*; do
      case "$f" in
        *.conflist|*.conf|*.json) [ -f "$f" ] && { echo "$f"; exit 0; } ;;
      esac
    done
  )
}

uninstall() {
  for f in "$CNI_NET_DIR"/*.conflist; do
    [ -f "$f" ] || continue
    jq -e --arg t "$PLUGIN" 'any(.plugins[]?; .type == $t)' "$f" >/dev/null 2>&1 || continue
    jq --arg t "$PLUGIN" '.plugins |= map(select(.type != $t))' "$f" | write_atomically "$f"
    log "removed $PLUGIN from $f"
  done
}

if [ "${1:-}" = uninstall ]; then uninstall; exit 0; fi
[ $# -eq 0 ] || die "unknown argument '$1' (none to install, or 'uninstall')"

# 1. The binary: copied next to the other plug-ins under a temporary name and renamed, so a pod being set up at
#    this moment runs either the old binary or the new one, never a partial file.
[ -f "$NODEMESH_CNI_BIN" ] || die "$NODEMESH_CNI_BIN not found (NODEMESH_CNI_BIN: the shim binary in the image)"
[ -d "$CNI_BIN_DIR" ] || die "$CNI_BIN_DIR does not exist (CNI_BIN_DIR: the host's /opt/cni/bin)"
if cmp -s "$NODEMESH_CNI_BIN" "$CNI_BIN_DIR/$PLUGIN"; then
  log "$CNI_BIN_DIR/$PLUGIN is up to date"
else
  TMP="$(mktemp "$CNI_BIN_DIR/.$PLUGIN.XXXXXX.tmp")"
  cp "$NODEMESH_CNI_BIN" "$TMP"
  chmod 0755 "$TMP"
  mv -f "$TMP" "$CNI_BIN_DIR/$PLUGIN"
  TMP=""
  log "installed $CNI_BIN_DIR/$PLUGIN"
fi

# 2. The chained entry.
primary="$(primary_config)"
[ -n "$primary" ] || die "no CNI network configuration in $CNI_NET_DIR (*.conflist, *.conf, *.json): $PLUGIN chains onto the cluster's network plug-in, which must be installed first"
jq -e 'type == "object"' "$primary" >/dev/null 2>&1 || die "$primary is not a JSON object"

entry="$(jq -n -c --arg t "$PLUGIN" --arg socket "$AGENT_SOCKET" --arg exclude "$EXCLUDE_NAMESPACES" --arg timeout "$SHIM_TIMEOUT" \
  '{type: $t, agentSocket: $socket, excludeNamespaces: ($exclude | split(",") | map(select(length > 0))), timeout: $timeout}')"

case "$primary" in
  *.conflist)
    target="$primary"
    jq -e --arg t "$PLUGIN" '(.plugins | type) == "array" and any(.plugins[]; (.type | type) == "string" and .type != $t)' "$primary" >/dev/null 2>&1 \
      || die "$primary has no network plug-in (its \"plugins\" list holds no plug-in but $PLUGIN): $PLUGIN must come after the one that sets the pod's network up"
    chained="$(jq --arg t "$PLUGIN" --argjson entry "$entry" '.plugins |= (map(select(.type != $t)) + [$entry])' "$primary")"
    ;;
  *)
    # A single plug-in's configuration: a list of that plug-in, then the shim.
    target="${primary%.*}.conflist"
    jq -e '(.type | type) == "string" and (.type | length) > 0' "$primary" >/dev/null 2>&1 \
      || die "$primary names no network plug-in (no \"type\"): $PLUGIN must come after the one that sets the pod's network up"
    name="$(basename "${primary%.*}")"
    chained="$(jq --arg name "$name" --argjson entry "$entry" '{cniVersion: (.cniVersion // "1.0.0"), name: (.name // $name), plugins: [del(.cniVersion, .name), $entry]}' "$primary")"
    if [ -f "$target" ] && [ "$(cat "$target")" != "$chained" ]; then
      die "cannot turn $primary into $target: $target exists already with other content"
    fi
    ;;
esac

if [ -f "$target" ] && [ "$(cat "$target")" = "$chained" ]; then
  log "$target already chains $PLUGIN last"
else
  printf '%s\n' "$chained" | write_atomically "$target"
  log "chained $PLUGIN as the last plug-in of $target"
fi
if [ "$target" != "$primary" ]; then
  rm -f "$primary"
  log "removed $primary (now $target)"
fi
