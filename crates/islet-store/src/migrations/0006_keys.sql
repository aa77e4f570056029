-- Restricted and end-user-bound API keys, and browser tokens (contract §12).
ALTER TABLE api_keys ADD COLUMN scopes TEXT;             -- JSON array of scope names; NULL = all
ALTER TABLE api_keys ADD COLUMN external_user_id TEXT;   -- set for scoped keys (msk_l2_…)
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;
ALTER TABLE api_keys ADD COLUMN description TEXT;

-- Browser tokens (`mst_…`): short-lived, bound to one end user, a subset of the minting key's
-- scopes. Like keys, only their SHA-256 is stored.
CREATE TABLE browser_tokens (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    issued_by         TEXT NOT NULL,
    token_hash        TEXT NOT NULL UNIQUE,
    external_user_id  TEXT NOT NULL,
    workspace_id      TEXT,
    scopes            TEXT NOT NULL,
    extra             TEXT NOT NULL,
    expires_at        INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    revoked_at        INTEGER
);
CREATE INDEX browser_tokens_tenant ON browser_tokens(tenant_id, created_at);
