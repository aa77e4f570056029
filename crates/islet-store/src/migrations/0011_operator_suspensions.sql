-- Who suspended an end user: the tenant (through the API), the platform's operator (`islet
-- user suspend`), or both, each with its own reason. Each lifts only its own; the user is
-- reinstated when neither remains. Only the operator lifts the operator's.
ALTER TABLE suspended_users ADD COLUMN by_tenant INTEGER NOT NULL DEFAULT 1;
ALTER TABLE suspended_users ADD COLUMN by_operator INTEGER NOT NULL DEFAULT 0;
ALTER TABLE suspended_users ADD COLUMN operator_reason TEXT;
