"""The contract §15 flow, driven by the unmodified `miosa` 2.19.2 SDK against a live Islet,
then previews (contract §8-9): the SDK's preview, token, share, branding and preview-domain
calls, and what a visitor then gets from the preview edge.

Reads MIOSA_BASE_URL / MIOSA_API_KEY like any SDK user, plus ISLET_EXPECT_ISOLATION and
ISLET_PREVIEW_ADDR (host:port of the preview edge; run.sh sets both).
Each check asserts on what the server really did; a failure exits non-zero.
"""
import http.client
import json
import os
import shlex
import socket
import struct
import threading
import time
from datetime import datetime, timezone
from http.cookies import SimpleCookie
from typing import NamedTuple
from urllib.parse import urlsplit

import miosa
from miosa.errors import NotFoundError, ValidationError

client = miosa.Miosa()
expected_isolation = os.environ.get("ISLET_EXPECT_ISOLATION", "container")
preview_addr = os.environ.get("ISLET_PREVIEW_ADDR", "127.0.0.1:8081")


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok  {what}")


class Reply(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: str

    def error_code(self):
        """The edge's JSON error code (it answers JSON unless the client accepts text/html)."""
        try:
            return json.loads(self.body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None


def visit(url, method="GET", headers=None):
    """One request for `url` as a visitor would send it, but delivered to the edge at
    ISLET_PREVIEW_ADDR (nothing resolves *.preview.localhost to it). Redirects are not followed."""
    parts = urlsplit(url)
    host, port = preview_addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, headers={"Host": parts.netloc, **(headers or {})})
        r = conn.getresponse()
        return Reply(r.status, r.headers, r.read().decode("utf-8", "replace"))
    finally:
        conn.close()


class FakeDns:
    """A DNS server answering TXT queries from `records` (what a tenant would publish) and
    nothing else: the server asks it when verifying a custom preview domain."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.records = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, int(port)))
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            query, peer = self.sock.recvfrom(1500)
            labels, at = [], 12
            while query[at]:
                labels.append(query[at + 1:at + 1 + query[at]].decode().lower())
                at += 1 + query[at]
            qtype = struct.unpack(">H", query[at + 1:at + 3])[0]
            values = self.records.get(".".join(labels), []) if qtype == 16 else []
            answer = query[:2] + bytes([0x84 | (query[2] & 1), 0]) + struct.pack(">HHHH", 1, len(values), 0, 0)
            answer += query[12:at + 5]
            for value in values:
                data = bytes([len(value)]) + value.encode()
                answer += b"\xc0\x0c" + struct.pack(">HHIH", 16, 1, 30, len(data)) + data
            self.sock.sendto(answer, peer)


def eventually(what, probe, ok, timeout=15.0):
    """Retry `probe()` until `ok(reply)`: the edge reloads routes, revocations, branding and
    domains about once a second, and a freshly started app needs a moment to listen."""
    deadline = time.time() + timeout
    while True:
        reply = probe()
        if ok(reply):
            check(True, what)
            return reply
        if time.time() > deadline:
            raise AssertionError(f"{what} (last answer: {reply!r:.300})")
        time.sleep(0.2)


# The app behind the preview: answers GET with a marker line, then the request line and headers
# it received (so the test sees what the edge forwarded). POST is left unimplemented (501).
ECHO_APP = """
import http.server, sys

class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{sys.argv[1]}\\n{self.requestline}\\n{self.headers}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Echo).serve_forever()
"""


def seconds_from_now(rfc3339):
    at = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    return (at - datetime.now(timezone.utc)).total_seconds()


sb = client.sandboxes.create(external_user_id="user_42", metadata={"source": "wl"}, timeout_sec=1800)
check(sb.state == "running", f"create returns a running sandbox ({sb.state})")
check(sb.data.get("external_user_id") == "user_42", "external_user_id echoed")
check(sb.data.get("metadata") == {"source": "wl"}, "metadata echoed")
check(sb.data.get("isolation") == expected_isolation, f"isolation is {expected_isolation}")

try:
    # Files: text, binary, stat, list.
    sb.files.write("/workspace/app.py", "import os\nprint('hi', os.environ.get('GREETING', '-'))\n")
    check(sb.read_file("/workspace/app.py").startswith("import os"), "read back text")
    blob = bytes(range(256)) * 64
    sb.write_file("/workspace/data.bin", blob)
    check(sb.read_file("/workspace/data.bin", text=False) == blob, "binary round trip (16 KiB, all byte values)")
    st = sb.stat_file("/workspace/data.bin")
    check(st["size"] == len(blob) and not st["is_dir"], "stat reports size and kind")
    listing = sb.list_files("/workspace")
    names = sorted(e["name"] for e in listing["entries"])
    check(names == ["app.py", "data.bin"], f"list_files sees both files ({names})")

    # Exec: exit code, stdout, stderr, cwd, env.
    r = sb.exec.run("python3 app.py", {"cwd": "/workspace", "env": {"GREETING": "hello"}, "timeout": 30})
    check(r.exit_code == 0 and r.stdout == "hi hello\n", f"exec with cwd and env ({r.stdout!r})")
    r = sb.exec.run("echo oops >&2; exit 3")
    check(r.exit_code == 3 and r.stderr == "oops\n", "exit code and stderr")
    r = sb.exec.run("pwd", {"cwd": "/tmp"})
    check(r.stdout.strip() == "/tmp", "cwd honoured")
    r = sb.exec.run("hostname; id -u; cat /proc/1/cmdline | tr '\\0' ' '")
    check("islet-agent" in r.stdout, "the agent is PID 1 of the sandbox")

    # Exec stream.
    events = list(sb.exec.stream("for i in 1 2 3; do echo line$i; done; echo err >&2; exit 7"))
    lines = [e.data.get("line") for e in events if e.type == "stdout"]
    check(lines == ["line1", "line2", "line3"], f"streamed stdout lines in order ({lines})")
    check(any(e.type == "stderr" and e.data.get("line") == "err" for e in events), "streamed stderr")
    check(events[-1].type == "exit" and events[-1].data.get("exit_code") == 7, "stream ends with exit 7")

    # Background process, list, kill.
    proc = sb.commands.run("sleep 300", background=True)
    check(proc.pid > 0, f"background process started (pid {proc.pid})")
    listed = sb.processes.list()
    check(any(int(p["pid"]) == proc.pid and p["state"] == "running" for p in listed), "process listed as running")
    proc.kill()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            info = sb.processes.get(proc.pid)
        except NotFoundError:
            break
        if info.get("state") != "running":
            break
        time.sleep(0.1)
    else:
        raise AssertionError("process did not stop after kill")
    check(True, "process killed")

    # Lifecycle reads.
    fetched = client.sandboxes.get(sb.id)
    check(fetched.id == sb.id and fetched.state == "running", "get returns the sandbox")
    mine = client.sandboxes.list(external_user_id="user_42")
    check(any(s.id == sb.id for s in mine), "list filters by external_user_id")
    others = client.sandboxes.list(external_user_id="someone_else")
    check(all(s.id != sb.id for s in others), "other users do not see it")
    sb.extend(3600)
    check(client.sandboxes.get(sb.id).data.get("timeout_sec") == 3600, "extend sets the timeout")

    # Previews: a web server inside the sandbox, published through the edge.
    marker = f"hello-from-{sb.id}"
    sb.files.write("/workspace/echo.py", ECHO_APP)
    web = sb.commands.run(f"python3 /workspace/echo.py {shlex.quote(marker)}", background=True)
    check(web.pid > 0, "web server started in the background on port 8000")

    host_8000 = f"8000-sbx-{sb.id.removeprefix('sbx_')}.preview.localhost:{preview_addr.rsplit(':', 1)[1]}"
    url = sb.expose(8000)
    check(url == f"http://{host_8000}/", f"expose returns the preview URL ({url})")
    info = sb.expose_info(8000)
    check(info.url == url and not info.stable_for_embedding, "expose is idempotent; a private URL is not for embedding")
    check(sb.get_url(8000, "/index.html") == f"http://{host_8000}/index.html", "get_url swaps in the path")
    check(sb.get_host(8000) == host_8000, "get_host is the URL's host")
    listed = sb.previews.list()
    check([(p["port"], p["visibility"], p["state"]) for p in listed] == [(8000, "private", "active")],
          "previews.list shows one private, active preview on 8000")
    preview = listed[0]
    check(sb.previews.get(preview["id"])["url"] == url, "previews.get returns it")

    r = visit(url)
    check(r.status == 401 and r.error_code() == "TOKEN_REQUIRED", f"private preview without a token: 401 ({r.status} {r.error_code()})")

    tok = sb.preview_token(expires_in=600, scope="interact")
    check(tok["token"].startswith("mp_") and tok["scope"] == "interact", "preview_token mints an interact mp_ token")
    check(tok["url"] == f"{url}?mt={tok['token']}", "its url is the preview URL with ?mt=")
    check(590 <= seconds_from_now(tok["expires_at"]) <= 610, f"it expires in 600 s ({tok['expires_at']})")

    with_header = {"X-Preview-Token": tok["token"]}
    r = eventually("the app answers through the edge with X-Preview-Token",
                   lambda: visit(url, headers=with_header), lambda r: r.status != 502, timeout=30)
    check(r.status == 200 and marker in r.body, f"X-Preview-Token: 200 and the sandbox's page ({r.status})")
    seen = r.body.lower()
    check("\nhost: " in seen and "mp_" not in seen and "x-preview-token" not in seen,
          "the app gets the request's headers, but never the token header")

    r = visit(tok["url"])
    check(r.status == 303 and r.headers["Location"] == "/", f"?mt= answers 303 to the same URL without the token ({r.status} {r.headers['Location']})")
    jar = SimpleCookie(r.headers["Set-Cookie"])
    check("pv_session" in jar and jar["pv_session"]["httponly"], "and sets an HttpOnly pv_session cookie")
    r = visit(url, headers={"Cookie": f"pv_session={jar['pv_session'].value}"})
    check(r.status == 200 and marker in r.body, f"the cookie alone opens the preview ({r.status})")
    check("mp_" not in r.body and "pv_session" not in r.body, "the app never sees the edge's cookie")
    r = visit(url, headers={"Cookie": "pv_session=mp_forged"})
    check(r.status == 401 and r.error_code() == "SESSION_EXPIRED", f"a forged cookie is refused ({r.status} {r.error_code()})")

    r = visit(url, "POST", with_header)
    check(r.status == 501, f"an interact token forwards POST to the app (which answers 501, got {r.status})")
    read = sb.preview_token(expires_in=600, scope="read")
    r = visit(url, headers={"X-Preview-Token": read["token"]})
    check(r.status == 200 and read["scope"] == "read", "a read token may GET")
    r = visit(url, "POST", {"X-Preview-Token": read["token"]})
    check(r.status == 403 and r.error_code() == "READ_ONLY", f"but not POST ({r.status} {r.error_code()})")
    try:
        sb.preview_token(expires_in=600, scope="admin")
        raise AssertionError("preview_token accepted scope=admin")
    except ValidationError as e:
        check(e.status_code == 422 and e.code == "INVALID_SCOPE", f"an unknown scope raises ValidationError 422 INVALID_SCOPE ({e.status_code} {e.code})")

    # A preview's share link: minted, opens the preview, revoked.
    shared = sb.previews.share(preview["id"], ttl_seconds=600)
    check(shared["preview_token"].startswith("mp_") and shared["share_url"] == f"{url}?ms={shared['preview_token']}",
          "previews.share returns the token and a ?ms= share_url")
    check(shared["data"]["share_token_prefix"] == shared["preview_token"][:12], "the preview records the share's prefix")
    r = visit(shared["share_url"])
    check(r.status == 303 and "pv_session=" in r.headers["Set-Cookie"], "the share link is exchanged for a cookie")
    sb.previews.revoke_share(preview["id"])
    check(sb.previews.get(preview["id"])["share_token_prefix"] is None, "revoke_share clears the preview's share")
    eventually("a revoked share token is refused",
               lambda: visit(url, headers={"X-Preview-Token": shared["preview_token"]}),
               lambda r: r.status == 401 and r.error_code() == "SESSION_EXPIRED")

    # Sandbox share links.
    share = sb.share.create(expires_in=600, scope="read")
    check(share["share_id"] and share["scope"] == "read" and f"{url}?ms=" in share["share_url"],
          "share.create returns share_id and a ?ms= share_url")
    check([s["share_id"] for s in sb.share.list()] == [share["share_id"]], "share.list lists it")
    r = visit(share["share_url"])
    check(r.status == 303 and "pv_session=" in r.headers["Set-Cookie"], "the sandbox share link is exchanged for a cookie")
    share_token = share["share_url"].split("?ms=", 1)[1]
    sb.share.revoke(share["share_id"])
    check(sb.share.list() == [], "share.revoke removes it from the list")
    eventually("a revoked share link is refused",
               lambda: visit(url, headers={"X-Preview-Token": share_token}),
               lambda r: r.status == 401 and r.error_code() == "SESSION_EXPIRED")

    # Public previews need no token, until deleted.
    public = sb.previews.create(port=8000, visibility="public", label="docs")
    check(public["id"] == preview["id"] and public["visibility"] == "public" and public["label"] == "docs",
          "previews.create on an exposed port updates that preview to public")
    r = eventually("a public preview opens without a token", lambda: visit(url), lambda r: r.status == 200)
    check(marker in r.body, "and shows the sandbox's page")
    sb.previews.delete(preview["id"])
    check(sb.previews.list() == [], "previews.delete removes it")
    try:
        sb.previews.get(preview["id"])
        raise AssertionError("a deleted preview is still readable")
    except NotFoundError:
        check(True, "a deleted preview is not found")
    eventually("the port is private again once its public preview is deleted",
               lambda: visit(url), lambda r: r.status == 401)

    # Branding: the edge's own pages wear the tenant's.
    brand = {"product_name": "Acme Apps", "primary_color": "#ff6600", "support_email": "help@acme.test"}
    check(client.tenant.branding.set(brand) == brand, "tenant.branding.set returns the branding")
    check(client.tenant.branding.get() == brand, "tenant.branding.get reads it back")
    check(client.settings.get_branding() == brand, "settings.get_branding sees the same branding")
    as_browser = {"Accept": "text/html"}
    r = eventually("the edge's sign-in page is branded", lambda: visit(url, headers=as_browser),
                   lambda r: r.status == 401 and "Acme Apps" in r.body and "help@acme.test" in r.body)
    check(r.headers["Content-Type"].startswith("text/html"), "and is HTML for a browser")
    flat = {"product_name": "Acme Cloud", "logo_url": "https://acme.test/logo.png"}
    check(client.settings.update_branding(**flat) == flat, "settings.update_branding (flat) returns the branding")
    check(client.tenant.branding.get() == flat, "tenant.branding.get sees the update")
    eventually("the page follows the update", lambda: visit(url, headers=as_browser),
               lambda r: "Acme Cloud" in r.body and "https://acme.test/logo.png" in r.body)
    client.tenant.branding.delete()
    check(client.tenant.branding.get() == {}, "tenant.branding.delete clears it")
    eventually("the page is unbranded again", lambda: visit(url, headers=as_browser),
               lambda r: r.status == 401 and "Acme" not in r.body)

    # A custom preview domain: claimed, verified by its DNS TXT record, then URLs move to it.
    dns = FakeDns(os.environ["ISLET_DNS_ADDR"])
    d = client.tenant.preview_domain.set("preview.acme.test")
    check(d["domain"] == "preview.acme.test" and d["verified_at"] is None and d["cname_target"] == "preview.localhost",
          "preview_domain.set claims it unverified, CNAME to the platform domain")
    check(sb.expose(8000) == url, "URLs stay on the platform domain until it is verified")
    unverified = client.tenant.preview_domain.verify()
    check(unverified.get("verified") is False and "TXT" in (unverified.get("error") or ""),
          f"verify fails while the TXT record is missing ({unverified.get('error')})")
    dns.records["_preview-verify.preview.acme.test"] = [d["verification"]["value"]]
    eventually("preview_domain.verify succeeds once the TXT record holds the challenge",
               client.tenant.preview_domain.verify, lambda v: v.get("verified") is True)
    check(client.tenant.preview_domain.get()["verified_at"] is not None, "preview_domain.get shows it verified")
    custom_url = sb.expose(8000)
    check(custom_url == url.replace(".preview.localhost:", ".preview.acme.test:"), f"URLs now use the custom domain ({custom_url})")
    r = eventually("the preview answers on the custom domain", lambda: visit(custom_url, headers=with_header),
                   lambda r: r.status == 200)
    check(marker in r.body, "with the sandbox's page")
    client.tenant.preview_domain.delete()
    check(client.tenant.preview_domain.get().get("domain") is None, "preview_domain.delete releases it")
    check(sb.expose(8000) == url, "URLs are back on the platform domain")
    eventually("the custom domain no longer routes", lambda: visit(custom_url, headers=with_header),
               lambda r: r.status == 404)
finally:
    sb.destroy()

check(sb.state == "destroyed", "handle reports destroyed")
try:
    gone = client.sandboxes.get(sb.id)
    check(gone.state == "destroyed", "destroyed sandbox reads as destroyed")
except NotFoundError:
    check(True, "destroyed sandbox is gone")
print("SDK flow passed")
