-- Usage per tenant, day and labels (end user, project, workspace; '' = none), kept beside the
-- hourly rows in the same transactions: rollups read whole days from here and only the
-- partial days at a period's edges from the hourly rows, so a month of a busy tenant is a
-- few rows per user and day instead of one per sandbox and hour.
CREATE TABLE usage_daily (
    tenant_id              TEXT NOT NULL,
    day                    INTEGER NOT NULL,     -- unix ms of the UTC day's start
    external_user_id       TEXT NOT NULL,
    external_project_id    TEXT NOT NULL,
    external_workspace_id  TEXT NOT NULL,
    sandbox_seconds        REAL NOT NULL DEFAULT 0,
    vcpu_seconds           REAL NOT NULL DEFAULT 0,
    cpu_seconds            REAL NOT NULL DEFAULT 0,
    memory_gib_seconds     REAL NOT NULL DEFAULT 0,
    storage_gib_hours      REAL NOT NULL DEFAULT 0,
    network_ingress_bytes  REAL NOT NULL DEFAULT 0,
    network_egress_bytes   REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, external_user_id, external_project_id, external_workspace_id)
) WITHOUT ROWID;
CREATE INDEX usage_daily_user ON usage_daily(tenant_id, external_user_id, day);

INSERT INTO usage_daily
SELECT tenant_id, hour - hour % 86400000, COALESCE(external_user_id, ''),
       COALESCE(external_project_id, ''), COALESCE(external_workspace_id, ''),
       SUM(sandbox_seconds), SUM(vcpu_seconds), SUM(cpu_seconds), SUM(memory_gib_seconds),
       SUM(storage_gib_hours), SUM(network_ingress_bytes), SUM(network_egress_bytes)
FROM usage_hourly
GROUP BY 1, 2, 3, 4, 5;
