-- X-Ray schema v1, analyst layer: documentation of every table and column, stable
-- views for the common debugging questions, and a read-only role for analysts.
-- Applied once, in a transaction, by `xray migrate` (collector_service.migrate).
-- A released migration file is never edited: add a new numbered file instead.
--
-- The tables, the views and every column named in a COMMENT below are a public
-- interface: SQL analysts, dashboards and the `xray` CLI depend on them. Adding a column
-- is fine; renaming, retyping or changing the meaning of one is a breaking change.

-- ---------------------------------------------------------------------------------------
-- xray_runs
-- ---------------------------------------------------------------------------------------
COMMENT ON TABLE xray_runs IS
    'One row per pipeline run (one execution of a pipeline on an entity). Created by the '
    'first span of the run that reaches a collector, in any order: until the run span '
    'itself arrives the row is provisional (status = ''pending'', times widened from its '
    'steps); the run span then fills it in. Key: run_id.';
COMMENT ON COLUMN xray_runs.run_id IS
    'Run identifier, from attribute xray.run.id (1 to 256 characters); when absent or '
    'invalid, the trace id (32 lowercase hex characters). Primary key; xray_steps.run_id '
    'and xray_artifacts.run_id refer to it (no foreign key: steps may arrive first).';
COMMENT ON COLUMN xray_runs.pipeline IS
    'Pipeline name, from xray.run.pipeline on the run span (or on a step, until the run '
    'span arrives). NULL: no span of the run has named its pipeline yet.';
COMMENT ON COLUMN xray_runs.entity IS
    'What the run is about (for example an ASIN), from xray.run.entity. NULL: not sent.';
