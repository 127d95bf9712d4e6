-- The reference for GetDashboard: the same five panels computed with SQL on the write database
-- (PostgreSQL, command-svc's schema and indexes, nothing added), as a service without a read
-- model would compute them. bench/run runs it with pgbench beside bench-queryload:
--   pgbench -n -M prepared -f bench/sql-dashboard.sql -D tenant=T -c 1 -T 20 postgresql://...
-- One pgbench transaction = one page: the default request (the 30 tenant-local days ending
-- today, every category and priority, 20 agents, the top 10 categories, the 10 oldest open).
-- Resolutions are status_history moves to RESOLVED (3), timed from the complaint's creation;
-- an agent's resolutions are counted for the complaint's current assignee (query-svc credits
-- the agent assigned at the move: the same work for PostgreSQL, without decoding payloads).
--
-- 1. Overview: status counts, created and resolved today, the backlog, the 10 oldest open
--    complaints, today's median resolution time.
WITH z AS (SELECT time_zone, (now() AT TIME ZONE time_zone)::date AS today
            FROM tenants WHERE tenant_id = :tenant)
SELECT count(*) FILTER (WHERE c.status = 1), count(*) FILTER (WHERE c.status = 2),
       count(*) FILTER (WHERE c.status = 3), count(*) FILTER (WHERE c.status = 4),
       count(*) FILTER (WHERE (c.created_at AT TIME ZONE z.time_zone)::date = z.today),
       (SELECT count(*) FROM status_history h
         WHERE h.tenant_id = :tenant AND h.to_status = 3
           AND (h.changed_at AT TIME ZONE z.time_zone)::date = z.today),
       (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM h.changed_at - k.created_at))
          FROM status_history h JOIN complaints k ON k.complaint_id = h.complaint_id
         WHERE h.tenant_id = :tenant AND h.to_status = 3
           AND (h.changed_at AT TIME ZONE z.time_zone)::date = z.today)
  FROM complaints c, z WHERE c.tenant_id = :tenant GROUP BY z.time_zone, z.today;
SELECT complaint_id, created_at, status, priority, category_id, assigned_agent_id
  FROM complaints WHERE tenant_id = :tenant AND status IN (1, 2) ORDER BY created_at LIMIT 10;
-- 2. Volume trend: created and resolved per local day, every day of the range present.
WITH z AS (SELECT time_zone, (now() AT TIME ZONE time_zone)::date AS today
            FROM tenants WHERE tenant_id = :tenant),
 d AS (SELECT z.today - i AS day FROM z, generate_series(0, 29) i),
 c AS (SELECT (c.created_at AT TIME ZONE z.time_zone)::date AS day, count(*) AS n
         FROM complaints c, z WHERE c.tenant_id = :tenant
          AND c.created_at >= (z.today - 30)::timestamp AT TIME ZONE z.time_zone GROUP BY 1),
 r AS (SELECT (h.changed_at AT TIME ZONE z.time_zone)::date AS day, count(*) AS n
         FROM status_history h, z WHERE h.tenant_id = :tenant AND h.to_status = 3
          AND h.changed_at >= (z.today - 30)::timestamp AT TIME ZONE z.time_zone GROUP BY 1)
SELECT d.day, coalesce(c.n, 0), coalesce(r.n, 0)
  FROM d LEFT JOIN c ON c.day = d.day LEFT JOIN r ON r.day = d.day ORDER BY d.day;
-- 3. Resolution statistics over the range: count, mean, p50, p90, p99.
WITH z AS (SELECT time_zone, (now() AT TIME ZONE time_zone)::date AS today
            FROM tenants WHERE tenant_id = :tenant),
 s AS (SELECT extract(epoch FROM h.changed_at - k.created_at) AS secs
         FROM status_history h JOIN complaints k ON k.complaint_id = h.complaint_id, z
        WHERE h.tenant_id = :tenant AND h.to_status = 3
          AND h.changed_at >= (z.today - 29)::timestamp AT TIME ZONE z.time_zone)
SELECT count(*), avg(secs), percentile_disc(0.5) WITHIN GROUP (ORDER BY secs),
       percentile_disc(0.9) WITHIN GROUP (ORDER BY secs),
       percentile_disc(0.99) WITHIN GROUP (ORDER BY secs) FROM s;
-- 4. Agent performance: resolved and mean resolution over the range, open assignments now;
--    by resolved, the first 20.
WITH z AS (SELECT time_zone, (now() AT TIME ZONE time_zone)::date AS today
            FROM tenants WHERE tenant_id = :tenant),
 r AS (SELECT k.assigned_agent_id AS agent, count(*) AS n,
              avg(extract(epoch FROM h.changed_at - k.created_at)) AS mean
         FROM status_history h JOIN complaints k ON k.complaint_id = h.complaint_id, z
        WHERE h.tenant_id = :tenant AND h.to_status = 3
          AND h.changed_at >= (z.today - 29)::timestamp AT TIME ZONE z.time_zone GROUP BY 1),
 o AS (SELECT assigned_agent_id AS agent, count(*) AS n FROM complaints
        WHERE tenant_id = :tenant AND status IN (1, 2) GROUP BY 1)
SELECT a.agent_id, a.name, coalesce(r.n, 0), r.mean, coalesce(o.n, 0)
  FROM agents a LEFT JOIN r ON r.agent = a.agent_id LEFT JOIN o ON o.agent = a.agent_id
 WHERE a.tenant_id = :tenant ORDER BY 3 DESC, 1 LIMIT 20;
-- 5. Category distribution: complaints created per category over the range, the top 10.
WITH z AS (SELECT time_zone, (now() AT TIME ZONE time_zone)::date AS today
            FROM tenants WHERE tenant_id = :tenant)
SELECT c.category_id, count(*) AS n, count(*)::float8 / sum(count(*)) OVER () AS share
  FROM complaints c, z WHERE c.tenant_id = :tenant
   AND c.created_at >= (z.today - 29)::timestamp AT TIME ZONE z.time_zone
 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10;
