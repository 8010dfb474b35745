#!/bin/sh
# node-config.sh TEMPLATE OUT: this node's agent configuration, from the cluster's one configuration (the
# ConfigMap's config.json, which names no node) and the node the DaemonSet's pod runs on: node.name from
# $NODE_NAME (spec.nodeName) and node.address from $NODE_IP (status.hostIP). Written to OUT through a
# temporary file and a rename. Needs sh and jq; the template must be plain JSON (jq reads no comments).
set -eu

die() { echo "node-config: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: node-config.sh TEMPLATE OUT"
template="$1"; out="$2"
[ -n "${NODE_NAME:-}" ] || die "NODE_NAME is not set (the DaemonSet sets it from spec.nodeName)"
[ -n "${NODE_IP:-}" ] || die "NODE_IP is not set (the DaemonSet sets it from status.hostIP)"
command -v jq >/dev/null 2>&1 || die "jq is required and is not on PATH"
[ -f "$template" ] || die "$template not found"

tmp="$(mktemp "$(dirname "$out")/.node-config.XXXXXX.tmp")"
trap 'rm -f "$tmp"' EXIT
jq --arg name "$NODE_NAME" --arg address "$NODE_IP" '.node = {name: $name, address: $address}' "$template" > "$tmp" \
  || die "$template is not plain JSON"
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
