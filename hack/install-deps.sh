#!/usr/bin/env bash
# Installs the Debian packages the test suite drives. Idempotent and quiet
# when everything is present already.
set -euo pipefail
need=()
for pair in lftp:lftp curl:curl ip:iproute2 iptables:iptables python3:python3; do
  bin=${pair%%:*} pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