COMMENT ON COLUMN xray_runs.status IS
    '''pending'' until the run span arrives (the run may still be going, or its run span '
    'was lost), then ''ok'' or ''error'' from the run span''s OpenTelemetry status.';
COMMENT ON COLUMN xray_runs.error IS
    'Why the run failed: "ExceptionType: message" from the run span''s last exception '
    'event, else its status message. NULL unless status = ''error'' (and may be NULL then '
    'if the producer gave no message).';
COMMENT ON COLUMN xray_runs.started_at IS
    'When the run started: the run span''s start time; while pending, the earliest start '
    'of its steps seen so far. NULL only for rows not written by the collector.';
COMMENT ON COLUMN xray_runs.ended_at IS
    'When the run ended: the run span''s end time; while pending, the latest end of its '
    'steps seen so far. Duration in ms: EXTRACT(EPOCH FROM ended_at - started_at) * 1000, '
    'or use xray_run_summary.duration_ms.';
COMMENT ON COLUMN xray_runs.trace_id IS
    'OpenTelemetry trace id of the run span (32 lowercase hex), or of the first step seen '
    'while the run is pending. Use it to open the run in a tracing UI.';
COMMENT ON COLUMN xray_runs.span_id IS
    'OpenTelemetry span id of the run span (16 lowercase hex). NULL while the run span has '
    'not arrived (exactly when status = ''pending'').';
COMMENT ON COLUMN xray_runs.service_name IS
    'The producing service: resource attribute service.name of the run span (or of a step '
    'while pending). NULL: not sent.';
COMMENT ON COLUMN xray_runs.attributes IS
    'Every other attribute of the run span as a JSON object {attribute name: value}, so '
    'nothing a producer sent is lost: custom attributes, raw values the collector could '
    'not use (see ingest_warnings), exception.stacktrace. ''{}'' while pending.';
COMMENT ON COLUMN xray_runs.ingest_warnings IS
    'What the collector changed in the run span to store it: JSON array of '
    '{"attribute": name, "problem": text}. NULL: stored exactly as sent (or still pending).';
COMMENT ON COLUMN xray_runs.received_at IS
    'When the collector first stored a span of this run (database clock when that write '
    'began).';
COMMENT ON COLUMN xray_runs.updated_at IS
    'When the collector last changed this row (for example when the run span arrived).';

-- ---------------------------------------------------------------------------------------
-- xray_steps
-- ---------------------------------------------------------------------------------------
COMMENT ON TABLE xray_steps IS
    'One row per pipeline step (a span with attribute xray.step.type): a discrete decision '
    'unit such as an LLM call, a search, a filter or a ranking. Unique on (trace_id, '
    'span_id): a replayed export changes nothing. A run''s steps in order: '
    'ORDER BY seq, started_at (see view xray_step_funnel).';
COMMENT ON COLUMN xray_steps.run_id IS
    'The run this step belongs to (xray_runs.run_id): xray.run.id, else the trace id.';
COMMENT ON COLUMN xray_steps.seq IS
    'Position of the step in its run, from 1, from xray.step.seq (set by the X-Ray SDK). '
    'NULL: the producer did not send one (order such steps by started_at).';
COMMENT ON COLUMN xray_steps.step_name IS
    'Step name, from xray.step.name; defaults to the span name (at most 512 characters).';
COMMENT ON COLUMN xray_steps.step_type IS
    'One of llm, search, filter, rank, transform, other, from xray.step.type '
    '(case-insensitive); an unknown value is stored as ''other'' with an ingest warning.';
COMMENT ON COLUMN xray_steps.pipeline IS
    'Pipeline name: xray.run.pipeline on the step, else the run''s pipeline (filled in '
    'when the run span arrives). NULL: not known yet.';
COMMENT ON COLUMN xray_steps.candidates_in IS
    'Number of items entering the step, from xray.step.candidates_in (>= 0). NULL: not '
    'sent or not a usable integer (the raw value is then kept in attributes).';
COMMENT ON COLUMN xray_steps.candidates_out IS
    'Number of items leaving the step, from xray.step.candidates_out (>= 0). NULL: not '
    'sent or not a usable integer (the raw value is then kept in attributes).';
COMMENT ON COLUMN xray_steps.drop_ratio IS
    'Derived, never sent: 1 - candidates_out / candidates_in, a fraction (0.92 = 92% '
    'dropped). NULL when candidates_in is NULL or 0 or candidates_out is NULL. Negative '
    'when the step emitted more items than it received. Indexed with step_type.';
COMMENT ON COLUMN xray_steps.why IS
    'One-line human-readable explanation of the outcome, from xray.step.why '
    '(e.g. "Dropped 92% of candidates below relevance 0.7"). NULL: not sent. A text over '
    'the inline ceiling is moved to an artifact and replaced by its preview followed by '
    '"[full text: artifact <artifact_id>]".';
COMMENT ON COLUMN xray_steps.why_json IS
    'Structured explanation, from xray.step.why_json: always a JSON object, for example '
    '{"top_reject_reasons": {"category_mismatch": 4720}} (see view xray_reject_reasons). '
    'NULL: not sent, or not a JSON object (the raw value is then kept in attributes). A '
    'value over the inline ceiling is moved to an artifact and replaced by '
    '{"xray_artifact": {reference}} (see xray_steps.attributes).';
COMMENT ON COLUMN xray_steps.input IS
    'Small structured input, from xray.step.input: any JSON value; text that is not JSON '
    'is stored as a JSON string. NULL: not sent. Over the inline ceiling: '
    '{"xray_artifact": {reference}}, the value itself is an artifact.';
COMMENT ON COLUMN xray_steps.output IS
    'Small structured output, from xray.step.output: any JSON value; text that is not JSON '
    'is stored as a JSON string. NULL: not sent. Over the inline ceiling: '
    '{"xray_artifact": {reference}}, the value itself is an artifact.';
COMMENT ON COLUMN xray_steps.metrics IS
    'Numeric metrics as a JSON object {name: number}, one entry per attribute '
    'xray.step.metric.<name> holding a finite int or double. ''{}'' when none. Read one '
    'with (metrics->>''name'')::double precision.';
COMMENT ON COLUMN xray_steps.status IS
    '''ok'' or ''error'', from the step span''s OpenTelemetry status.';
