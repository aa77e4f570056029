-- Network metering: the link counters already accounted for, per sandbox (a link's counters
-- start again at zero with each start or resume), and the bytes per sandbox and hour. NULL:
-- not known yet (a sandbox already running when this was added): its next reading becomes
-- the mark and counts nothing, so its link's past is not billed all at once.
ALTER TABLE usage_meters ADD COLUMN net_in INTEGER;
ALTER TABLE usage_meters ADD COLUMN net_out INTEGER;
ALTER TABLE usage_hourly ADD COLUMN network_ingress_bytes REAL NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN network_egress_bytes REAL NOT NULL DEFAULT 0;

-- A tenant's price list (what `credit_cents` is computed with, and what `max_credit_cents`
-- caps) and its egress rules for its sandboxes. JSON objects; NULL = none.
ALTER TABLE tenant_settings ADD COLUMN pricing TEXT;
ALTER TABLE tenant_settings ADD COLUMN egress TEXT;
