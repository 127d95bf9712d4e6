-- events_published_at (0002) indexed every row, NULLs too, so the planner could choose it for
-- the relay's "published_at IS NULL" reads (the backlog count, the repair's "anything left?",
-- and before 3557f0f the mark) whenever its statistics were stale, as after a bulk import: a
-- scan of every unpublished row where events_unpublished (0001) reads just the batch. Only
-- published rows in it now: it still serves max(published_at) (a new leader's start) and the
-- repair's "published_at > x AND published_at <= y", which both imply IS NOT NULL, and can no
-- longer serve an IS NULL query. Built in the migration's transaction, as 0002 was.
DROP INDEX events_published_at;
CREATE INDEX events_published_at ON events (published_at) WHERE published_at IS NOT NULL;
