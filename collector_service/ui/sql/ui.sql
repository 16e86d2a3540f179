-- Queries of the web viewer. Every one runs in a read-only transaction.

-- name: runs
-- Newest first, paged by key (started_at, run_id): the next page starts below the last row.
SELECT r.run_id, r.pipeline, r.entity, r.status, r.started_at,
       round((EXTRACT(EPOCH FROM (r.ended_at - r.started_at)) * 1000.0)::numeric, 1)
           AS duration_ms,
       (SELECT max(s.drop_ratio) FROM xray_steps s WHERE s.run_id = r.run_id) AS max_drop
FROM xray_runs r
WHERE r.started_at IS NOT NULL
  AND (%(pipeline)s::text IS NULL OR r.pipeline = %(pipeline)s)
  AND (%(status)s::text IS NULL OR r.status = %(status)s)
  AND (%(entity)s::text IS NULL OR r.entity = %(entity)s)
  AND (%(since)s::timestamptz IS NULL OR r.started_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR r.started_at < %(until)s)
  AND (%(min_drop)s::float8 IS NULL OR EXISTS (
        SELECT 1 FROM xray_steps s WHERE s.run_id = r.run_id AND s.drop_ratio > %(min_drop)s))
  AND (%(after_started)s::timestamptz IS NULL
       OR (r.started_at, r.run_id) < (%(after_started)s::timestamptz, %(after_id)s::text))
ORDER BY r.started_at DESC, r.run_id DESC
LIMIT %(limit)s

-- name: run
SELECT run_id, pipeline, entity, status, error, started_at, ended_at, trace_id,
       service_name, ingest_warnings
FROM xray_runs WHERE run_id = %(run_id)s

-- name: run_steps
-- A page of a run's steps: seq order, then those without seq by start time, from the step
-- %(from)s (a span id; NULL: the first) on. Keyset on (seq NULLS LAST, started_at, span_id).
SELECT s.seq, s.step_name, s.step_type, s.candidates_in, s.candidates_out, s.drop_ratio,
       s.why, s.why_json, s.input, s.output, s.status, s.error,
       round(s.duration_ms::numeric, 1) AS duration_ms, s.metrics, s.span_id,
       s.ingest_warnings,
       COALESCE((SELECT jsonb_agg(jsonb_build_object(
                    'attribute', a.attribute, 'artifact_id', a.artifact_id,
                    'size_bytes', a.size_bytes, 'content_type', a.content_type,
                    'storage', a.storage, 'preview', a.preview,
                    'downgraded', a.downgraded) ORDER BY a.attribute)
                 FROM xray_artifacts a
                 WHERE a.run_id = s.run_id AND a.trace_id = s.trace_id AND a.span_id = s.span_id),
                       '[]'::jsonb)
           AS artifacts
FROM xray_steps s
WHERE s.run_id = %(run_id)s
  AND (%(from)s::text IS NULL OR (s.seq IS NULL, COALESCE(s.seq, 0), s.started_at IS NULL, COALESCE(s.started_at, '-infinity'), s.span_id) >= (
        SELECT s.seq IS NULL, COALESCE(s.seq, 0), s.started_at IS NULL, COALESCE(s.started_at, '-infinity'), s.span_id
        FROM xray_steps s
        WHERE s.run_id = %(run_id)s AND s.span_id = %(from)s LIMIT 1))
ORDER BY s.seq NULLS LAST, s.started_at, s.span_id
LIMIT %(limit)s

-- name: run_steps_before
-- Span ids of the steps before step %(from)s, nearest first: where the previous page starts.
SELECT s.span_id
FROM xray_steps s
WHERE s.run_id = %(run_id)s
  AND (s.seq IS NULL, COALESCE(s.seq, 0), s.started_at IS NULL, COALESCE(s.started_at, '-infinity'), s.span_id) < (
        SELECT s.seq IS NULL, COALESCE(s.seq, 0), s.started_at IS NULL, COALESCE(s.started_at, '-infinity'), s.span_id
        FROM xray_steps s
        WHERE s.run_id = %(run_id)s AND s.span_id = %(from)s LIMIT 1)
ORDER BY s.seq DESC NULLS FIRST, s.started_at DESC, s.span_id DESC
LIMIT %(limit)s