COMMENT ON COLUMN xray_steps.error IS
    'Why the step failed: "ExceptionType: message" from the span''s last exception event, '
    'else its status message. NULL unless status = ''error'' (and may be NULL then).';
COMMENT ON COLUMN xray_steps.started_at IS
    'Span start time. If the span had none, its end time, or the time the collector '
    'received it (an ingest warning says so).';
COMMENT ON COLUMN xray_steps.ended_at IS
    'Span end time, never before started_at (the collector corrects that, with an ingest '
    'warning).';
COMMENT ON COLUMN xray_steps.duration_ms IS
    'Derived: ended_at - started_at in milliseconds (double precision, >= 0).';
COMMENT ON COLUMN xray_steps.trace_id IS
    'OpenTelemetry trace id of the step span (32 lowercase hex).';
COMMENT ON COLUMN xray_steps.span_id IS
    'OpenTelemetry span id of the step span (16 lowercase hex). With trace_id, the unique '
    'key; xray_artifacts rows of this step carry the same pair.';
COMMENT ON COLUMN xray_steps.parent_span_id IS
    'Span id of the parent span (usually the run span or an enclosing step). NULL: a root '
    'span.';
COMMENT ON COLUMN xray_steps.attributes IS
    'Every other attribute of the step span as a JSON object, so nothing a producer sent '
    'is lost: custom attributes, raw values rejected from a column (see ingest_warnings), '
    'exception.stacktrace, xray.sdk.truncated, and for each artifact the key '
    'xray.artifact.<name> holding a reference {"artifact_id", "size_bytes", '
    '"content_type", "preview"} (plus "downgraded": reason when only a summary was kept) '
    'instead of the payload (see xray_artifacts). Any other value over the inline ceiling '
    'is replaced by such a reference too.';
COMMENT ON COLUMN xray_steps.ingest_warnings IS
    'What the collector changed in the step span to store it: JSON array of '
    '{"attribute": name, "problem": text}, for example a rejected candidates_in or an '
    'artifact downgraded to a summary. NULL: stored exactly as sent.';
COMMENT ON COLUMN xray_steps.received_at IS
    'When the collector stored this step (database clock when that write began).';

-- ---------------------------------------------------------------------------------------
-- xray_artifacts
-- ---------------------------------------------------------------------------------------
COMMENT ON TABLE xray_artifacts IS
    'One row per artifact reference: a bulky payload of one step (attribute '
    'xray.artifact.<name>, or any value over the inline ceiling), stored outside Postgres '
    'and referenced from the step row instead of the payload. Key: '
    '(trace_id, span_id, attribute). The same payload referenced twice is stored once '
    '(artifact_id is its content hash) but has one row per reference.';
COMMENT ON COLUMN xray_artifacts.artifact_id IS
    'Content address: lowercase hex SHA-256 of the payload bytes (64 characters). Fetch '
    'and verify the payload with it.';
COMMENT ON COLUMN xray_artifacts.trace_id IS
    'Trace id of the step that referenced the artifact (xray_steps.trace_id).';
COMMENT ON COLUMN xray_artifacts.span_id IS
    'Span id of the step that referenced the artifact (xray_steps.span_id).';
COMMENT ON COLUMN xray_artifacts.run_id IS
    'Run of the step that referenced the artifact (xray_runs.run_id).';
COMMENT ON COLUMN xray_artifacts.attribute IS
    'The span attribute the payload came from, e.g. xray.artifact.prompt: the step''s '
    'attributes hold the reference under that key; for xray.step.why_json, '
    'xray.step.input and xray.step.output the column of that name holds '
    '{"xray_artifact": reference}; for xray.step.why the column ends with the artifact id.';
COMMENT ON COLUMN xray_artifacts.size_bytes IS
    'Size of the payload in bytes (UTF-8 bytes for text).';
COMMENT ON COLUMN xray_artifacts.content_type IS
    'MIME type: application/octet-stream for bytes, application/json for JSON values and '
    'text starting with { or [, else text/plain; charset=utf-8.';
