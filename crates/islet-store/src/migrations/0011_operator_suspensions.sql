-- Who suspended an end user: the tenant (through the API) or the platform's operator (`islet
-- user suspend`). Only the operator lifts an operator's suspension.
ALTER TABLE suspended_users ADD COLUMN by_operator INTEGER NOT NULL DEFAULT 0;
