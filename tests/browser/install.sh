#!/usr/bin/env bash
# Installs what tests/browser/iframe.mjs needs: Debian's chromium and the
# pinned npm dependencies (playwright-core, which downloads no browser).
# Idempotent: safe to run on every CI run.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  # The package lists may be empty on a fresh machine: try once, update on failure.
  if ! $SUDO apt-get install -y --no-install-recommends chromium; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends chromium
  fi
fi
# (version via the real binary: the Debian wrapper prints a harmless shell error from /etc/chromium.d/dev-shm)
/usr/lib/chromium/chromium --version 2>/dev/null || /usr/bin/chromium --version

# Skip npm ci when node_modules was installed from this exact lockfile.
STAMP=node_modules/.islet-lock-stamp
if ! cmp -s package-lock.json "$STAMP" 2>/dev/null; then
  npm ci --no-audit --no-fund
  cp package-lock.json "$STAMP"
fi
