-- A sandbox's `slug`, a handle unique among the tenant's sandboxes that are not destroyed, and
-- `always_on`: never stopped as idle.
ALTER TABLE sandboxes ADD COLUMN slug TEXT;
ALTER TABLE sandboxes ADD COLUMN always_on INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX sandboxes_slug ON sandboxes (tenant_id, slug)
    WHERE slug IS NOT NULL AND state != 'destroyed';
