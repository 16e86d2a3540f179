-- Steps without xray.step.seq get a place in their run. Producers that set
-- xray.step.type after a span started (the usual OpenTelemetry pattern) send no seq;
-- their steps are ordered by start time. Both views gain a last column, position: the
-- step's place in its run, from 1, in the order seq (steps without one after those with
-- one), then started_at, then span_id. Counted per step with an index scan of its run's
-- steps (xray_steps_run_seq_idx), so filters on the views still reach the indexes.
-- CREATE OR REPLACE VIEW keeps every existing column, its name, type and grants.

CREATE OR REPLACE VIEW xray_step_funnel AS
SELECT s.run_id,
       COALESCE(s.pipeline, r.pipeline)       AS pipeline,
       r.entity,
       s.seq,
       s.step_name,
       s.step_type,
       s.candidates_in,
       s.candidates_out,
       s.drop_ratio,
       s.candidates_in - s.candidates_out     AS dropped,
       s.why,
       s.status,
       s.error,
       s.started_at,
       s.duration_ms,
       (SELECT count(*)
        FROM xray_steps o
        WHERE o.run_id = s.run_id
          AND (o.seq IS NULL, COALESCE(o.seq, 0), o.started_at, o.span_id)
              <= (s.seq IS NULL, COALESCE(s.seq, 0), s.started_at, s.span_id)) AS position
FROM xray_steps s
LEFT JOIN xray_runs r ON r.run_id = s.run_id;

CREATE OR REPLACE VIEW xray_reject_reasons AS
SELECT s.run_id,
       COALESCE(s.pipeline, r.pipeline) AS pipeline,
       s.step_name,
       s.step_type,
       s.seq,
       e.reason,
       e.count,
       s.started_at,
       (SELECT count(*)
        FROM xray_steps o
        WHERE o.run_id = s.run_id
          AND (o.seq IS NULL, COALESCE(o.seq, 0), o.started_at, o.span_id)
              <= (s.seq IS NULL, COALESCE(s.seq, 0), s.started_at, s.span_id)) AS position
FROM xray_steps s
LEFT JOIN xray_runs r ON r.run_id = s.run_id
CROSS JOIN LATERAL (
    -- CASE, not WHERE, guards every cast: PostgreSQL may evaluate WHERE conditions in
    -- any order, so an odd value (a string, an object, 1e30, 2.5) must never reach a
    -- cast. Such entries get a NULL count here and are filtered out below.
    SELECT kv.key AS reason,
           CASE
               WHEN jsonb_typeof(kv.value) <> 'number' THEN NULL
               WHEN kv.value::numeric >= 0
                    AND kv.value::numeric <= 9223372036854775807
                    AND kv.value::numeric = trunc(kv.value::numeric)
                   THEN kv.value::numeric::bigint
           END AS count
    FROM jsonb_each(CASE WHEN jsonb_typeof(s.why_json -> 'top_reject_reasons') = 'object'
                         THEN s.why_json -> 'top_reject_reasons' END) AS kv
) e
WHERE e.count IS NOT NULL;

COMMENT ON COLUMN xray_step_funnel.position IS
    'The step''s place in its run, from 1 (bigint): by seq, steps without seq after '
    'those with one, then by started_at. Never NULL: read a run in order with '
    'ORDER BY run_id, position.';
COMMENT ON COLUMN xray_reject_reasons.position IS
    'The step''s place in its run, from 1, as xray_step_funnel.position. Never NULL.';
COMMENT ON VIEW xray_step_funnel IS
    'A run''s steps as a funnel: how many candidates each step received, kept and dropped, '
    'and why. One row per step. Read a run in order with '
    'WHERE run_id = ... ORDER BY run_id, position (steps without seq by start time).';
