#!/usr/bin/env bash
# Installs the Debian packages the test suite drives; with --cluster also
# those the local cluster runs on (make up, make e2e). Idempotent and quiet
# when everything is present already.
set -euo pipefail
pairs=(lftp:lftp curl:curl ip:iproute2 iptables:iptables python3:python3 shellcheck:shellcheck)
if [[ "${1:-}" == "--cluster" ]]; then
  pairs=(containerd:containerd runc:runc umoci:umoci conntrack:conntrack
    /usr/lib/cni/bridge:containernetworking-plugins sysctl:procps mount:mount)
fi
need=()
for pair in "${pairs[@]}"; do
  bin=${pair%%:*} pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || [[ -x "$bin" ]] || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
