-- Named queries for `xray prune`, which deletes row by row. A run is old when it ended
-- (or, still pending, started) before now() - older_than.

-- name: count_old
SELECT count(DISTINCT r.run_id), count(s.span_id)
FROM xray_runs r LEFT JOIN xray_steps s ON s.run_id = r.run_id
WHERE COALESCE(r.ended_at, r.started_at, r.received_at) < now() - %(older_than)s::interval

-- name: delete_old
-- Deletes old runs, their steps and their artifact references; returns the artifact ids
-- those references named, so the caller can check which are now unreferenced.
WITH old AS (
    DELETE FROM xray_runs
    WHERE COALESCE(ended_at, started_at, received_at) < now() - %(older_than)s::interval
    RETURNING run_id
), steps AS (
    DELETE FROM xray_steps WHERE run_id IN (SELECT run_id FROM old) RETURNING run_id
), artifacts AS (
    DELETE FROM xray_artifacts WHERE run_id IN (SELECT run_id FROM old) RETURNING artifact_id
)
SELECT DISTINCT artifact_id FROM artifacts

-- name: unreferenced
SELECT id
FROM unnest(%(artifact_ids)s::text[]) AS id
WHERE NOT EXISTS (SELECT 1 FROM xray_artifacts a WHERE a.artifact_id = id)

-- Named queries for `xray retention` (collector_service.store.retention). Old data goes by
-- whole UTC days: the cutoff is the midnight (UTC) at or before now() - older_than.

-- name: cutoff
SELECT date_trunc('day', (now() - %(older_than)s::interval) AT TIME ZONE 'UTC')
       AT TIME ZONE 'UTC'

-- name: keep_table
-- Steps of runs kept whole that sit in the day partitions about to be dropped.
CREATE TEMP TABLE IF NOT EXISTS xray_retention_kept (LIKE xray_steps) ON COMMIT DROP;
CREATE TEMP TABLE IF NOT EXISTS xray_retention_runs (run_id text PRIMARY KEY) ON COMMIT DROP

-- name: delete_old_runs
-- A run is old when it ended (or, never ended, started or was first seen) before the
-- cutoff. Runs are not partitioned: upsert_runs moves a pending run's started_at earlier
-- as its steps arrive, and an ON CONFLICT DO UPDATE cannot move a row to another partition.
WITH gone AS (
    DELETE FROM xray_runs
    WHERE COALESCE(ended_at, started_at, received_at) < %(cutoff)s
    RETURNING run_id
)
INSERT INTO xray_retention_runs SELECT run_id FROM gone

-- name: copy_straddling_steps
-- Runs that started before the cutoff and ended after it are kept whole: their steps in
-- the days being dropped are copied out here and written back (to xray_steps_default,
-- since those days have no partition any more) after the drop.
-- Driven by the runs (one index probe of the old days per kept run, OFFSET 0 keeps it
-- so), never by a scan of the days being dropped. Runs deleted above are gone here.
INSERT INTO xray_retention_kept
SELECT s.*
FROM (SELECT r.run_id FROM xray_runs r WHERE r.started_at < %(cutoff)s) AS k
CROSS JOIN LATERAL (
    SELECT x.* FROM xray_steps x
    WHERE x.run_id = k.run_id AND x.started_at < %(cutoff)s
      AND x.tableoid <> 'xray_steps_default'::regclass
    OFFSET 0) AS s

-- name: delete_default_steps
-- Steps in xray_steps_default (times outside the day partitions) go with their run.
DELETE FROM xray_steps_default d
WHERE NOT EXISTS (SELECT FROM xray_runs r WHERE r.run_id = d.run_id)

-- name: delete_old_artifacts
DELETE FROM xray_artifacts a
USING xray_retention_runs o
WHERE a.run_id = o.run_id
RETURNING a.artifact_id

-- name: estimated_rows
-- Rows in the partitions about to be dropped, as of their last ANALYZE (autovacuum's or
-- a manual one): counting them exactly would read them all.
SELECT COALESCE(sum(GREATEST(c.reltuples, 0)), 0)::bigint
FROM pg_class c
WHERE c.oid = ANY(%(partitions)s::regclass[])

-- name: step_columns
-- The columns a row can be inserted with (not the generated ones), in table order.
SELECT attname
FROM pg_attribute
WHERE attrelid = 'xray_steps'::regclass AND attnum > 0 AND NOT attisdropped
  AND attgenerated = ''
ORDER BY attnum
