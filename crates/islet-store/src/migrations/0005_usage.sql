-- Metering. `usage_meters` keeps, per sandbox, the CPU counter already accounted for, since
-- when its running time is accounted (`run_at`, NULL while it does not run) and since when its
-- storage is (`storage_at`); `usage_hourly` accumulates what was used, per sandbox and hour, with the
-- labels usage is rolled up by. A sample adds its delta to both in one transaction, so a
-- restart or a crash between reading and writing never counts anything twice or loses it.
CREATE TABLE usage_meters (
    sandbox_id   TEXT PRIMARY KEY,
    cpu_usec     INTEGER NOT NULL,
    run_at       INTEGER,
    storage_at   INTEGER NOT NULL
);

CREATE TABLE usage_hourly (
    sandbox_id             TEXT NOT NULL,
    hour                   INTEGER NOT NULL,     -- unix ms of the hour's start
    tenant_id              TEXT NOT NULL,
    external_user_id       TEXT,
    external_project_id    TEXT,
    external_workspace_id  TEXT,
    sandbox_seconds        REAL NOT NULL DEFAULT 0,  -- running wall time
    vcpu_seconds           REAL NOT NULL DEFAULT 0,  -- allocated vCPUs × running time
    cpu_seconds            REAL NOT NULL DEFAULT 0,  -- CPU time used (cgroup)
    memory_gib_seconds     REAL NOT NULL DEFAULT 0,  -- memory in use × time
    storage_gib_hours      REAL NOT NULL DEFAULT 0,  -- allocated disk × time it existed
    PRIMARY KEY (sandbox_id, hour)
);
CREATE INDEX usage_user_hour ON usage_hourly(tenant_id, external_user_id, hour);
CREATE INDEX usage_tenant_hour ON usage_hourly(tenant_id, hour);
