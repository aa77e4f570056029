#!/usr/bin/env bash
# Runs test_flow.py, test_webhooks.py, test_usage.py and test_parity.py with the real miosa SDK against a fresh `islet serve`
# on a free port (local webhook receivers allowed), its preview edge on another free port
# (ISLET_PREVIEW_ADDR for the test). Custom preview domains are verified against a DNS server the
# test runs itself on ISLET_DNS_ADDR (the TXT record a tenant would publish).
# Usage: tests/sdk/run.sh container|gvisor
set -euo pipefail
isolation="${1:-container}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import miosa" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "miosa==2.19.2"
fi
if ! "$venv/bin/python" -c "import standardwebhooks" 2>/dev/null; then
  "$venv/bin/pip" install -q "standardwebhooks==1.1.0"
fi
# The SDK's WebSocket connects (terminal, tunnels) need its `events` extra.
if ! "$venv/bin/python" -c "import websockets" 2>/dev/null; then
  "$venv/bin/pip" install -q "websockets==15.0.1"
fi
data="$(mktemp -d /var/tmp/islet-sdk.XXXXXX)"
log="$data/server.log"
cleanup() {
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
preview_addr="127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
dns_addr="127.0.0.1:$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
key=$("$root/target/debug/islet" tenant create --name sdk-test --isolation "$isolation" --data-dir "$data" | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
"$root/target/debug/islet" serve --data-dir "$data" --template-dir "${ISLET_TEMPLATE_DIR:-/var/lib/islet/templates}" \
  --listen 127.0.0.1:0 --preview-listen "$preview_addr" --domain-verify-nameserver "$dns_addr" \
  --net-prefix sdk --subnet-octet 212 --webhook-allow-private --meter-interval 1 \
  >"$data/stdout" 2>"$log" &
server=$!
for _ in $(seq 1 600); do
  grep -q "listening on" "$data/stdout" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
url=$(sed -n 's#.*listening on \(http://[^/]*\)/api/v1.*#\1#p' "$data/stdout")
echo "islet ($isolation) at $url, previews at $preview_addr"
if ! MIOSA_BASE_URL="$url" MIOSA_API_KEY="$key" ISLET_EXPECT_ISOLATION="$isolation" \
  ISLET_PREVIEW_ADDR="$preview_addr" ISLET_DNS_ADDR="$dns_addr" "$venv/bin/python" "$here/test_flow.py"; then
  echo "--- server log ---"; tail -50 "$log"; exit 1
fi
for script in test_webhooks.py test_usage.py test_parity.py; do
  if ! MIOSA_BASE_URL="$url" MIOSA_API_KEY="$key" ISLET_EXPECT_ISOLATION="$isolation" "$venv/bin/python" "$here/$script"; then
    echo "--- server log ---"; tail -50 "$log"; exit 1
  fi
done
