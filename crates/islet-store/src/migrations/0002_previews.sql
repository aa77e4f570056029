-- Exposed ports of sandboxes. One live preview per (sandbox, port): `expose` is idempotent.
CREATE TABLE previews (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants(id),
    sandbox_id          TEXT NOT NULL REFERENCES sandboxes(id),
    port                INTEGER NOT NULL,
    visibility          TEXT NOT NULL,
    label               TEXT,
    metadata            TEXT NOT NULL,
    expires_at          INTEGER,
    -- The preview's current share link (a preview token), if any.
    share_token_id      TEXT,
    created_at          INTEGER NOT NULL,
    deleted_at          INTEGER
);
CREATE UNIQUE INDEX previews_live_port ON previews(sandbox_id, port) WHERE deleted_at IS NULL;

-- Every minted preview token and share link, by its `jti`. The token itself is never stored:
-- it is verified by its signature; this row exists for listing and revocation.
CREATE TABLE preview_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    sandbox_id  TEXT NOT NULL REFERENCES sandboxes(id),
    port        INTEGER,
    scope       TEXT NOT NULL,
    -- `token` (preview-token), `share` (sandbox share), `preview_share` (a preview's share).
    kind        TEXT NOT NULL,
    preview_id  TEXT,
    prefix      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX preview_tokens_sandbox ON preview_tokens(sandbox_id, kind);

-- Revoked token ids in revocation order: every preview edge follows this log by `seq`.
CREATE TABLE token_revocations (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id    TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE TABLE tenant_settings (
    tenant_id                   TEXT PRIMARY KEY REFERENCES tenants(id),
    branding                    TEXT,
    preview_domain              TEXT,
    preview_domain_challenge    TEXT,
    preview_domain_verified_at  INTEGER,
    updated_at                  INTEGER NOT NULL
);
-- A domain serves one tenant once verified; unverified claims may coexist.
CREATE UNIQUE INDEX tenant_settings_verified_domain ON tenant_settings(preview_domain)
    WHERE preview_domain_verified_at IS NOT NULL;

-- TLS certificates on tenants' preview domains: uploaded ones cover `*.<domain>` (`name` is
-- the domain), ACME-issued ones one preview host each (`name` is the host).
CREATE TABLE certificates (
    name        TEXT PRIMARY KEY,
    -- The tenant's preview domain the certificate serves under.
    domain      TEXT NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    -- `wildcard` (uploaded) or `host` (ACME).
    kind        TEXT NOT NULL,
    cert_pem    TEXT NOT NULL,
    key_pem     TEXT NOT NULL,
    not_after   INTEGER NOT NULL,
    source      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX certificates_domain ON certificates(domain);

-- ACME accounts by directory URL (the credentials instant-acme restores an account from).
CREATE TABLE acme_accounts (
    directory    TEXT PRIMARY KEY,
    credentials  TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

-- Server-wide secrets (token signing keys), created on first use.
CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    value       BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Network slots given back recently: not handed out again until `until`, so a preview edge
-- whose route cache still points at a slot never reaches the next sandbox behind it.
CREATE TABLE net_slot_holds (
    net_index  INTEGER PRIMARY KEY,
    until      INTEGER NOT NULL
);