COMMENT ON COLUMN xray_artifacts.storage IS
    'Where the payload is: ''local'' (a folder on the collector''s disk), ''s3'' (an S3 '
    'bucket), or ''summary'' (not stored: only size, hash and preview were kept; see '
    'downgraded).';
COMMENT ON COLUMN xray_artifacts.location IS
    'Where the store put the payload: a file path for local, s3://bucket/key for s3. '
    'NULL when storage = ''summary''. Fetch with `xray artifact get <artifact_id>` or '
    'GET /v1/artifacts/<artifact_id> on the collector.';
COMMENT ON COLUMN xray_artifacts.preview IS
    'The beginning of the payload (up to 200 characters) for text and JSON; '
    '"<N bytes of TYPE>" for binary payloads.';
COMMENT ON COLUMN xray_artifacts.downgraded IS
    'true when the payload was not stored (too large, store failed or too slow, collector '
    'under pressure) and only a summary was kept: storage = ''summary'', payload lost.';
COMMENT ON COLUMN xray_artifacts.downgrade_reason IS
    'Why the payload was downgraded (e.g. "store failed: ConnectionError", "collector '
    'under pressure"). NULL unless downgraded.';
COMMENT ON COLUMN xray_artifacts.created_at IS
    'When the collector stored this reference (database clock when that write began).';

-- ---------------------------------------------------------------------------------------
-- Views. Plain views (no materialisation): always current, filters push down to the
-- tables' indexes. Row order is not guaranteed by a view: say ORDER BY.
-- ---------------------------------------------------------------------------------------

CREATE VIEW xray_step_funnel AS
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
       s.duration_ms
FROM xray_steps s
LEFT JOIN xray_runs r ON r.run_id = s.run_id;

COMMENT ON VIEW xray_step_funnel IS
    'A run''s steps as a funnel: how many candidates each step received, kept and dropped, '
    'and why. One row per step. Read a run in order with '
    'WHERE run_id = ... ORDER BY run_id, seq, started_at (served by xray_steps_run_seq_idx).';
COMMENT ON COLUMN xray_step_funnel.run_id IS 'The run (xray_steps.run_id).';
COMMENT ON COLUMN xray_step_funnel.pipeline IS
    'The step''s pipeline, else its run''s (xray_steps.pipeline, xray_runs.pipeline). '
    'NULL: not known yet.';
COMMENT ON COLUMN xray_step_funnel.entity IS
    'What the run is about (xray_runs.entity, from xray.run.entity). NULL: not sent.';
COMMENT ON COLUMN xray_step_funnel.seq IS
    'Position in the run, from 1 (xray_steps.seq). NULL: not sent; such steps sort last.';
COMMENT ON COLUMN xray_step_funnel.step_name IS 'Step name (xray_steps.step_name).';
COMMENT ON COLUMN xray_step_funnel.step_type IS
    'llm, search, filter, rank, transform or other (xray_steps.step_type).';
COMMENT ON COLUMN xray_step_funnel.candidates_in IS
    'Items entering the step (xray_steps.candidates_in). NULL: not sent.';
COMMENT ON COLUMN xray_step_funnel.candidates_out IS
    'Items leaving the step (xray_steps.candidates_out). NULL: not sent.';
COMMENT ON COLUMN xray_step_funnel.drop_ratio IS
    'Fraction dropped, 1 - out/in (xray_steps.drop_ratio). NULL when in is NULL or 0.';
COMMENT ON COLUMN xray_step_funnel.dropped IS
    'Items dropped: candidates_in - candidates_out (bigint). Negative when the step added '
    'items; NULL when either count is NULL.';
