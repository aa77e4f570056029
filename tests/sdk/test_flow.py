"""The contract §15 flow, driven by the unmodified `miosa` 2.19.2 SDK against a live Islet.

Reads MIOSA_BASE_URL / MIOSA_API_KEY like any SDK user, plus ISLET_EXPECT_ISOLATION.
Each check asserts on what the server really did; a failure exits non-zero.
"""
import os
import time

import miosa
from miosa.errors import NotFoundError

client = miosa.Miosa()
expected_isolation = os.environ.get("ISLET_EXPECT_ISOLATION", "container")


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok  {what}")


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
finally:
    sb.destroy()

check(sb.state == "destroyed", "handle reports destroyed")
try:
    gone = client.sandboxes.get(sb.id)
    check(gone.state == "destroyed", "destroyed sandbox reads as destroyed")
except NotFoundError:
    check(True, "destroyed sandbox is gone")
print("SDK flow passed")
