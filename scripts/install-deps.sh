#!/usr/bin/env bash
# Installs what Islet needs on a Debian bookworm host (idempotent). Run as root.
set -euo pipefail
# nginx: the preview benchmark's baseline; chromium (with Node.js below): the browser tests;
# pebble: the ACME test CA.
packages=(runc runsc mmdebstrap e2fsprogs iproute2 iptables ca-certificates python3-venv nginx-light chromium pebble)
# Node.js and npm may come from outside Debian (as on these build machines); only a host
# without them gets Debian's.
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The browser harness's pinned npm packages (playwright-core drives Debian's chromium).
"$(dirname "$0")/../tests/browser/install.sh"
