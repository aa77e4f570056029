-- More domains a tenant's previews answer on, beyond its one preview domain. Each is proven by
-- the same DNS TXT challenge; once verified it serves that tenant only.
CREATE TABLE custom_domains (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    domain       TEXT NOT NULL,
    challenge    TEXT NOT NULL,
    verified_at  INTEGER,
    created_at   INTEGER NOT NULL
);
CREATE UNIQUE INDEX custom_domains_tenant_domain ON custom_domains (tenant_id, domain);
CREATE UNIQUE INDEX custom_domains_verified ON custom_domains (domain) WHERE verified_at IS NOT NULL;

-- Bulk operations on sandboxes: the set is fixed when the job is accepted, and each item's
-- outcome is written as it is done, so a restart carries on where the job stood.
CREATE TABLE bulk_jobs (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    -- `pause`, `resume`, `stop` or `destroy`.
    op           TEXT NOT NULL,
    -- The `filter` it was asked with, as JSON (null for a list of ids).
    filter       TEXT,
    created_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX bulk_jobs_unfinished ON bulk_jobs (created_at) WHERE finished_at IS NULL;
CREATE TABLE bulk_job_items (
    job_id      TEXT NOT NULL REFERENCES bulk_jobs(id),
    position    INTEGER NOT NULL,
    sandbox_id  TEXT NOT NULL,
    -- `pending`, `succeeded`, `skipped` or `failed`.
    status      TEXT NOT NULL,
    -- For `skipped` and `failed`: the error code and message.
    code        TEXT,
    message     TEXT,
    done_at     INTEGER,
    PRIMARY KEY (job_id, position)
);
