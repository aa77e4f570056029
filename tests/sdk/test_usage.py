"""Quotas, policy and usage (contract §11) through the unmodified `miosa` 2.19.2 SDK.

Reads MIOSA_BASE_URL / MIOSA_API_KEY; run.sh starts the server with a one-second meter. A
failure exits non-zero.
"""
import time

import miosa
from miosa.errors import PermissionError as MiosaPermissionError, ValidationError

client = miosa.Miosa()
user = f"sdk_quota_{int(time.time())}"


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok  {what}")


# --- quotas ----------------------------------------------------------------------------------
q = client.quotas.set(user, max_sandboxes=1, max_concurrent=1)
check(q["max_sandboxes"] == 1 and q["limits"]["max_concurrent"] == 1, "quotas.set answers the limits, flat and nested")
check(q["limits"]["max_storage_gb"] is None, "an unset limit reads as null (uncapped)")
got = client.quotas.get(user)
check(got["usage"]["total_sandboxes"] == 0 and got["usage"]["concurrent"] == 0, "quotas.get reports usage")

sb = client.sandboxes.create(external_user_id=user, metadata={"sdk": "usage"})
try:
    client.sandboxes.create(external_user_id=user)
    raise AssertionError("a second sandbox was admitted past max_sandboxes=1")
except MiosaPermissionError as e:
    check(e.status_code == 403 and e.code == "QUOTA_EXCEEDED", "the second create is refused: PermissionError 403 QUOTA_EXCEEDED")
check(client.quotas.get(user)["usage"]["total_sandboxes"] == 1, "the quota counts the running sandbox")
try:
    client.quotas.set(user, max_sandboxes=-1)
    raise AssertionError("a negative quota was accepted")
except ValidationError:
    print("ok  a negative quota is refused (ValidationError)")

# --- policy -----------------------------------------------------------------------------------
client.tenant.policy.set({"quotas": {"max_cpu": 64}, "lifecycle": {"default_idle_timeout_sec": 900}})
check(client.tenant.policy.get()["quotas"]["max_cpu"] == 64, "tenant.policy set/get")
policy = client.external_users(user).policy
policy.set({"lifecycle": {"default_timeout_sec": 600}, "quotas": {"max_sandboxes": 2}})
check(policy.get()["lifecycle"]["default_timeout_sec"] == 600, "external_users(uid).policy set/get")
eff = policy.effective()
check(eff.quotas.max_sandboxes.value == 2 and eff.quotas.max_sandboxes.source == "user", "effective policy: the user's value")
check(eff.quotas.max_cpu.value == 64 and eff.quotas.max_cpu.source == "tenant", "effective policy: the tenant's default")
check(eff.lifecycle.default_idle_timeout_sec.source == "tenant", "effective policy: lifecycle from the tenant")
second = client.sandboxes.create(external_user_id=user)
check(second.id != sb.id, "the user's own policy now admits a second sandbox")
client.quotas.delete(user)
check(client.quotas.get(user)["max_sandboxes"] is None, "quotas.delete lifts the user's quotas")
policy.delete()
client.tenant.policy.delete()
check(client.tenant.policy.get() == {}, "tenant.policy.delete empties it")

# --- usage ------------------------------------------------------------------------------------
sb.exec.run("timeout 1 sh -c 'while :; do :; done'; true")
time.sleep(2.5)
own = sb.usage()
check(own["sandbox_id"] == sb.id and own["runtime_sec"] > 1, "sandbox.usage() reports its running time")
check(own["active_cpu_ms"] > 500, "sandbox.usage() reports the CPU it burned")
sb.destroy()
second.destroy()
u = client.usage.get(external_user_id=user, period="30d")
rows = u["results"]
check(len(rows) == 1 and rows[0]["external_user_id"] == user, "usage.get rolls up by external_user_id")
check(rows[0]["sandbox_seconds"] >= own["runtime_sec"], "the rollup covers the sandbox's time")
check("period_start" in u and "period_end" in u, "usage.get names its period")
mtd = client.usage.get(period="month-to-date", group_by="external_user_id")
check(any(r["external_user_id"] == user for r in mtd["results"]), "usage.get month-to-date")
summary = client.usage.current()
check(summary["sandbox_seconds"] >= rows[0]["sandbox_seconds"], "usage.current() sums the tenant")
try:
    client.usage.get(period="fortnight")
    raise AssertionError("an unknown period was accepted")
except ValidationError:
    print("ok  an unknown period is refused (ValidationError)")
print("usage: all checks passed")
