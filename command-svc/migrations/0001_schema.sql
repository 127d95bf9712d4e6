-- Tally write side, version 1: reference data, complaints, their audit log, idempotency keys,
-- and the events table, which is both the transactional outbox and the permanent event log.
-- The tenant id is in every table and every key. Applied by `command-svc migrate`.

CREATE TABLE tenants (
    tenant_id   text PRIMARY KEY,
    name        text NOT NULL,
    time_zone   text NOT NULL,  -- an IANA name PostgreSQL knows (pg_timezone_names)
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE categories (
    tenant_id   text NOT NULL REFERENCES tenants,
    category_id text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, category_id)
);

CREATE TABLE agents (
    tenant_id   text NOT NULL REFERENCES tenants,
    agent_id    text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id)
);

-- priority: 1 LOW .. 4 URGENT; status: 1 OPEN, 2 IN_PROGRESS, 3 RESOLVED, 4 CLOSED (tally.v1).
CREATE TABLE complaints (
    complaint_id      bigserial PRIMARY KEY,
    tenant_id         text NOT NULL,
    category_id       text NOT NULL,
    priority          smallint NOT NULL CHECK (priority BETWEEN 1 AND 4),
    status            smallint NOT NULL CHECK (status BETWEEN 1 AND 4),
    assigned_agent_id text,
    title             text NOT NULL,
    description       text NOT NULL,
    customer_id       text NOT NULL,
    idempotency_key   text NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    resolved_at       timestamptz,  -- the latest move to RESOLVED; NULL while not resolved
    version           bigint NOT NULL CHECK (version >= 1),
    CONSTRAINT complaints_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants,
    CONSTRAINT complaints_category_fk FOREIGN KEY (tenant_id, category_id) REFERENCES categories,
    CONSTRAINT complaints_agent_fk FOREIGN KEY (tenant_id, assigned_agent_id) REFERENCES agents
);
CREATE INDEX complaints_tenant_created ON complaints (tenant_id, created_at);
CREATE INDEX complaints_tenant_open ON complaints (tenant_id, created_at) WHERE status IN (1, 2);

-- A retry of CreateComplaint (or of an import batch) finds its first result here. request_hash
-- is a digest of the request's content: the same key with other content is ALREADY_EXISTS.
CREATE TABLE idempotency_keys (
    tenant_id       text NOT NULL REFERENCES tenants,
    idempotency_key text NOT NULL,
    request_hash    bytea NOT NULL,
    complaint_id    bigint NOT NULL,
    version         bigint NOT NULL,  -- the complaint's version the first reply carried
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, idempotency_key)
);

-- The audit log: one row per status move, and one for the creation (from_status 0).
CREATE TABLE status_history (
    complaint_id bigint NOT NULL REFERENCES complaints,
    version      bigint NOT NULL,
    tenant_id    text NOT NULL,
    from_status  smallint NOT NULL CHECK (from_status BETWEEN 0 AND 4),
    to_status    smallint NOT NULL CHECK (to_status BETWEEN 1 AND 4),
    actor        text NOT NULL,
    note         text NOT NULL,
    changed_at   timestamptz NOT NULL,
    PRIMARY KEY (complaint_id, version)
);

-- The outbox and the event log. payload is the event body (a tally.v1 message chosen by type);
-- the relay wraps it in an EventEnvelope built from the columns. Rows are never deleted: the
-- read model is rebuilt from them. published_at is set once the relay has XADDed the row.
CREATE TABLE events (
    seq          bigserial PRIMARY KEY,
    tenant_id    text NOT NULL,
    complaint_id bigint,            -- NULL for reference data (tenant, category, agent)
    version      bigint,            -- the complaint's version this event made; NULL as above
    type         smallint NOT NULL, -- tally.v1.EventType
    occurred_at  timestamptz NOT NULL,
    local_day    date NOT NULL,     -- occurred_at in the tenant's time zone
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    imported     boolean NOT NULL DEFAULT false,
    payload      bytea NOT NULL,
    published_at timestamptz,
    CONSTRAINT events_complaint_version UNIQUE (complaint_id, version)
);
CREATE INDEX events_unpublished ON events (seq) WHERE published_at IS NULL;
CREATE INDEX events_tenant_seq ON events (tenant_id, seq);

-- Wake the relay once per writing statement; NOTIFY is delivered at commit.
CREATE FUNCTION tally_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tally_events', '');
    RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION tally_events_notify();
