-- Named queries of collector_service.store (postgres.py, steps.py). Each block starts
-- with `-- name: NAME`.
-- Steps arrive by COPY (copy_new_steps, stage_steps_table); runs as one JSON array expanded with
-- json_to_recordset(), artifacts, far fewer, as parallel arrays (one per column) expanded
-- with unnest(): one round trip per statement, whatever the batch size.

-- name: upsert_runs
-- A run row comes from its run span (span_id set) or is provisional, implied by steps.
-- The run span's values win; provisional rows only fill gaps and widen the time range
-- (a run_start event is provisional too: it turns a 'pending' row 'running').
-- Rows are locked in run_id order so concurrent batches cannot deadlock on each other.
-- The rows arrive as one JSON array of objects (postgres._runs_json): encoded in C, where
-- psycopg builds one array per column in Python, about 20 µs per run.
-- updated_at comes through EXCLUDED: Citus refuses a DO UPDATE SET that calls now().
INSERT INTO xray_runs AS r (
    run_id, pipeline, entity, status, error, started_at, ended_at,
    trace_id, span_id, service_name, attributes, ingest_warnings, version, updated_at)
SELECT v.run_id, v.pipeline, v.entity, v.status, v.error, v.started_at, v.ended_at,
       v.trace_id, v.span_id, v.service_name, v.attributes::jsonb, v.ingest_warnings::jsonb,
       v.version, now()
FROM json_to_recordset(%(runs)s::json) AS v(
    run_id text, pipeline text, entity text, status text, error text,
    started_at timestamptz, ended_at timestamptz, trace_id text, span_id text,
    service_name text, attributes text, ingest_warnings text, version text)
ORDER BY v.run_id
ON CONFLICT (run_id) DO UPDATE SET
    pipeline = CASE WHEN EXCLUDED.span_id IS NOT NULL THEN COALESCE(EXCLUDED.pipeline, r.pipeline)
                    ELSE COALESCE(r.pipeline, EXCLUDED.pipeline) END,
    entity = CASE WHEN EXCLUDED.span_id IS NOT NULL THEN COALESCE(EXCLUDED.entity, r.entity)
                  ELSE COALESCE(r.entity, EXCLUDED.entity) END,
    status = CASE WHEN EXCLUDED.span_id IS NOT NULL THEN EXCLUDED.status
                  WHEN r.span_id IS NULL AND r.status = 'pending' AND EXCLUDED.status = 'running'
                  THEN 'running' ELSE r.status END,
    error = CASE WHEN EXCLUDED.span_id IS NOT NULL THEN EXCLUDED.error ELSE r.error END,
    version = CASE WHEN EXCLUDED.span_id IS NOT NULL THEN COALESCE(EXCLUDED.version, r.version)
                   ELSE r.version END,
    started_at = CASE WHEN EXCLUDED.span_id IS NOT NULL
                      THEN COALESCE(EXCLUDED.started_at, r.started_at)
                      WHEN r.span_id IS NULL THEN LEAST(r.started_at, EXCLUDED.started_at)
                      ELSE r.started_at END,
    ended_at = CASE WHEN EXCLUDED.span_id IS NOT NULL THEN EXCLUDED.ended_at
                    WHEN r.span_id IS NULL THEN GREATEST(r.ended_at, EXCLUDED.ended_at)
                    ELSE r.ended_at END,
    trace_id = CASE WHEN EXCLUDED.span_id IS NOT NULL THEN EXCLUDED.trace_id ELSE r.trace_id END,
    span_id = COALESCE(EXCLUDED.span_id, r.span_id),
    service_name = CASE WHEN EXCLUDED.span_id IS NOT NULL
                        THEN COALESCE(EXCLUDED.service_name, r.service_name)
                        ELSE COALESCE(r.service_name, EXCLUDED.service_name) END,
    attributes = CASE WHEN EXCLUDED.span_id IS NOT NULL THEN EXCLUDED.attributes
                      ELSE r.attributes END,
    ingest_warnings = CASE WHEN EXCLUDED.span_id IS NOT NULL THEN EXCLUDED.ingest_warnings
                           ELSE r.ingest_warnings END,
    updated_at = EXCLUDED.updated_at
WHERE (EXCLUDED.span_id IS NOT NULL
       AND (r.span_id IS DISTINCT FROM EXCLUDED.span_id
            OR r.ended_at IS DISTINCT FROM EXCLUDED.ended_at))
   OR (EXCLUDED.span_id IS NULL AND r.span_id IS NULL
       AND (EXCLUDED.started_at < r.started_at OR EXCLUDED.ended_at > r.ended_at))
   OR (EXCLUDED.span_id IS NULL AND r.span_id IS NULL
       AND ((EXCLUDED.status = 'running' AND r.status = 'pending')
            OR (r.ended_at IS NULL AND EXCLUDED.ended_at IS NOT NULL)))
   OR (r.pipeline IS NULL AND EXCLUDED.pipeline IS NOT NULL)
   OR (r.entity IS NULL AND EXCLUDED.entity IS NOT NULL)

