-- Row-level security and a service role (issue 11). A bug in a statement's tenant scoping (a
-- missing "AND tenant_id = $1") must not read or write another tenant's rows, and the services
-- must not be able to change the schema.
--
--   tally_service  a group role (NOLOGIN) the services' login roles are members of: it may read
--                  and write the rows, never create, alter, drop or truncate a table, and sees
--                  only the rows of the tenant in the session's setting tally.tenant ("*" for
--                  every tenant: the relay, verify and the operator tools). No setting, or an
--                  unknown tenant: no row, and a write of such a row fails (42501).
--   the owner      the role that runs these migrations (TALLY_PG_MIGRATE_DSN): owns the tables
--                  and bypasses the policies, as superusers do. The services warn at start when
--                  they connect as a role that bypasses them (docs/security.md).
--
-- Foreign-key checks run as the owner and are not filtered. The role is cluster-wide: created
-- here when missing (the owner needs CREATEROLE for that; a DBA may create it beforehand), and
-- shared by every Tally database of the cluster.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tally_service') THEN
        BEGIN
            CREATE ROLE tally_service NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL; -- created meanwhile
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role tally_service does not exist and % may not create it',
                    current_user
                    USING HINT = 'CREATE ROLE tally_service NOLOGIN (as a role with CREATEROLE), '
                                 'then run command-svc migrate again';
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO tally_service', current_schema());
    -- PostgreSQL 15 gives PUBLIC no CREATE on a new database's public schema; a cluster
    -- upgraded from an older one still does (a warning, not an error, when we do not own it).
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());
END $$;

-- Exactly the statements the services run: no DELETE of the log, no TRUNCATE, no DDL.
GRANT SELECT ON schema_migrations TO tally_service;
GRANT SELECT, INSERT, UPDATE ON tenants, categories, agents, complaints TO tally_service;
GRANT SELECT, INSERT ON idempotency_keys, status_history, events TO tally_service;
GRANT SELECT, INSERT, DELETE ON outbox TO tally_service;  -- seqs only, no tenant data
GRANT SELECT, INSERT ON relay_passes TO tally_service;    -- seqs only, no tenant data
GRANT USAGE ON SEQUENCE complaints_complaint_id_seq, events_seq_seq TO tally_service;

-- One policy per table that holds a tenant's rows, for reads and writes alike. Tables created by
-- later migrations with a tenant_id column need the same (tests/integration/test_pg_rls.c checks
-- that every such table has it).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'categories', 'agents', 'complaints', 'idempotency_keys',
                             'status_history', 'events']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_rows ON %I TO tally_service'
                       ' USING (tenant_id = current_setting(''tally.tenant'', true)'
                       '        OR current_setting(''tally.tenant'', true) = ''*'')'
                       ' WITH CHECK (tenant_id = current_setting(''tally.tenant'', true)'
                       '        OR current_setting(''tally.tenant'', true) = ''*'')', t);
    END LOOP;
END $$;
