"""SDK parity (issue 12), driven by the unmodified `miosa` 2.19.2 SDK against a live Islet:
readiness waits that end at once, the SDK's /workspace defaults on a fresh sandbox, every
error in the envelope (with its request id), live-only browser tokens, API-key presets and a
key's audit trail, TCP tunnels over WebSocket, custom domains, workspace policy, bulk jobs,
bill-to and member caps.

Reads MIOSA_BASE_URL / MIOSA_API_KEY like any SDK user. Each check asserts on what the server
really did; a failure exits non-zero.
"""
import asyncio
import os
import queue
import threading
import time

import miosa
from miosa.errors import MiosaError, NotFoundError, OrgNotFoundError, ValidationError

client = miosa.Miosa()
transport = client._transport


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok  {what}")


def refused(call, error_class=MiosaError):
    """The exception `call` raises (it must raise one of `error_class`)."""
    try:
        call()
    except error_class as e:
        return e
    raise AssertionError(f"expected {error_class.__name__}")


sb = client.sandboxes.create(external_user_id="parity_user", timeout_sec=600)
try:
    # A fresh sandbox has the /workspace the SDK's defaults name.
    listing = sb.list_files()
    check(listing.get("entries") == [], "list_files() on a fresh sandbox lists an empty /workspace")
    sb.files.write("/workspace/notes/a.txt", "a")
    check(sb.read_file("/workspace/notes/a.txt") == "a", "a file under /workspace round-trips")
    check(sb.stat_file("/workspace")["is_dir"], "/workspace is a directory")
    # (Python's stat, not coreutils': this host's runsc refuses statx.)
    owner = sb.exec.run("python3 -c 'import os; print(os.stat(\"/workspace\").st_uid)'").stdout.strip()
    if os.environ.get("ISLET_EXPECT_ISOLATION", "container") == "container":
        check(owner == "0", f"/workspace belongs to the sandbox's root (uid {owner})")
    made = sb.exec.run("touch /workspace/.probe && rm /workspace/.probe && echo writable")
    check(made.stdout.strip() == "writable", f"the sandbox's root writes in /workspace (owner uid {owner})")
    tree = sb.files.tree()
    check(tree is not None, "files.tree() answers for /workspace")

    # Removing a non-empty directory names what is wrong.
    e = refused(lambda: transport.request("POST", f"/sandboxes/{sb.id}/fs/remove", json_body={"path": "/workspace/notes"}))
    check(e.code == "DIRECTORY_NOT_EMPTY" and e.status_code == 409, f"a non-empty directory is DIRECTORY_NOT_EMPTY ({e.code})")
    check((e.request_id or "").startswith("req_"), "the agent's refusal carries the request id")

    # Every error is the envelope, with its request id.
    e = refused(lambda: transport.request("GET", "/sandboxes", params={"limit": "abc"}), ValidationError)
    check(e.code == "VALIDATION_FAILED" and (e.request_id or "").startswith("req_"), "a bad query is VALIDATION_FAILED with a request id")
    e = refused(lambda: transport.request("GET", "/sandboxes/%ff"), NotFoundError)
    check(e.code == "NOT_FOUND", "a path id that is not UTF-8 is NOT_FOUND")
    e = refused(lambda: transport.request("POST", "/sandboxes", json_body={"metadata": {"x": "y" * (3 << 20)}}))
    check(e.status_code == 413 and e.code == "TOO_LARGE", f"an oversized body is 413 TOO_LARGE ({e.status_code} {e.code})")

    # A readiness wait on a sandbox that will not become ready by itself ends at once.
    sb.stop()
    requests = []
    transport._client.event_hooks["request"].append(lambda r: requests.append(r.url.path))
    started = time.monotonic()
    ready = sb.wait_until_ready(timeout=5)
    took = time.monotonic() - started
    transport._client.event_hooks["request"].clear()
    check(ready is False, "wait_until_ready() on a stopped sandbox answers not ready")
    check(len(requests) <= 3, f"... in {len(requests)} request(s), not a polling storm")
    check(took < 2, f"... at once ({took:.2f} s of the 5 s allowed)")
    sb.resume()
    check(sb.wait_until_ready(timeout=30) is True, "wait_until_ready() after resume answers ready")

    # The sandbox's log: its background processes' output, in order.
    sb.commands.run("for i in 1 2 3; do echo line-$i; done; echo oops >&2", background=True)
    logs = {}
    for _ in range(50):
        logs = sb.get_logs(lines=50)
        if isinstance(logs, dict) and len(logs.get("lines", [])) >= 4:
            break
        time.sleep(0.1)
    texts = [l["line"] for l in logs.get("lines", [])]
    # stdout and stderr are two pipes: each keeps its order, not their interleaving.
    check([t for t in texts if t.startswith("line-")] == ["line-1", "line-2", "line-3"] and "oops" in texts, f"get_logs() has the background process's output ({texts})")
    check(any(l["stream"] == "stderr" for l in logs["lines"]), "... with which stream each line came from")
    streamed = []
    for event in sb.stream_logs():
        streamed.append(event)
        if len(streamed) >= 4:
            break
    check(len(streamed) == 4, "stream_logs() replays the recent lines, then follows")

    # Metrics from the meter's samples (the run's meter samples every second).
    metrics = {}
    for _ in range(50):
        metrics = sb.metrics("5m")
        if metrics["points"]:
            break
        time.sleep(0.1)
    check(metrics["points"] and metrics["points"][-1]["memory_bytes"] > 0, "metrics() has the meter's samples")
    check(metrics["current"]["cpu_count"] == sb.data["cpu_count"] and metrics["window"] == "5m", "... and the current resources")
    e = refused(lambda: sb.metrics("7d"), ValidationError)
    check(e.code == "VALIDATION_FAILED", "a window past 6 h is VALIDATION_FAILED")

    # Resources: read, and changed live within quota.
    res = sb.resources()
    check(res["resources"]["cpu"] == sb.data["cpu_count"] and res["capabilities"]["live_memory"], "resources() reads CPU, memory and what changes live")
    grown = sb.resize(cpu_count=2, memory_mb=3072)
    check(grown["applied_live"] and grown["resources"]["memory_mb"] == 3072 and grown["changes"]["cpu_count"]["to"] == 2, "resize() applies to the running sandbox")
    # (The host's cgroup files are checked by the Rust suite's resize test, on both levels.)
    check(client.sandboxes.get(sb.id).data["memory_mb"] == 3072, "... and the sandbox object too")
    # (quotas.set() has no memory field: the policy document has.)
    transport.request("PUT", "/quotas/external/parity_user", json_body={"max_memory_mb": 3500})
    e = refused(lambda: sb.resize(memory_mb=4096))
    check(e.status_code == 403 and e.code == "QUOTA_EXCEEDED", "a resize past the user's quota is QUOTA_EXCEEDED")
    transport.request("DELETE", "/quotas/external/parity_user")
    e = refused(lambda: sb.resize(memory_mb=10), ValidationError)
    check(e.code == "VALIDATION_FAILED", "a resize out of bounds is VALIDATION_FAILED")

    # The sandbox's own event stream.
    seen = queue.Queue()

    def follow():
        for event in sb.events.stream():
            seen.put(event)
            if "paused" in str(event.get("type") or event.get("event")):
                return

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(0.5)
    sb.pause()
    got = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any("paused" in str(g.get("type") or g.get("event")) for g in got):
        try:
            got.append(seen.get(timeout=0.5))
        except queue.Empty:
            pass
    check(any("paused" in str(g.get("type") or g.get("event")) for g in got), f"sandbox.events.stream() delivers its sandbox.paused ({[g.get('type') for g in got]})")
    sb.resume()

    # A TCP tunnel into the sandbox over WebSocket, as the SDK opens it.
    sb.commands.run(
        "python3 -c \"import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 7100)); s.listen(1)\nwhile True:\n c,_=s.accept(); c.sendall(c.recv(1024)[::-1]); c.close()\"",
        background=True,
    )

    async def through_tunnel():
        for _ in range(50):
            try:
                ws = await client.ws.connect_tunnel("sandbox", sb.id, 7100)
                break
            except Exception:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the tunnel never opened")
        await ws.send(b"tunnel-bytes")
        answer = await asyncio.wait_for(ws.recv(), 10)
        await ws.close()
        return answer

    check(asyncio.run(through_tunnel()) == b"setyb-lennut", "ws.connect_tunnel relays bytes to a port inside the sandbox")

    async def refused_tunnel(connect):
        try:
            ws = await connect()
        except Exception as e:  # websockets' InvalidStatus carries the answer
            return getattr(getattr(e, "response", None), "status_code", None)
        await ws.close()
        return 101

    check(asyncio.run(refused_tunnel(lambda: client.ws.connect_tunnel("sandbox", sb.id, 7199))) == 409, "a tunnel to a port nothing listens on is refused (409)")
    check(asyncio.run(refused_tunnel(lambda: client.ws.connect_ssh_tunnel(sb.id))) == 409, "connect_ssh_tunnel is refused while no sshd listens (409)")

    # A call that cannot mean anything here is refused with its reason.
    e = refused(lambda: client.sandboxes.browser_cdp_url(sb.id))
    check(e.code == "UNSUPPORTED" and e.status_code == 409, "browser_cdp_url is refused as UNSUPPORTED, with its reason")
