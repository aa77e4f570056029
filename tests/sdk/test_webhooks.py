"""Webhooks (contract §10) through the unmodified `miosa` 2.19.2 SDK, with deliveries checked by
the SDK's own verifier (`miosa.verify_webhook_signature`) and by the Standard Webhooks
reference package (`standardwebhooks`), and the event streams read through the SDK.

Reads MIOSA_BASE_URL / MIOSA_API_KEY; the server must run with --webhook-allow-private so a
receiver on 127.0.0.1 is a valid endpoint (run.sh does this). A failure exits non-zero.
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import miosa
import standardwebhooks
from miosa.errors import MiosaError, NotFoundError, ValidationError

client = miosa.Miosa()


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok  {what}")


class Received:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []  # (headers dict, raw body bytes)

    def add(self, headers, body):
        with self.lock:
            self.items.append((headers, body))

    def snapshot(self):
        with self.lock:
            return list(self.items)


received = Received()


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        received.add({k.lower(): v for k, v in self.headers.items()}, body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=server.serve_forever, daemon=True).start()
hook_url = f"http://127.0.0.1:{server.server_address[1]}/hooks/islet"


def wait_for(what, probe, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def events_of(kind):
    return [(h, b) for h, b in received.snapshot() if h.get("x-miosa-event") == kind]


# --- management ---------------------------------------------------------------------------
wh = client.webhooks.create(url=hook_url, events=["sandbox.*", "sandbox.ready"], name="sdk")
secret = wh.get("secret", "")
check(secret.startswith("whsec_"), "webhooks.create returns the secret once (lifted from the envelope)")
check(wh["id"].startswith("wh_") and wh["events"] == ["sandbox.*", "sandbox.ready"], "webhook stored as asked")
check("secret" not in client.webhooks.get(wh["id"]), "webhooks.get never shows the secret again")
check(any(w["id"] == wh["id"] for w in client.webhooks.list()), "webhooks.list finds it")
updated = client.webhooks.update(wh["id"], metadata={"team": "growth"})
check(updated["metadata"] == {"team": "growth"}, "webhooks.update changes metadata")
try:
    client.webhooks.create(url="http://169.254.169.254/latest/meta-data/", events=["*"])
    raise AssertionError("a metadata address was accepted")
except ValidationError:
    print("ok  a metadata-service URL is refused (ValidationError)")
try:
    client.webhooks.create(url=hook_url, events=["sandbox.exploded"])
    raise AssertionError("an unknown event was accepted")
except ValidationError:
    print("ok  an unknown event name is refused (ValidationError)")

catalogue = client.event_subscriptions.webhook_events()
check(catalogue["signing"]["format"] == "sha256=<hex>", "catalogue describes the signature")
check("sandbox.destroyed" in catalogue["events"] and "sandbox" in catalogue["data"], "catalogue lists events by category")

# --- event streams (opened before the sandbox exists) ----------------------------------------
streamed = {"all": [], "user": []}


def follow(name, iterator, want):
    for event in iterator:
        streamed[name].append(event)
        if len(streamed[name]) >= want:
            return


threading.Thread(
    target=follow, args=("all", client.events.stream(types=["sandbox.running", "webhook.delivered"]), 1), daemon=True
).start()
threading.Thread(
    target=follow,
    args=("user", client.tenant.events.stream(types=["sandbox.*"], scope="external_user:sdk_user_7"), 2),
    daemon=True,
).start()
time.sleep(1.0)

# --- real lifecycle events ----------------------------------------------------------------------
sb = client.sandboxes.create(external_user_id="sdk_user_7", external_project_id="proj_sdk", metadata={"plan": "pro"})
sb.destroy()
wait_for("sandbox.destroyed delivery", lambda: events_of("sandbox.destroyed"))
for kind in ["sandbox.created", "sandbox.running", "sandbox.ready", "sandbox.destroyed"]:
    check(len(events_of(kind)) >= 1, f"{kind} delivered")

for headers, body in received.snapshot():
    kind = headers["x-miosa-event"]
    check(miosa.verify_webhook_signature(body, headers["x-miosa-signature"], secret), f"{kind}: miosa verifier accepts X-Miosa-Signature")
    check(miosa.verify_webhook_signature(body, headers["miosa-signature"], secret), f"{kind}: miosa verifier accepts the timestamped Miosa-Signature")
    payload = standardwebhooks.Webhook(secret).verify(body, headers)
    check(payload["id"] == headers["webhook-id"] == headers["x-miosa-delivery"], f"{kind}: standardwebhooks verifies; ids agree")
    check(payload["type"] == payload["event"] == kind, f"{kind}: type and event name it")
    check(payload["data"]["external_user_id"] == "sdk_user_7", f"{kind}: carries external_user_id")
    check(payload["data"]["external_project_id"] == "proj_sdk" and payload["data"]["metadata"] == {"plan": "pro"}, f"{kind}: carries project and metadata")

headers, body = events_of("sandbox.destroyed")[0]
tampered = body.replace(b"sdk_user_7", b"sdk_user_8")
check(not miosa.verify_webhook_signature(tampered, headers["x-miosa-signature"], secret), "miosa verifier refuses a changed body")
check(not miosa.verify_webhook_signature(body, headers["x-miosa-signature"], secret + "x"), "miosa verifier refuses another secret")
try:
    standardwebhooks.Webhook(secret).verify(tampered, headers)
    raise AssertionError("standardwebhooks accepted a changed body")
except standardwebhooks.webhooks.WebhookVerificationError:
    print("ok  standardwebhooks refuses a changed body")
usage = json.loads(body)["data"]["usage"]
check(usage["sandbox_seconds"] > 0 and usage["vcpu_seconds"] > 0, "sandbox.destroyed carries usage totals")

wait_for("streamed events", lambda: len(streamed["all"]) >= 1 and len(streamed["user"]) >= 2)
check(streamed["all"][0]["type"] == "sandbox.running", "events.stream yields the filtered type, with `type` in the JSON")
check(all(e["data"]["external_user_id"] == "sdk_user_7" for e in streamed["user"]), "tenant.events.stream scopes to one external user")

# --- test, deliveries, replay -----------------------------------------------------------------
result = client.webhooks.test(wh["id"])
check(result["delivered"] is True, "webhooks.test delivers a webhook.test event")
check(len(events_of("webhook.test")) == 1, "the receiver got the test event")
log = client.webhooks.deliveries(wh["id"])
check(len(log) >= 5 and all(d["status"] == "delivered" for d in log), "webhooks.deliveries lists every delivery")
check(all(d["attempt_log"][0]["status_code"] == 204 for d in log), "each delivery records its attempt")
original = next(d for d in log if d["event_type"] == "sandbox.created")
replayed = client.event_subscriptions.replay_delivery(wh["id"], original["id"], replay_id="sdk-replay-1")
check(replayed["replay_of"] == original["id"], "replay_delivery queues a replay (202)")
try:
    client.event_subscriptions.replay_delivery(wh["id"], original["id"], replay_id="sdk-replay-1")
    raise AssertionError("a reused replay_id was accepted")
except MiosaError as e:
    check(e.status_code == 409, "a reused replay_id is 409")
again = wait_for("the replay", lambda: [b for h, b in events_of("sandbox.created") if json.loads(b).get("replay_of")])
check(json.loads(again[0])["event_id"] == original["event_id"], "the replay carries the same event")

client.webhooks.delete(wh["id"])
try:
    client.webhooks.get(wh["id"])
    raise AssertionError("deleted webhook still found")
except NotFoundError:
    print("ok  webhooks.delete removes it")
server.shutdown()
print("webhooks: all checks passed")
