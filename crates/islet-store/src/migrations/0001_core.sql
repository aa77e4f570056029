CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    -- Isolation level of this tenant's sandboxes (`container` or `gvisor`); NULL = node default.
    isolation   TEXT,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    -- SHA-256 of the whole plaintext key; the plaintext is never stored.
    key_hash    TEXT NOT NULL UNIQUE,
    key_prefix  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE sandboxes (
    id                     TEXT PRIMARY KEY,
    tenant_id              TEXT NOT NULL REFERENCES tenants(id),
    name                   TEXT,
    state                  TEXT NOT NULL,
    template_id            TEXT NOT NULL,
    isolation              TEXT NOT NULL,
    external_user_id       TEXT,
    external_workspace_id  TEXT,
    external_project_id    TEXT,
    metadata               TEXT NOT NULL,
    tags                   TEXT NOT NULL,
    env                    TEXT NOT NULL,
    cpu_count              INTEGER NOT NULL,
    memory_mb              INTEGER NOT NULL,
    disk_mb                INTEGER NOT NULL,
    timeout_sec            INTEGER NOT NULL,
    idle_timeout_sec       INTEGER,
    -- Index of the sandbox's /30 in the node's address range; NULL once destroyed.
    net_index              INTEGER,
    created_at             INTEGER NOT NULL,
    started_at             INTEGER,
    ready_at               INTEGER,
    destroyed_at           INTEGER,
    expires_at             INTEGER,
    last_activity_at       INTEGER NOT NULL,
    boot_ms                INTEGER,
    error                  TEXT
);
CREATE UNIQUE INDEX sandboxes_live_name ON sandboxes(tenant_id, name)
    WHERE name IS NOT NULL AND state != 'destroyed';
CREATE UNIQUE INDEX sandboxes_net_index ON sandboxes(net_index) WHERE net_index IS NOT NULL;
CREATE INDEX sandboxes_tenant_created ON sandboxes(tenant_id, created_at);
CREATE INDEX sandboxes_tenant_user ON sandboxes(tenant_id, external_user_id);
CREATE INDEX sandboxes_state ON sandboxes(state);

CREATE TABLE idempotency_keys (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    sandbox_id    TEXT NOT NULL,
    -- The response body, stored once the request completed; replays return it verbatim.
    response      TEXT,
    status        INTEGER,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);

-- Lifecycle events, written in the same transaction as the change they describe.
-- The webhook dispatcher and the event streams read from here (an outbox).
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    tenant_id    TEXT NOT NULL,
    sandbox_id   TEXT,
    type         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX events_tenant_seq ON events(tenant_id, seq);
