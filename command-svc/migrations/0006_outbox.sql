-- The outbox becomes a table of its own (issue 10: the relay at 100,000 events/s). Until now
-- the relay marked each published row with UPDATE events SET published_at = <pass id>: never a
-- HOT update (published_at was indexed and in events_unpublished's predicate), so every event
-- was written twice, with a new heap tuple, four index entries and about 820 bytes of WAL, and
-- the mark was three quarters of PostgreSQL's time in the relay (bench/README.md, "The relay
-- benchmark"). Now:
--   outbox        one row per unpublished event (its seq), inserted by the statement trigger
--                 below in the writer's own transaction, so every writer (commands, imports,
--                 a psql INSERT) fills it; the relay deletes a pass's rows as it marks it.
--   relay_passes  one row per pass that Redis took: its id (Unix microseconds, increasing; a
--                 new leader starts above max(id)) and its seqs (lo..hi when contiguous, else
--                 the list). A Redis that lost data gets the rows of the passes after its
--                 tally:relay:pos put back into the outbox.
-- events is append-only from here on: no row is ever updated, so its pages stay all-visible.
-- A relay of an older build fails on its next statement (published_at is gone) and keeps the
-- lock until its replica is replaced: nothing is published during that part of a rollout,
-- nothing is lost (docs/operations.md, "Upgrading to migration 0006").
--
-- Writes to events wait from the start (the migration runs in one READ COMMITTED transaction:
-- without the lock, a row committed by an older writer between the copy into the outbox and
-- the DROP below would be in neither and never published); reads go on until the DROP.
LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE outbox (
    seq bigint PRIMARY KEY
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000);
-- Vacuumed after every 20,000 deletions whatever its size: each pass's SELECT starts at the
-- head of outbox_pkey, where the deleted rows' entries wait for vacuum.

CREATE TABLE relay_passes (
    id   bigint PRIMARY KEY, -- Unix microseconds, the value of tally:relay:pos it SET
    lo   bigint NOT NULL,    -- its first seq
    hi   bigint NOT NULL,    -- its last seq
    seqs bigint[]            -- its seqs when they are not every one of lo..hi; NULL when they are
);

INSERT INTO outbox (seq) SELECT seq FROM events WHERE published_at IS NULL;
INSERT INTO relay_passes (id, lo, hi, seqs)
SELECT (extract(epoch FROM published_at) * 1000000)::bigint, min(seq), max(seq),
       CASE WHEN max(seq) - min(seq) + 1 = count(*) THEN NULL ELSE array_agg(seq ORDER BY seq) END
FROM events WHERE published_at IS NOT NULL GROUP BY published_at;

DROP INDEX events_unpublished;
DROP INDEX events_published_at;
ALTER TABLE events DROP COLUMN published_at;

-- Once per writing statement: its rows into the outbox, and a wake-up for the relay (NOTIFY is
-- delivered at commit). The schema is the migration's, whatever the writer's search_path.
CREATE FUNCTION tally_events_outbox() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO outbox (seq) SELECT seq FROM new_events;
    PERFORM pg_notify('tally_events', '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS events_notify ON events;
DROP FUNCTION IF EXISTS tally_events_notify();
CREATE TRIGGER events_outbox AFTER INSERT ON events REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION tally_events_outbox();
