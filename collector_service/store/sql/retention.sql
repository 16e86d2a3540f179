-- Named queries for `xray prune`. A run is old when it ended (or, still pending, started)
-- before now() - older_than.

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
