-- Web origins (scheme://host[:port]) a tenant's browser code calls the API from, with browser
-- tokens: the API answers them with CORS headers. A JSON array.
ALTER TABLE tenant_settings ADD COLUMN allowed_origins TEXT;
