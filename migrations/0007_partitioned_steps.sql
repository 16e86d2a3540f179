-- xray_steps partitioned by time: one partition per UTC day of started_at, plus a DEFAULT
-- partition for rows outside the days created. Old days are dropped whole by
-- `xray retention` (seconds, whatever their row count); collectors create the days ahead
-- (collector_service/store/partitions.py) with xray_create_step_partitions() below.
--
-- Keys that also let the three tables be distributed by run_id on Citus: a unique key of
-- a partitioned table must contain the partition key (started_at), and one of a Citus
-- distributed table its distribution column (run_id). So:
--   xray_steps      UNIQUE (run_id, trace_id, span_id, started_at)
--   xray_artifacts  PRIMARY KEY (run_id, trace_id, span_id, attribute)
--   xray_runs       PRIMARY KEY (run_id)  (unchanged)
-- The collector still stores one row per (run_id, trace_id, span_id): it matches on that
-- triple itself, under the lock of the run's xray_runs row (see ingest.sql).
--
-- An existing database is moved in this one transaction: the rows are copied into the
-- new table (time and disk like a COPY of the table), which holds an exclusive lock
-- meanwhile. The views over xray_steps are dropped and recreated with the definitions
-- of 0002 and 0006; privileges on the table and the views are carried over.

-- Privileges granted on the old table and views, to grant again on the new ones.
CREATE TEMP TABLE xray_0007_grants ON COMMIT DROP AS
SELECT c.relname, a.grantee, a.privilege_type, a.is_grantable
FROM pg_class c
CROSS JOIN LATERAL aclexplode(c.relacl) a
WHERE c.relnamespace = current_schema()::regnamespace
  AND c.relname IN ('xray_steps', 'xray_step_funnel', 'xray_reject_reasons',
                    'xray_run_summary')
  AND a.grantee <> c.relowner;

-- Comments on the old table's columns (0002, 0004) and on the views (0002, 0006), to
-- copy onto the new ones.
CREATE TEMP TABLE xray_0007_comments ON COMMIT DROP AS
SELECT c.relname, a.attname, d.description
FROM pg_description d
JOIN pg_class c ON c.oid = d.objoid
LEFT JOIN pg_attribute a ON a.attrelid = d.objoid AND a.attnum = d.objsubid
WHERE d.classoid = 'pg_class'::regclass
  AND c.relnamespace = current_schema()::regnamespace
  AND (c.relname IN ('xray_step_funnel', 'xray_reject_reasons', 'xray_run_summary')
       OR (c.relname = 'xray_steps' AND d.objsubid > 0));

DROP VIEW xray_run_summary;
DROP VIEW xray_reject_reasons;
DROP VIEW xray_step_funnel;

ALTER TABLE xray_steps RENAME TO xray_steps_unpartitioned;

-- The columns, defaults, generated columns and CHECKs of 0001 as changed by 0004, in the
-- same order and with the same constraint names.
CREATE TABLE xray_steps (
    run_id           text             NOT NULL,
    seq              integer          CONSTRAINT xray_steps_seq_check CHECK (seq >= 1),
    step_name        text             NOT NULL,
    step_type        text             NOT NULL
                                      CONSTRAINT xray_steps_step_type_check
                                      CHECK (step_type IN ('llm', 'search', 'filter', 'rank',
                                                           'transform', 'other')),
    pipeline         text,
    candidates_in    bigint           CONSTRAINT xray_steps_candidates_in_check
                                      CHECK (candidates_in >= 0),
    candidates_out   bigint           CONSTRAINT xray_steps_candidates_out_check
                                      CHECK (candidates_out >= 0),
    drop_ratio       double precision GENERATED ALWAYS AS (
                         CASE WHEN candidates_in > 0
                              THEN 1.0 - candidates_out::double precision / candidates_in
                         END) STORED,
    why              text,
    why_json         jsonb            CONSTRAINT xray_steps_why_json_check
                                      CHECK (why_json IS NULL
                                             OR jsonb_typeof(why_json) = 'object'),
    input            jsonb,
    output           jsonb,
    metrics          jsonb            NOT NULL DEFAULT '{}'::jsonb
                                      CONSTRAINT xray_steps_metrics_check
                                      CHECK (jsonb_typeof(metrics) = 'object'),
    status           text             NOT NULL
                                      CONSTRAINT xray_steps_status_check
                                      CHECK (status IN ('running', 'ok', 'error')),
    error            text,
    started_at       timestamptz      NOT NULL,
    ended_at         timestamptz,
    duration_ms      double precision GENERATED ALWAYS AS (
                         EXTRACT(EPOCH FROM (ended_at - started_at)) * 1000.0) STORED,
    trace_id         text             NOT NULL,
    span_id          text             NOT NULL,
    parent_span_id   text,
    attributes       jsonb            NOT NULL DEFAULT '{}'::jsonb
                                      CONSTRAINT xray_steps_attributes_check
                                      CHECK (jsonb_typeof(attributes) = 'object'),
    ingest_warnings  jsonb            CONSTRAINT xray_steps_ingest_warnings_check
                                      CHECK (jsonb_typeof(ingest_warnings) = 'array'),
    received_at      timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT xray_steps_ended_check CHECK ((ended_at IS NULL) = (status = 'running'))
) PARTITION BY RANGE (started_at);

