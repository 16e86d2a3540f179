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
       s.metrics, s.trace_id, s.span_id, s.parent_span_id, s.attributes, s.ingest_warnings,
       COALESCE((SELECT jsonb_agg(jsonb_build_object(
                    'attribute', a.attribute, 'artifact_id', a.artifact_id,
                    'size_bytes', a.size_bytes, 'content_type', a.content_type,
                    'storage', a.storage, 'preview', a.preview,
                    'downgraded', a.downgraded, 'downgrade_reason', a.downgrade_reason)
                    ORDER BY a.attribute)
                 FROM xray_artifacts a
                 WHERE a.run_id = s.run_id AND a.trace_id = s.trace_id AND a.span_id = s.span_id),
                       '[]'::jsonb)
           AS artifacts
FROM xray_steps s
WHERE s.run_id = %(run_id)s
ORDER BY s.seq NULLS LAST, s.started_at, s.span_id

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