-- name: stored_step_keys
-- The steps already stored for the given runs: (run_id, trace_id, span_id) and whether
-- the row still lacks a pipeline. Read after upsert_runs, whose row locks stay until
-- commit: no other batch can store a step of these runs in between, so a step of the
-- batch whose key is not here is new, and goes by COPY straight into xray_steps
-- (store/steps.py). One index probe per run: without started_at a probe cannot be pruned to
-- one partition, and a batch holds several steps of each run (OFFSET 0 keeps the planner
-- from turning the probes into a scan of xray_steps).
SELECT t.run_id, t.trace_id, t.span_id, t.pipeline IS NULL
FROM unnest(%(run_ids)s::text[]) AS b(run_id)
CROSS JOIN LATERAL (
    SELECT x.run_id, x.trace_id, x.span_id, x.pipeline FROM xray_steps x
    WHERE x.run_id = b.run_id OFFSET 0) AS t

-- name: stored_step_keys_citus
-- The same on a Citus coordinator, which refuses OFFSET in a lateral subquery over a table
-- function: the run ids also pick the shards to ask.
SELECT x.run_id, x.trace_id, x.span_id, x.pipeline IS NULL
FROM xray_steps x
WHERE x.run_id = ANY(%(run_ids)s::text[])

-- name: copy_new_steps
-- New steps (see stored_step_keys) by binary COPY into xray_steps itself, routed to their
-- partitions by PostgreSQL. Column order = steps._new_step_values().
COPY xray_steps (
    run_id, seq, step_name, step_type, pipeline, candidates_in, candidates_out,
    why, why_json, input, output, metrics, status, error, started_at, ended_at,
    trace_id, span_id, parent_span_id, attributes, ingest_warnings)
FROM STDIN (FORMAT BINARY)

-- name: stage_steps_table
-- Steps that may already be stored (replays, the ends of running steps, a key twice in
-- one batch) or lack a pipeline travel by COPY into this temporary table (it empties at
-- every commit), and go on to xray_steps with one INSERT ... SELECT, since COPY alone
-- cannot skip replayed spans. Created on first use in each session, so it
-- also works behind a transaction-pooling proxy. Emptied first as well: the row-by-row
-- fallback stages many times in one transaction. Column order = steps._staged_step_values().
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS xray_steps_incoming (
    run_id text, seq int, step_name text, step_type text, pipeline text,
    candidates_in bigint, candidates_out bigint, why text, why_json text, input text,
    output text, metrics text, status text, error text, started_at timestamptz,
    ended_at timestamptz, trace_id text, span_id text, parent_span_id text,
    attributes text, ingest_warnings text
) ON COMMIT DELETE ROWS;
DELETE FROM xray_steps_incoming

-- name: copy_steps
-- Binary: psycopg formats a row in a fifth of the time the text format takes, and the
-- types are fixed (steps._STAGED_TYPES, in this table's column order).
COPY xray_steps_incoming FROM STDIN (FORMAT BINARY)

-- name: complete_running_steps
-- Event producers send a step's start and end apart: a 'running' row (start only) is
-- completed by its end, keeping the start's own values (name, type, seq, start time,
-- input, parent). Matched on (run_id, trace_id, span_id), not on the unique key: an end
-- without a start time carries a stand-in start time that differs from the row's.
-- started_at never changes here, so the row stays in its partition.
UPDATE xray_steps AS t SET
    seq = COALESCE(t.seq, s.seq),
    pipeline = COALESCE(t.pipeline, s.pipeline, s.run_pipeline),
    input = COALESCE(t.input, s.input),
    parent_span_id = COALESCE(t.parent_span_id, s.parent_span_id),
    candidates_in = s.candidates_in,
    candidates_out = s.candidates_out,
    why = s.why,
    why_json = s.why_json,
    output = s.output,
    metrics = s.metrics,
    status = s.status,
    error = s.error,
    ended_at = GREATEST(s.ended_at, t.started_at),
    attributes = t.attributes || s.attributes,
    ingest_warnings = NULLIF(COALESCE(t.ingest_warnings, '[]'::jsonb) || s.end_warnings,
                             '[]'::jsonb)