CREATE TABLE xray_steps_default PARTITION OF xray_steps DEFAULT;

-- Creates the day partitions from first_day to last_day (UTC days, both included) that do
-- not exist yet, named xray_steps_pYYYYMMDD, and returns their names. Rows of those days
-- waiting in xray_steps_default move into them (PostgreSQL refuses a new partition whose
-- rows sit in the DEFAULT one). Collectors starting together are serialised by an advisory
-- lock; creating a partition locks xray_steps briefly, so callers set lock_timeout.
CREATE FUNCTION xray_create_step_partitions(first_day date, last_day date)
RETURNS SETOF text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    day          date;
    part_name    text;
    low          timestamptz;
    high         timestamptz;
    moving       bigint;
    column_list  text;
BEGIN
    PERFORM pg_advisory_xact_lock(5787463490699001);  -- fixed and arbitrary: 'XRAY' parts
    FOR day IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        part_name := 'xray_steps_p' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(quote_ident(part_name)) IS NOT NULL;
        low := day::timestamp AT TIME ZONE 'UTC';
        high := (day + 1)::timestamp AT TIME ZONE 'UTC';
        SELECT count(*) INTO moving FROM xray_steps_default
        WHERE started_at >= low AND started_at < high;
        IF moving > 0 THEN
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO column_list
            FROM pg_attribute
            WHERE attrelid = 'xray_steps'::regclass AND attnum > 0 AND NOT attisdropped
              AND attgenerated = '';
            EXECUTE format('CREATE TEMP TABLE xray_steps_moving ON COMMIT DROP AS '
                           'SELECT * FROM xray_steps_default '
                           'WHERE started_at >= %L AND started_at < %L', low, high);
            DELETE FROM xray_steps_default WHERE started_at >= low AND started_at < high;
        END IF;
        EXECUTE format('CREATE TABLE %I PARTITION OF xray_steps FOR VALUES FROM (%L) TO (%L)',
                       part_name, low, high);
        IF moving > 0 THEN
            EXECUTE format('INSERT INTO xray_steps (%s) SELECT %s FROM xray_steps_moving',
                           column_list, column_list);
            DROP TABLE xray_steps_moving;
        END IF;
        RETURN NEXT part_name;
    END LOOP;
END
$$;

COMMENT ON FUNCTION xray_create_step_partitions(date, date) IS
    'Creates the missing day partitions of xray_steps (xray_steps_pYYYYMMDD, one per UTC '
    'day from first_day to last_day), moving their rows out of xray_steps_default; returns '
    'the names created. Collectors call it at start and hourly for yesterday to 7 days ahead.';

-- A partition for every day the existing rows use, and for yesterday to 7 days ahead.
DO $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    day   date;
BEGIN
    FOR day IN SELECT DISTINCT (started_at AT TIME ZONE 'UTC')::date
               FROM xray_steps_unpartitioned LOOP
        PERFORM xray_create_step_partitions(day, day);
    END LOOP;
    PERFORM xray_create_step_partitions(today - 1, today + 7);
END $$;

INSERT INTO xray_steps (
    run_id, seq, step_name, step_type, pipeline, candidates_in, candidates_out, why,
    why_json, input, output, metrics, status, error, started_at, ended_at, trace_id,
    span_id, parent_span_id, attributes, ingest_warnings, received_at)
SELECT run_id, seq, step_name, step_type, pipeline, candidates_in, candidates_out, why,
       why_json, input, output, metrics, status, error, started_at, ended_at, trace_id,
       span_id, parent_span_id, attributes, ingest_warnings, received_at
