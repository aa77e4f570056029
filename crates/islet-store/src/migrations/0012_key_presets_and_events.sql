-- A tenant's own named scope sets for API keys (built-in presets live in the code), and each
-- key's audit trail: every change made to it, written in the transaction that makes it.
CREATE TABLE key_presets (
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    description TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE key_events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    type      TEXT NOT NULL,
    at        INTEGER NOT NULL,
    details   TEXT NOT NULL
);
CREATE INDEX key_events_by_key ON key_events (key_id, seq);
