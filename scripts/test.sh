#!/usr/bin/env bash
# The whole test suite: unit and integration tests against the real runtime, then the real
# `miosa` SDK (2.19.2) against a live server, on both isolation levels.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export ISLET_TEMPLATE_DIR="${ISLET_TEMPLATE_DIR:-/var/lib/islet/templates}"
cargo build -p islet -p islet-agent -p islet-checker
./target/debug/islet template build default --template-dir "$ISLET_TEMPLATE_DIR"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --test-threads=2
./tests/sdk/run.sh container
./tests/sdk/run.sh gvisor