finally:
    sb.destroy()

# slug and always_on are kept and echoed; a slug is unique among live sandboxes.
kept = client.sandboxes.create(slug="parity-handle", always_on=True, idle_timeout_sec=60)
check(kept.data.get("slug") == "parity-handle" and kept.data.get("always_on") is True, "slug and always_on are kept and echoed")
check(kept.data.get("idle_timeout_sec") is None, "an always-on sandbox has no idle timeout")
e = refused(lambda: client.sandboxes.create(slug="parity-handle"))
check(e.status_code == 409, "a slug in use by a live sandbox is refused (409)")
e = refused(lambda: client.sandboxes.create(slug="Not A Slug"), ValidationError)
check(e.code == "VALIDATION_FAILED", "a malformed slug is VALIDATION_FAILED")
kept.destroy()
again = client.sandboxes.create(slug="parity-handle")
check(again.data.get("slug") == "parity-handle", "a destroyed sandbox's slug can be used again")
again.destroy()

# The tenant's plan.
plan = client.tenant.current()
check(plan["plan"] == "self-hosted" and plan["limits"]["max_webhooks"] > 0, "tenant.current() reads the plan and the platform's limits")
check(isinstance(plan["usage"]["sandboxes"], int), "... and what the tenant holds")

# Browser tokens: only live ones are listed.
tok = client.tokens.create_scoped(user_id="parity_user", workspace_id="ws", scopes=["sandboxes:read"])
check(any(t["id"] == tok["id"] for t in client.tokens.list_scoped()), "a new browser token is listed")
client.tokens.delete_scoped(tok["id"])
check(not any(t["id"] == tok["id"] for t in client.tokens.list_scoped()), "a revoked browser token is not listed")