FROM (
    -- Values are converted here, not in SET: Citus allows only immutable functions
    -- inside a distributed UPDATE's CASE and COALESCE.
    SELECT DISTINCT ON (i.run_id, i.trace_id, i.span_id)
           i.run_id, i.trace_id, i.span_id, i.seq, i.pipeline, r.pipeline AS run_pipeline,
           i.input::jsonb AS input, i.parent_span_id, i.candidates_in, i.candidates_out,
           i.why, i.why_json::jsonb AS why_json, i.output::jsonb AS output,
           i.metrics::jsonb AS metrics, i.status, i.error, i.ended_at,
           i.attributes::jsonb AS attributes,
           -- The end's own warnings; one about a missing start time is moot: the start's
           -- is kept.
           COALESCE((SELECT jsonb_agg(w) FROM jsonb_array_elements(i.ingest_warnings::jsonb) AS w
                     WHERE w->>'attribute' <> 'start_time'), '[]'::jsonb) AS end_warnings
    FROM xray_steps_incoming i
    LEFT JOIN xray_runs r ON r.run_id = i.run_id
    WHERE i.status <> 'running'
    ORDER BY i.run_id, i.trace_id, i.span_id
) AS s
WHERE t.status = 'running'
  AND t.run_id = s.run_id AND t.trace_id = s.trace_id AND t.span_id = s.span_id

-- name: insert_steps
-- A step without its own pipeline takes its run's. One row per (run_id, trace_id,
-- span_id), whatever its start time: a replayed span, a start arriving after its end, or
-- an end that complete_running_steps just used, changes nothing. One row per key (a
-- completed one first) so a batch never inserts a step twice.
-- The keys of the staged steps already stored come as three arrays: store/steps.py read
-- them with stored_step_keys after upsert_runs. Concurrency: that read alone would let two
-- transactions insert the same step at once. They cannot: every batch first upserts the
-- xray_runs rows of its steps (upsert_runs), which locks each of those rows, in run_id
-- order, until commit (ON CONFLICT DO UPDATE locks the conflicting row even when its WHERE
-- is false). So batches touching one run take turns, and the later one reads the earlier
-- one's rows. ON CONFLICT DO NOTHING is the last guard for the unique key itself.
-- The anti-join is on an array, not on xray_steps, so PostgreSQL and a Citus coordinator
-- run the same statement.
INSERT INTO xray_steps (
    run_id, seq, step_name, step_type, pipeline, candidates_in, candidates_out,
    why, why_json, input, output, metrics, status, error, started_at, ended_at,
    trace_id, span_id, parent_span_id, attributes, ingest_warnings)
SELECT DISTINCT ON (s.run_id, s.trace_id, s.span_id)
       s.run_id, s.seq, s.step_name, s.step_type, COALESCE(s.pipeline, r.pipeline),
       s.candidates_in, s.candidates_out, s.why, s.why_json::jsonb, s.input::jsonb,
       s.output::jsonb, s.metrics::jsonb, s.status, s.error, s.started_at, s.ended_at,
       s.trace_id, s.span_id, s.parent_span_id, s.attributes::jsonb, s.ingest_warnings::jsonb
FROM xray_steps_incoming s
LEFT JOIN xray_runs r ON r.run_id = s.run_id
LEFT JOIN unnest(%(stored_run_ids)s::text[], %(stored_trace_ids)s::text[],
                 %(stored_span_ids)s::text[]) AS t(run_id, trace_id, span_id)
       ON t.run_id = s.run_id AND t.trace_id = s.trace_id AND t.span_id = s.span_id
WHERE t.run_id IS NULL
ORDER BY s.run_id, s.trace_id, s.span_id, s.status = 'running'
ON CONFLICT DO NOTHING

-- name: backfill_step_pipelines
-- Steps that arrived before their run span learn the pipeline when it comes.
UPDATE xray_steps s
SET pipeline = r.pipeline
FROM xray_runs r
WHERE r.run_id = ANY(%(run_ids)s::text[])
  AND s.run_id = r.run_id
  AND s.pipeline IS NULL
  AND r.pipeline IS NOT NULL

-- name: insert_artifacts
INSERT INTO xray_artifacts (
    artifact_id, trace_id, span_id, run_id, attribute, size_bytes, content_type,
    storage, location, preview, downgraded, downgrade_reason)
SELECT * FROM unnest(
    %(artifact_id)s::text[], %(trace_id)s::text[], %(span_id)s::text[], %(run_id)s::text[],
    %(attribute)s::text[], %(size_bytes)s::bigint[], %(content_type)s::text[],
    %(storage)s::text[], %(location)s::text[], %(preview)s::text[],
    %(downgraded)s::boolean[], %(downgrade_reason)s::text[])
ON CONFLICT (run_id, trace_id, span_id, attribute) DO NOTHING

-- name: role_can_stage
-- Whether the collector's role may create the temporary staging table (stage_steps_table).
SELECT has_database_privilege(current_database(), 'TEMPORARY'), current_user,
       current_database()

-- name: artifact_info
SELECT artifact_id, size_bytes, content_type, NOT downgraded, downgrade_reason, preview
FROM xray_artifacts
WHERE artifact_id = %(artifact_id)s
ORDER BY downgraded, created_at DESC
LIMIT 1
