-- Policy documents (contract §11): `subject` is '' for the tenant's defaults and
-- 'user:<external_user_id>' for one of its end users.
CREATE TABLE policies (
    tenant_id   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    document    TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, subject)
);

-- What one end user holds, counted at every admission (the query's WHERE matches, so the
-- user's destroyed history is never read).
CREATE INDEX sandboxes_user_live ON sandboxes(tenant_id, external_user_id)
    WHERE state != 'destroyed';
