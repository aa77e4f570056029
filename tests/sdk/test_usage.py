"""Quotas, policy and usage (contract §11), API keys and browser tokens (contract §12), through
the unmodified `miosa` 2.19.2 SDK.

Reads MIOSA_BASE_URL / MIOSA_API_KEY; run.sh starts the server with a one-second meter. A
failure exits non-zero.
"""
import os
import time

import miosa
from miosa.errors import InsufficientCreditsError, PermissionError as MiosaPermissionError, ValidationError

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
sessions = client.usage.sessions(external_user_id=user)
check(any(x["sandbox_id"] == sb.id for x in sessions), "usage.sessions lists the user's sandboxes")
summary = client.usage.current()
check(summary["sandbox_seconds"] >= rows[0]["sandbox_seconds"], "usage.current() sums the tenant")
try:
    client.usage.get(period="fortnight")
    raise AssertionError("an unknown period was accepted")
except ValidationError:
    print("ok  an unknown period is refused (ValidationError)")

# --- credit: the tenant's price list and a monthly cap ----------------------------------------
spender = f"{user}_credit"
try:
    settings = client.settings.update(pricing={"sandbox_hour_cents": 3600})  # a cent a second
    check(settings["pricing"]["sandbox_hour_cents"] == 3600, "settings.update sets the price list")
    client.quotas.set(spender, max_credit_cents=2)
    pricey = client.sandboxes.create(external_user_id=spender)
    deadline = time.time() + 30
    while time.time() < deadline and client.sandboxes.get(pricey.id).state != "stopped":
        time.sleep(0.5)
    check(client.sandboxes.get(pricey.id).state == "stopped", "a user past their credit cap is stopped")
    try:
        client.sandboxes.create(external_user_id=spender)
        raise AssertionError("a create was admitted past max_credit_cents")
    except InsufficientCreditsError as e:
        check(e.status_code == 402, "a create past the credit cap raises InsufficientCreditsError (402)")
    spent = client.usage.get(external_user_id=spender, period="month-to-date")["results"][0]
    check(spent["credit_cents"] >= 2, f"usage.get prices the usage: {spent['credit_cents']} cents")
finally:
    # Whatever failed above, the shared tenant is left free and the user uncapped.
    client.settings.update(pricing={})  # free again (the SDK drops None)
    client.quotas.delete(spender)
    for s in client.sandboxes.list(external_user_id=spender):
        s.destroy()
print("usage: all checks passed")

# --- keys and browser tokens (contract §12) ---------------------------------------------------
url = os.environ["MIOSA_BASE_URL"]
key = client.api_keys.create(name="sdk reader", scopes=["sandboxes:read"])
check(key["token"].startswith("msk_live_") and key["scopes"] == ["sandboxes:read"], "api_keys.create returns the plaintext once, with its scopes")
check(any(k["id"] == key["id"] for k in client.api_keys.list()), "api_keys.list finds it")
reader = miosa.Miosa(api_key=key["token"], base_url=url)
reader.sandboxes.list()
try:
    reader.sandboxes.create(external_user_id=user)
    raise AssertionError("a read-only key created a sandbox")
except MiosaPermissionError as e:
    check(e.status_code == 403, "a read-only key cannot create (403)")
rotated = client.api_keys.rotate(key["id"])
check(rotated["token"] != key["token"], "api_keys.rotate returns a new secret")
client.api_keys.delete(key["id"])

mine = client.sandboxes.create(external_user_id=user)
theirs = client.sandboxes.create(external_user_id=user + "_other")
tok = client.tokens.create_scoped(user_id=user, workspace_id="ws_sdk", scopes=["sandboxes:read", "sandboxes:exec"])
check(tok["token"].startswith("mst_") and tok["scopes"] == ["sandboxes:read", "sandboxes:exec"], "tokens.create_scoped mints a browser token")
browser = miosa.Miosa(api_key=tok["token"], base_url=url)
seen = [s.id for s in browser.sandboxes.list()]
check(seen == [mine.id], "the browser token lists only its user's sandboxes")
check(browser.sandboxes.get(mine.id).exec.run("echo hi").stdout.strip() == "hi", "the browser token runs commands in its user's sandbox")
try:
    browser.sandboxes.get(theirs.id)
    raise AssertionError("the browser token reached another user's sandbox")
except miosa.errors.NotFoundError:
    print("ok  another user's sandbox is 404 to the browser token")
check(any(t["id"] == tok["id"] for t in client.tokens.list_scoped()), "tokens.list_scoped finds it")
client.tokens.delete_scoped(tok["id"])
try:
    browser.sandboxes.list()
    raise AssertionError("a revoked browser token still works")
except miosa.errors.AuthenticationError:
    print("ok  a revoked browser token is refused (401)")
scoped = client.api_keys.create_scoped(external_user_id=user, scopes=["sandboxes:read"])
check(scoped["token"].startswith("msk_l2_"), "api_keys.create_scoped mints a user-bound key")
l2 = miosa.Miosa(api_key=scoped["token"], base_url=url)
check([s.id for s in l2.sandboxes.list()] == [mine.id], "the scoped key lists only its user's sandboxes")
mine.destroy()
theirs.destroy()
print("keys and tokens: all checks passed")