# API-key presets: built in and the tenant's own; a key made from one; its audit trail.
presets = {p["name"]: p for p in client.api_keys.presets()}
check({"full", "read_only", "ci"} <= presets.keys() and presets["ci"]["builtin"], "api_keys.presets() lists the built-in presets")
made = client.api_keys.create_preset(name="parity-runner", scopes=["sandboxes:exec", "usage:read"], description="runs things")
check(made["name"] == "parity-runner" and not made["builtin"], "api_keys.create_preset saves the tenant's own")
check("parity-runner" in {p["name"] for p in client.api_keys.presets()}, "... and presets() lists it")
e = refused(lambda: client.api_keys.create_preset(name="ci", scopes=["usage:read"]))
check(e.status_code == 409, "a built-in preset name is reserved (409)")
key = client.api_keys.create(name="from preset", preset="parity-runner")
check(set(key["scopes"]) >= {"sandboxes:exec", "usage:read"} and "keys:write" not in key["scopes"], f"a key created from a preset gets its scopes ({key['scopes']})")
client.api_keys.update(key["id"], name="renamed")
client.api_keys.rotate(key["id"])
events = client.api_keys.events(key["id"])
check([e["type"] for e in events] == ["rotated", "updated", "created"], f"api_keys.events lists every change, newest first ({[e['type'] for e in events]})")
check(events[1]["details"].get("name") == "renamed", "... with what changed")
check([e["type"] for e in client.api_keys.events(key["id"], event_type="created")] == ["created"], "... filtered by type")
client.api_keys.delete(key["id"])
client.api_keys.delete_preset("parity-runner")
check("parity-runner" not in {p["name"] for p in client.api_keys.presets()}, "api_keys.delete_preset removes it")
e = refused(lambda: client.api_keys.delete_preset("parity-runner"), NotFoundError)
check(e.status_code == 404, "a preset removed twice is 404")
# Custom domains: several, each with its own DNS records; no verify on the flat resource.
made = client.custom_domains.create(domain="app.parity.test")
check(made["status"] == "pending" and made["records"][1]["type"] == "TXT", "custom_domains.create registers a domain with its DNS records")
second = client.custom_domains.create(domain="docs.parity.test")
listed = client.custom_domains.list()
check({d["domain"] for d in listed} >= {"app.parity.test", "docs.parity.test"}, "custom_domains.list lists them")
e = refused(lambda: client.custom_domains.create(domain="app.parity.test"))
check(e.status_code == 409, "a domain registered twice is refused (409)")
e = refused(lambda: client.custom_domains.create(domain="not a domain"), ValidationError)
check(e.code == "VALIDATION_FAILED", "a malformed domain is VALIDATION_FAILED")
client.custom_domains.delete(made["id"])
client.custom_domains.delete(second["id"])
check(not client.custom_domains.list(), "custom_domains.delete removes them")

