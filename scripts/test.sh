#!/usr/bin/env bash
# The whole test suite, in four tiers, cheapest first (`xtask/src/ci.rs` says what each runs):
#   lint  formatting, clippy, and the repository's rules (module graphs without cycles)
#   unit  every test that needs no root: unit tests, the store's tests on real SQLite files
#   host  installs the host's packages, builds the template, and runs every integration test
#         against real runc/gVisor sandboxes, the preview edge, Chromium and pebble
#   sdk   the real `miosa` SDK (2.19.2) against a live server, on both isolation levels
# One tier alone: `cargo xtask ci lint` (or unit, host, sdk).
set -euo pipefail
cd "$(dirname "$0")/.."
export ISLET_TEMPLATE_DIR="${ISLET_TEMPLATE_DIR:-/var/lib/islet/templates}"
for tier in lint unit host sdk; do
  cargo xtask ci "$tier"
done