-- name: run_funnel
-- The funnel of a whole run in at most %(bars)s bars: steps reporting candidates, in step
-- order, cut into runs of consecutive steps; a bar is in of its first, out of its last.
WITH counted AS (
    SELECT s.seq, s.step_name, s.span_id, s.candidates_in, s.candidates_out, s.drop_ratio,
           row_number() OVER (ORDER BY s.seq NULLS LAST, s.started_at, s.span_id) - 1 AS pos,
           count(*) OVER () AS total
    FROM xray_steps s
    WHERE s.run_id = %(run_id)s
      AND (s.candidates_in IS NOT NULL OR s.candidates_out IS NOT NULL)
)
SELECT count(*) AS steps,
       (array_agg(seq ORDER BY pos))[1] AS seq,
       (array_agg(step_name ORDER BY pos))[1] AS step_name,
       (array_agg(step_name ORDER BY pos DESC))[1] AS last_step_name,
       (array_agg(span_id ORDER BY pos))[1] AS span_id,
       (array_agg(candidates_in ORDER BY pos))[1] AS candidates_in,
       (array_agg(candidates_out ORDER BY pos DESC))[1] AS candidates_out,
       CASE WHEN count(*) = 1 THEN max(drop_ratio) END AS drop_ratio
FROM counted
GROUP BY pos * %(bars)s / total
ORDER BY min(pos)

-- name: artifact
SELECT size_bytes, content_type, storage, preview, downgrade_reason
FROM xray_artifacts WHERE artifact_id = %(artifact_id)s
ORDER BY storage = 'summary'
LIMIT 1

-- name: steps
-- The seed query as a form: steps by drop ratio, largest first, steps without one last.
-- Both halves are read in order from xray_steps_type_drop_ratio_idx (drop_ratio DESC,
-- NULLS FIRST, then started_at DESC) and stop at %(limit)s rows; only those are sorted.
SELECT run_id, seq, step_name, step_type, pipeline, candidates_in, candidates_out,
       drop_ratio, why, started_at
FROM (
    (SELECT run_id, seq, step_name, step_type, pipeline, candidates_in, candidates_out,
            drop_ratio, why, started_at
     FROM xray_steps
     WHERE drop_ratio IS NOT NULL
       AND (%(min_drop)s::float8 IS NULL OR drop_ratio > %(min_drop)s)
       AND (%(step_type)s::text IS NULL OR step_type = %(step_type)s)
       AND (%(pipeline)s::text IS NULL OR pipeline = %(pipeline)s)
       AND (%(since)s::timestamptz IS NULL OR started_at >= %(since)s)
       AND (%(until)s::timestamptz IS NULL OR started_at < %(until)s)
     ORDER BY drop_ratio DESC, started_at DESC
     LIMIT %(limit)s)
    UNION ALL
    (SELECT run_id, seq, step_name, step_type, pipeline, candidates_in, candidates_out,
            drop_ratio, why, started_at
     FROM xray_steps
     WHERE drop_ratio IS NULL
       AND %(min_drop)s::float8 IS NULL
       AND (%(step_type)s::text IS NULL OR step_type = %(step_type)s)
       AND (%(pipeline)s::text IS NULL OR pipeline = %(pipeline)s)
       AND (%(since)s::timestamptz IS NULL OR started_at >= %(since)s)
       AND (%(until)s::timestamptz IS NULL OR started_at < %(until)s)
     ORDER BY drop_ratio DESC, started_at DESC
     LIMIT %(limit)s)
) top
ORDER BY drop_ratio DESC NULLS LAST, started_at DESC
LIMIT %(limit)s

-- name: pipeline_days
-- Per pipeline, step name and UTC day since %(since)s: the median drop ratio and the three
-- largest reject reasons (summed over the day, read as view xray_reject_reasons reads them).
WITH days AS (
    SELECT COALESCE(s.pipeline, r.pipeline) AS pipeline, s.step_name,
           (s.started_at AT TIME ZONE 'UTC')::date AS day,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY s.drop_ratio) AS median_drop,
           count(*) AS steps
    FROM xray_steps s LEFT JOIN xray_runs r ON r.run_id = s.run_id
    WHERE s.started_at >= %(since)s
    GROUP BY 1, 2, 3
), reasons AS (
    SELECT pipeline, step_name, (started_at AT TIME ZONE 'UTC')::date AS day, reason,
           sum(count)::bigint AS total,
           row_number() OVER (PARTITION BY pipeline, step_name,
                                           (started_at AT TIME ZONE 'UTC')::date
                              ORDER BY sum(count) DESC, reason) AS rank
    FROM xray_reject_reasons
    WHERE started_at >= %(since)s
    GROUP BY pipeline, step_name, (started_at AT TIME ZONE 'UTC')::date, reason
)
SELECT d.pipeline, d.step_name, d.day, d.median_drop, d.steps,
       COALESCE((SELECT jsonb_agg(jsonb_build_array(x.reason, x.total) ORDER BY x.rank)
                 FROM reasons x
                 WHERE x.pipeline IS NOT DISTINCT FROM d.pipeline
                   AND x.step_name IS NOT DISTINCT FROM d.step_name
                   AND x.day = d.day AND x.rank <= 3), '[]'::jsonb) AS top_reasons
FROM days d
ORDER BY d.pipeline NULLS LAST, d.step_name NULLS LAST, d.day DESC