COMMENT ON COLUMN xray_step_funnel.why IS 'One-line explanation (xray_steps.why).';
COMMENT ON COLUMN xray_step_funnel.status IS '''ok'' or ''error'' (xray_steps.status).';
COMMENT ON COLUMN xray_step_funnel.error IS
    'Why the step failed (xray_steps.error). NULL unless status = ''error''.';
COMMENT ON COLUMN xray_step_funnel.started_at IS 'Step start time (xray_steps.started_at).';
COMMENT ON COLUMN xray_step_funnel.duration_ms IS
    'Step duration in milliseconds (xray_steps.duration_ms).';

CREATE VIEW xray_reject_reasons AS
SELECT s.run_id,
       COALESCE(s.pipeline, r.pipeline) AS pipeline,
       s.step_name,
       s.step_type,
       s.seq,
       e.reason,
       e.count,
       s.started_at
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

COMMENT ON VIEW xray_reject_reasons IS
    'Reject reasons across all pipelines as rows: one row per step per entry of '
    'why_json->''top_reject_reasons'' whose count is a whole number >= 0. Entries with any '
    'other count (a string, an object, a fraction, a negative number) and steps whose '
    'top_reject_reasons is not an object are left out; the raw value stays in '
    'xray_steps.why_json. A why_json over the inline ceiling was moved to an artifact and '
    'contributes no rows. Example: SELECT reason, sum(count) FROM xray_reject_reasons '
    'WHERE started_at > now() - interval ''7 days'' GROUP BY reason ORDER BY 2 DESC.';
COMMENT ON COLUMN xray_reject_reasons.run_id IS 'The run (xray_steps.run_id).';
COMMENT ON COLUMN xray_reject_reasons.pipeline IS
    'The step''s pipeline, else its run''s. NULL: not known yet.';
COMMENT ON COLUMN xray_reject_reasons.step_name IS 'Step name (xray_steps.step_name).';
COMMENT ON COLUMN xray_reject_reasons.step_type IS 'Step type (xray_steps.step_type).';
COMMENT ON COLUMN xray_reject_reasons.seq IS
    'Position of the step in its run (xray_steps.seq). NULL: not sent.';
COMMENT ON COLUMN xray_reject_reasons.reason IS
    'A key of why_json->''top_reject_reasons'', e.g. category_mismatch.';
COMMENT ON COLUMN xray_reject_reasons.count IS
    'How many candidates the step rejected for this reason (bigint, >= 0). Never NULL.';
COMMENT ON COLUMN xray_reject_reasons.started_at IS
    'Step start time (xray_steps.started_at): filter on it for a time range.';

CREATE VIEW xray_run_summary AS
SELECT r.run_id,
       r.pipeline,
       r.entity,
       r.status,
       r.error,
       r.started_at,
       r.ended_at,
       (EXTRACT(EPOCH FROM (r.ended_at - r.started_at)) * 1000.0)::double precision
                                                                AS duration_ms,
       st.step_count,
       st.error_steps,
       st.max_drop_ratio,
       st.first_step,
       st.last_step,
       st.last_step_status,
       st.last_step_error
FROM xray_runs r
CROSS JOIN LATERAL (
    -- One index scan of the run's steps (xray_steps_run_seq_idx). Aggregates without
    -- GROUP BY always return one row, so runs without steps appear with step_count 0.
    SELECT count(*)                                       AS step_count,
           count(*) FILTER (WHERE s.status = 'error')     AS error_steps,
           max(s.drop_ratio)                              AS max_drop_ratio,
           (array_agg(s.step_name ORDER BY s.seq ASC NULLS LAST, s.started_at ASC,
                      s.span_id ASC))[1]                  AS first_step,
           (array_agg(s.step_name ORDER BY s.seq DESC NULLS FIRST, s.started_at DESC,
                      s.span_id DESC))[1]                 AS last_step,
           (array_agg(s.status ORDER BY s.seq DESC NULLS FIRST, s.started_at DESC,
                      s.span_id DESC))[1]                 AS last_step_status,
           (array_agg(s.error ORDER BY s.seq DESC NULLS FIRST, s.started_at DESC,
                      s.span_id DESC))[1]                 AS last_step_error
    FROM xray_steps s
    WHERE s.run_id = r.run_id
) st;

COMMENT ON VIEW xray_run_summary IS
    'One row per run (xray_runs) with figures over its steps. First and last step follow '
    'the funnel order (seq, then started_at; steps without seq come last). Filter on '
    'run_id, pipeline, entity or started_at first: the step figures are computed per '
    'selected run.';
COMMENT ON COLUMN xray_run_summary.run_id IS 'The run (xray_runs.run_id).';
COMMENT ON COLUMN xray_run_summary.pipeline IS
    'Pipeline name (xray_runs.pipeline). NULL: not known yet.';
COMMENT ON COLUMN xray_run_summary.entity IS
    'What the run is about (xray_runs.entity). NULL: not sent.';
COMMENT ON COLUMN xray_run_summary.status IS
    '''pending'' (run span not arrived), ''ok'' or ''error'' (xray_runs.status).';
