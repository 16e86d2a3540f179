-- Named queries for the `xray` inspection commands (runs, show, steps).

-- name: runs
SELECT r.run_id, r.pipeline, r.entity, r.status, r.started_at,
       round((EXTRACT(EPOCH FROM (r.ended_at - r.started_at)) * 1000)::numeric, 1) AS duration_ms,
       (SELECT count(*) FROM xray_steps s WHERE s.run_id = r.run_id) AS steps,
       r.error
FROM xray_runs r
WHERE (%(pipeline)s::text IS NULL OR r.pipeline = %(pipeline)s)
  AND (%(entity)s::text IS NULL OR r.entity = %(entity)s)
  AND (%(status)s::text IS NULL OR r.status = %(status)s)
  AND (%(since)s::timestamptz IS NULL OR r.started_at >= %(since)s)
ORDER BY r.started_at DESC NULLS LAST, r.run_id
LIMIT %(limit)s

-- name: run
SELECT run_id, pipeline, entity, status, error, started_at, ended_at, trace_id,
       span_id, service_name, attributes, ingest_warnings
FROM xray_runs WHERE run_id = %(run_id)s

-- name: run_steps
-- A run's steps in order; position numbers them, steps without seq by start time.
SELECT row_number() OVER (ORDER BY s.seq NULLS LAST, s.started_at, s.span_id) AS position,
       s.seq, s.step_name, s.step_type, s.candidates_in, s.candidates_out, s.drop_ratio,
       s.why, s.why_json, s.input, s.output, s.status, s.error, s.started_at,
       round(s.duration_ms::numeric, 1) AS duration_ms,
       s.metrics, s.trace_id, s.span_id, s.parent_span_id, s.attributes, s.ingest_warnings
FROM xray_steps s
WHERE s.run_id = %(run_id)s
ORDER BY s.seq NULLS LAST, s.started_at, s.span_id

-- name: run_funnel
-- What `xray show` prints of each step, in run_steps' order (the client numbers them):
-- only the printed columns, and JSON values as text, so the client decodes only the
-- parts it prints.
SELECT s.seq, s.step_name, s.step_type, s.candidates_in, s.candidates_out, s.drop_ratio,
       s.why, (s.why_json -> 'top_reject_reasons')::text AS top_reject_reasons,
       s.input::text AS input, s.output::text AS output, s.metrics::text AS metrics,
       s.status, s.error, round(s.duration_ms::numeric, 1)::text AS duration_ms,
       s.ingest_warnings::text AS ingest_warnings, s.trace_id, s.span_id
FROM xray_steps s
WHERE s.run_id = %(run_id)s
ORDER BY s.seq NULLS LAST, s.started_at, s.span_id

-- name: run_artifacts
-- A run's artifacts, read once for the run rather than once per step.
SELECT trace_id, span_id, attribute, artifact_id, size_bytes, content_type, storage,
       preview, downgraded, downgrade_reason
FROM xray_artifacts
WHERE run_id = %(run_id)s
ORDER BY trace_id, span_id, attribute

-- name: steps
-- The seed query, with optional filters: largest drop ratio first, steps without one last.
-- Both halves are read in order from xray_steps_type_drop_ratio_idx (drop_ratio DESC,
-- NULLS FIRST, then started_at DESC) and stop at %(limit)s rows; only those are sorted.
-- Among steps without a drop ratio, ordering by it too is what lets the index serve them.
SELECT run_id, step_name, candidates_in, candidates_out, drop_ratio, pipeline, why
FROM (
    (SELECT run_id, step_name, candidates_in, candidates_out, drop_ratio, pipeline, why,
            started_at
     FROM xray_steps
     WHERE (%(step_type)s::text IS NULL OR step_type = %(step_type)s)
       AND drop_ratio IS NOT NULL
       AND (%(min_drop)s::float8 IS NULL OR drop_ratio > %(min_drop)s)
       AND (%(pipeline)s::text IS NULL OR pipeline = %(pipeline)s)
       AND (%(name)s::text IS NULL OR step_name = %(name)s)
     ORDER BY drop_ratio DESC, started_at DESC
     LIMIT %(limit)s)
    UNION ALL
    (SELECT run_id, step_name, candidates_in, candidates_out, drop_ratio, pipeline, why,
            started_at
     FROM xray_steps
     WHERE %(min_drop)s::float8 IS NULL
       AND (%(step_type)s::text IS NULL OR step_type = %(step_type)s)
       AND drop_ratio IS NULL
       AND (%(pipeline)s::text IS NULL OR pipeline = %(pipeline)s)
       AND (%(name)s::text IS NULL OR step_name = %(name)s)
     ORDER BY drop_ratio DESC, started_at DESC
     LIMIT %(limit)s)
) top
ORDER BY drop_ratio DESC NULLS LAST, started_at DESC
LIMIT %(limit)s

-- name: run_ids_by_prefix
-- Run ids starting with a prefix (at most 11: enough to tell "ambiguous" and list some).
SELECT run_id FROM xray_runs
WHERE starts_with(run_id, %(prefix)s)
ORDER BY run_id
LIMIT 11

-- name: artifact_ids_by_prefix
SELECT DISTINCT artifact_id FROM xray_artifacts
WHERE starts_with(artifact_id, %(prefix)s)
ORDER BY artifact_id
LIMIT 11
