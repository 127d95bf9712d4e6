-- The relay's pass ids (issue 8): every pass marks its rows with published_at = its id, and
-- Redis holds the id of the last pass it has (tally:relay:pos). A new leader starts above
-- max(published_at), and a Redis that lost data has its rows un-marked by published_at range
-- (in chunks), both through this index. Built in the migration's transaction: writes to events
-- wait while it builds (seconds for millions of rows).
CREATE INDEX events_published_at ON events (published_at);
