-- Webhook endpoints. `secret` signs every delivery; during a rotation `previous_secret` signs
-- too, until `previous_secret_until`.
CREATE TABLE webhooks (
    id                     TEXT PRIMARY KEY,
    tenant_id              TEXT NOT NULL,
    url                    TEXT NOT NULL,
    name                   TEXT,
    events                 TEXT NOT NULL,          -- JSON array of names and `x.*` patterns
    headers                TEXT NOT NULL,          -- JSON object of extra delivery headers
    metadata               TEXT NOT NULL,          -- JSON object, the tenant's own
    retry_count            INTEGER NOT NULL,
    active                 INTEGER NOT NULL,
    disabled_reason        TEXT,                   -- set when Islet turned it off (410, 5 days failing)
    secret                 TEXT NOT NULL,
    previous_secret        TEXT,
    previous_secret_until  INTEGER,
    failing_since          INTEGER,                -- first failure since the last success
    last_success_at        INTEGER,
    last_failure_at        INTEGER,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks(tenant_id, created_at);

-- One row per (event, webhook). The body is fixed when the row is written, so every attempt
-- sends the same bytes under the same delivery id. `lease_until` marks an attempt in flight:
-- a dispatcher that dies mid-attempt leaves a lease that expires, and the delivery is retried.
CREATE TABLE webhook_deliveries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    webhook_id       TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    tenant_id        TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    order_key        TEXT,                         -- the sandbox: its deliveries go in order
    body             TEXT NOT NULL,
    state            TEXT NOT NULL,                -- pending | delivered | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER NOT NULL DEFAULT 0,
    last_status      INTEGER,
    last_error       TEXT,
    replay_of        TEXT,
    replay_id        TEXT,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    UNIQUE (webhook_id, replay_id)
);
CREATE INDEX deliveries_due ON webhook_deliveries(next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_order ON webhook_deliveries(webhook_id, order_key, seq)
    WHERE state = 'pending';
CREATE INDEX deliveries_webhook ON webhook_deliveries(webhook_id, seq);
CREATE INDEX deliveries_finished ON webhook_deliveries(finished_at) WHERE state != 'pending';

-- Every attempt of every delivery, as the receiver answered it.
CREATE TABLE webhook_attempts (
    delivery_id   TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    status        INTEGER,                         -- HTTP status, NULL when none came back
    error         TEXT,
    response      TEXT,                            -- the first bytes of the answer
    PRIMARY KEY (delivery_id, attempt)
);

-- How far each outbox reader has got (the webhook fan-out).
CREATE TABLE outbox_cursors (
    name  TEXT PRIMARY KEY,
    seq   INTEGER NOT NULL
);
