#!/usr/bin/env bash
# Quick start: install what is missing, build Islet, build the default template on first start,
# and run `islet serve`, printing the API address and an API key.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release -p islet -p islet-agent
exec ./target/release/islet serve --bootstrap-tenant "$@"
