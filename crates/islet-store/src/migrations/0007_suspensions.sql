-- End users a tenant (or the operator) has suspended: no sandbox of theirs runs, none is
-- admitted, and their user-bound credentials were revoked when it happened.
CREATE TABLE suspended_users (
    tenant_id         TEXT NOT NULL,
    external_user_id  TEXT NOT NULL,
    reason            TEXT,
    suspended_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, external_user_id)
);
