-- complaints_tenant_fk (0001) is implied by complaints_category_fk: category_id is NOT NULL, so
-- every complaint's (tenant_id, category_id) is a category's key, and categories.tenant_id
-- REFERENCES tenants. A tenant referenced by a complaint is thus always referenced by one of its
-- categories too, which already stops it from being deleted or renamed. The constraint still
-- cost one foreign-key check (a trigger running a SELECT ... FOR KEY SHARE) per complaint
-- written: about 1 in 7 of the checks an ImportComplaints batch makes (issue 10). Integrity is
-- unchanged.
ALTER TABLE complaints DROP CONSTRAINT complaints_tenant_fk;
