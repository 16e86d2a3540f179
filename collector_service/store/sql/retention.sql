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

-- name: still_referenced
-- Which of the given artifact ids a reference still names (retention.unreferenced_artifacts).
SELECT DISTINCT artifact_id
FROM xray_artifacts
WHERE artifact_id = ANY(%(artifact_ids)s::text[])

-- Named queries for `xray retention` (collector_service.store.retention). Old data goes by
-- whole partitions: the cutoff is the midnight (UTC) at or before now() - older_than,
-- moved back to the start of the partition that holds it (retention.partition_cutoff).

-- name: cutoff
SELECT date_trunc('day', (now() - %(older_than)s::interval) AT TIME ZONE 'UTC')
       AT TIME ZONE 'UTC'

-- name: keep_table
-- Steps of runs kept whole that sit in the partitions about to be dropped.
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

-- name: straddling_runs
-- Runs that started before the cutoff and ended after it are kept whole: their steps in
-- the partitions being dropped are copied out (retention._copy_kept_steps) and written back
-- (to xray_steps_default, since their days have no partition any more) after the drop.
-- Runs deleted above are gone here, so these are few: runs across the cutoff.
SELECT run_id FROM xray_runs WHERE started_at < %(cutoff)s

-- name: delete_default_steps
-- Steps in xray_steps_default (times outside the partitions) go with their run.
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

-- name: estimated_rows_citus
-- The same on a Citus coordinator, where a distributed partition holds no rows itself:
-- each of its shards' own estimate, read where the shard is (%%s is the shard's name).
SELECT COALESCE(sum(GREATEST(r.result::float8, 0)), 0)::bigint
FROM unnest(%(partitions)s::regclass[]) AS p(partition)
CROSS JOIN LATERAL run_command_on_shards(
    p.partition, $$SELECT reltuples FROM pg_class WHERE oid = '%%s'::regclass$$) AS r
WHERE r.success

-- name: step_columns
-- The columns a row can be inserted with (not the generated ones), in table order.
SELECT attname
FROM pg_attribute
WHERE attrelid = 'xray_steps'::regclass AND attnum > 0 AND NOT attisdropped
  AND attgenerated = ''
ORDER BY attnum