FROM xray_steps_unpartitioned;

DROP TABLE xray_steps_unpartitioned;

-- Keys and indexes, built once over the copied rows. Every index of 0001 and 0004 with its
-- name and definition; the unique key gains run_id (Citus) and started_at (partitioning).
ALTER TABLE xray_steps
    ADD CONSTRAINT xray_steps_span_key UNIQUE (run_id, trace_id, span_id, started_at);
CREATE INDEX xray_steps_type_drop_ratio_idx
    ON xray_steps (step_type, drop_ratio DESC NULLS LAST);
CREATE INDEX xray_steps_run_seq_idx ON xray_steps (run_id, seq);
CREATE INDEX xray_steps_pipeline_started_idx ON xray_steps (pipeline, started_at DESC);
CREATE INDEX xray_steps_started_brin ON xray_steps USING brin (started_at);
CREATE INDEX xray_steps_errors_idx ON xray_steps (started_at DESC) WHERE status = 'error';
CREATE INDEX xray_steps_running_idx ON xray_steps (started_at) WHERE status = 'running';

ALTER TABLE xray_artifacts DROP CONSTRAINT xray_artifacts_pkey;
ALTER TABLE xray_artifacts ADD PRIMARY KEY (run_id, trace_id, span_id, attribute);
-- The primary key now leads with run_id: it serves what this index served.
DROP INDEX xray_artifacts_run_idx;

-- Comments: the table's and the key's; the columns keep theirs (copied below).
COMMENT ON TABLE xray_steps IS
    'One row per pipeline step (a span with attribute xray.step.type): a discrete decision '
    'unit such as an LLM call, a search, a filter or a ranking. One row per (run_id, '
    'trace_id, span_id): a replayed export changes nothing. Partitioned by started_at, one '
    'partition per UTC day (xray_steps_pYYYYMMDD) and xray_steps_default for other times: '
    'filter on started_at to read only the days you need. A run''s steps in order: '
    'ORDER BY seq, started_at (see view xray_step_funnel).';
COMMENT ON CONSTRAINT xray_artifacts_pkey ON xray_artifacts IS
    'One reference per step attribute. Leads with run_id so the table can be distributed '
    'by run_id (Citus) beside xray_runs and xray_steps.';
COMMENT ON TABLE xray_artifacts IS
    'One row per artifact reference: a bulky payload of one step (attribute '
    'xray.artifact.<name>, or any value over the inline ceiling), stored outside Postgres '
    'and referenced from the step row instead of the payload. Key: '
    '(run_id, trace_id, span_id, attribute). The same payload referenced twice is stored '
    'once (artifact_id is its content hash) but has one row per reference.';

-- The views, exactly as 0006 (xray_step_funnel, xray_reject_reasons) and 0002
-- (xray_run_summary) left them.
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
       s.duration_ms,
       (SELECT count(*)
        FROM xray_steps o
        WHERE o.run_id = s.run_id
          AND (o.seq IS NULL, COALESCE(o.seq, 0), o.started_at, o.span_id)
              <= (s.seq IS NULL, COALESCE(s.seq, 0), s.started_at, s.span_id)) AS position
FROM xray_steps s
LEFT JOIN xray_runs r ON r.run_id = s.run_id;

CREATE VIEW xray_reject_reasons AS
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

-- The comments and privileges saved above, on the new table and views.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT relname, attname, description FROM xray_0007_comments LOOP
        IF c.attname IS NULL THEN
            EXECUTE format('COMMENT ON VIEW %I IS %L', c.relname, c.description);
        ELSE
            EXECUTE format('COMMENT ON COLUMN %I.%I IS %L', c.relname, c.attname,
                           c.description);
        END IF;
    END LOOP;
    FOR c IN SELECT relname, grantee, privilege_type, is_grantable FROM xray_0007_grants LOOP
        EXECUTE format('GRANT %s ON %I TO %s%s', c.privilege_type, c.relname,
                       CASE WHEN c.grantee = 0 THEN 'PUBLIC' ELSE c.grantee::regrole::text END,
                       CASE WHEN c.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END $$;

COMMENT ON COLUMN xray_steps.span_id IS
    'OpenTelemetry span id of the step span (16 lowercase hex). With run_id and trace_id it '
    'identifies the step; xray_artifacts rows of this step carry the same triple.';