COMMENT ON COLUMN xray_run_summary.error IS
    'Why the run failed (xray_runs.error). NULL unless status = ''error''.';
COMMENT ON COLUMN xray_run_summary.started_at IS 'Run start (xray_runs.started_at).';
COMMENT ON COLUMN xray_run_summary.ended_at IS 'Run end (xray_runs.ended_at).';
COMMENT ON COLUMN xray_run_summary.duration_ms IS
    'Run duration in milliseconds: ended_at - started_at (double precision). While '
    'pending, the time spanned by the steps seen so far. NULL when either time is NULL.';
COMMENT ON COLUMN xray_run_summary.step_count IS
    'Number of steps stored for the run (bigint, 0 when none).';
COMMENT ON COLUMN xray_run_summary.error_steps IS
    'Number of its steps with status = ''error'' (bigint).';
COMMENT ON COLUMN xray_run_summary.max_drop_ratio IS
    'Largest drop_ratio among its steps. NULL when no step has one.';
COMMENT ON COLUMN xray_run_summary.first_step IS
    'step_name of its first step in funnel order. NULL when it has no steps.';
COMMENT ON COLUMN xray_run_summary.last_step IS
    'step_name of its last step in funnel order. NULL when it has no steps.';
COMMENT ON COLUMN xray_run_summary.last_step_status IS
    'status of its last step: ''ok'' or ''error''. NULL when it has no steps.';
COMMENT ON COLUMN xray_run_summary.last_step_error IS
    'error of its last step. NULL unless that step failed (or it has no steps).';

-- ---------------------------------------------------------------------------------------
-- xray_analyst: a read-only role. NOLOGIN: an administrator grants it to login roles
-- (GRANT xray_analyst TO alice;). Roles are cluster-wide and several databases may
-- migrate at once, so creation tolerates a role that exists or appears concurrently
-- (a concurrent CREATE ROLE fails with unique_violation once the other one commits,
-- not with duplicate_object). A migrating user without the right to create roles
-- must not stop the collector from starting: it gets a warning, and the grants below
-- are skipped until an administrator creates the role (see docs/schema.md).
-- ---------------------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'xray_analyst') THEN
        BEGIN
            CREATE ROLE xray_analyst NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a migration of another database
            WHEN insufficient_privilege THEN
                RAISE WARNING 'X-Ray: % may not create role xray_analyst; analysts get no '
                              'read-only role. An administrator can create it and grant '
                              'it read access: see docs/schema.md', current_user;
        END;
    END IF;
END $$;

-- Read access to everything in the schema the tables were created in (normally public),
-- now and for tables and views that later migrations (run by the same user) create.
-- No INSERT, UPDATE, DELETE, TRUNCATE or any other write privilege.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'xray_analyst') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO xray_analyst', current_schema());
        GRANT SELECT ON xray_runs, xray_steps, xray_artifacts,
                        xray_step_funnel, xray_reject_reasons, xray_run_summary
            TO xray_analyst;
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I '
                       'GRANT SELECT ON TABLES TO xray_analyst', current_schema());
    END IF;
END $$;
