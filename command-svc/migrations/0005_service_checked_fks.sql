-- Three foreign keys whose rule every writer already guarantees, dropped for ImportComplaints
-- (bench/import-bench.sh: the per-row foreign-key checks were a fifth of PostgreSQL's time,
-- one query per row; these three are about six of a complaint's nine checks). No code deletes
-- tenants, categories, agents or complaints, so what a writer checked in its transaction stays
-- true, and:
--   status_history -> complaints: a history row is only ever written by the statement (live
--     commands) or the transaction (an import) that inserts or updates its complaint: the
--     WITH of CreateComplaint inserts it from the complaint it inserts, AssignComplaint and
--     ChangeStatus only when their UPDATE of the complaint hit a row, and an import from the
--     ids it reserved and inserted.
--   idempotency_keys -> tenants: CreateComplaint inserts a key only from its read of the
--     tenant (no tenant, no row); an import checks the tenant first (its validation query).
--   complaints_tenant_fk: implied by complaints_category_fk (a category's tenant exists:
--     categories_tenant_id_fkey), which stays, as does complaints_agent_fk: both are how
--     CreateComplaint and AssignComplaint find an unknown category or agent.
-- IF EXISTS: a development database that ran the unmerged import-speed branch's 0004 has no
-- complaints_tenant_fk already. Dropping a constraint takes a short exclusive lock, no scan.
ALTER TABLE status_history DROP CONSTRAINT IF EXISTS status_history_complaint_id_fkey;
ALTER TABLE idempotency_keys DROP CONSTRAINT IF EXISTS idempotency_keys_tenant_id_fkey;
ALTER TABLE complaints DROP CONSTRAINT IF EXISTS complaints_tenant_fk;
