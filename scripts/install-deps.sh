#!/usr/bin/env bash
# Installs what Islet needs on a Debian bookworm host (idempotent). Run as root.
set -euo pipefail
packages=(runc runsc mmdebstrap e2fsprogs iproute2 iptables ca-certificates python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
