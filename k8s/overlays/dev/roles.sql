-- The services' login role (docs/security.md), made when the development PostgreSQL is first
-- initialised; migration 0007 grants tally_service the rows.
CREATE ROLE tally_service NOLOGIN;
CREATE ROLE tally_app LOGIN PASSWORD 'dev-only-not-secret' IN ROLE tally_service;