# Workspace policy: between the tenant's and the user's.
ws_policy = client.workspaces("parity-ws").policy
ws_policy.set({"quotas": {"max_concurrent": 1}, "lifecycle": {"default_idle_timeout_sec": 90}})
check(ws_policy.get()["quotas"]["max_concurrent"] == 1, "workspaces(ws).policy.set/get round-trips")
first = client.sandboxes.create(external_user_id="ws_user", external_workspace_id="parity-ws")
check(first.data.get("idle_timeout_sec") == 90, "a sandbox created in the workspace gets its default")
e = refused(lambda: client.sandboxes.create(external_user_id="ws_user", external_workspace_id="parity-ws"))
check(e.status_code == 403 and e.code == "QUOTA_EXCEEDED", "the workspace's limit holds for its sandboxes")
effective = transport.request("GET", "/external-users/ws_user/effective-policy", params={"workspace_id": "parity-ws"})["data"]
check(effective["quotas"]["max_concurrent"]["source"] == "workspace", "the effective policy names the workspace as the source")
ws_policy.delete()
check(ws_policy.get() == {}, "workspaces(ws).policy.delete removes it")

# Bulk jobs: the SDK returns the answer raw; the job is read back until finished.
others = [client.sandboxes.create(external_user_id="bulk_user", tags=["parity-bulk"]) for _ in range(2)]
job = client.bulk.sandboxes.pause(filter={"tags": ["parity-bulk"]})
check(job["queued"] == 2 and job["job_id"].startswith("job_"), "bulk.sandboxes.pause(filter=) queues a job for the matching sandboxes")
status = {}
for _ in range(100):
    status = client.bulk.jobs.get(job["job_id"])
    if status["status"] == "finished":
        break
    time.sleep(0.1)
check(status["status"] == "finished" and status["succeeded"] == 2, f"bulk.jobs.get follows it to the end ({status.get('succeeded')} succeeded)")
check(all(client.sandboxes.get(o.id).data["state"] == "paused" for o in others), "... and the sandboxes are paused")
gone = client.bulk.sandboxes.destroy(ids=[o.id for o in others] + [first.id])
for _ in range(600):
    if client.bulk.jobs.get(gone["job_id"])["status"] == "finished":
        break
    time.sleep(0.1)
destroyed = client.bulk.jobs.get(gone["job_id"])
check(destroyed["succeeded"] == 3, f"bulk.sandboxes.destroy(ids=) destroys each, paused ones too ({destroyed})")
e = refused(lambda: client.bulk.sandboxes.pause(filter={}), ValidationError)
check(e.code == "VALIDATION_FAILED", "a bulk filter that names nothing is refused")

# Bill-to: the credential's own organization is the only one; member caps are quotas.
shown = client.bill_to.show()
org = shown["org"]
check(shown["source"] == "credential" and shown["choices"] == [org], "bill_to.show() names the credential's own organization")
check(client.bill_to.show(bill_to=org["name"])["source"] == "override", "... and accepts it named in the override")
e = refused(lambda: client.bill_to.update("someone-else"), OrgNotFoundError)
check(e.code == "ORG_NOT_FOUND", "bill_to.update to another organization is ORG_NOT_FOUND")
check(client.bill_to.update(org["id"])["org"] == org, "bill_to.update to its own is accepted")
client.bill_to.clear()
check(client.bill_to.limits()["limits"]["max_webhooks"] > 0, "bill_to.limits() reads the platform's limits")
caps = client.member_caps.update(org["id"], "cap_user", usage_cap_cents=700, max_concurrent_sandboxes=2)
check(caps["usage_cap_cents"] == 700 and caps["max_concurrent_sandboxes"] == 2, "member_caps.update sets both caps")
check(client.quotas.get("cap_user")["max_credit_cents"] == 700, "... which are the end user's quotas")
caps = client.member_caps.update(org["id"], "cap_user", usage_cap_cents=None)
check(caps["usage_cap_cents"] is None and caps["max_concurrent_sandboxes"] == 2, "None clears one cap, leaving the other")
check([m["user_id"] for m in client.member_caps.list(org["id"])["members"]] == ["cap_user"], "member_caps.list lists members with caps")
client.member_caps.delete(org["id"], "cap_user")
check(client.member_caps.list(org["id"])["members"] == [], "member_caps.delete clears them")
e = refused(lambda: client.member_caps.list("ten_aaaaaaaaaaaaaaaaaaaa"), OrgNotFoundError)
check(e.status_code == 404, "another organization's caps are not found")
print("parity: all checks passed")
