-- X-Ray schema v1: runs, steps and artifact references.
-- Applied once, in a transaction, by `xray migrate` (collector_service.migrate).
-- A released migration file is never edited: add a new numbered file instead.

CREATE TABLE xray_runs (
    run_id           text        PRIMARY KEY,
    pipeline         text,
    entity           text,
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'ok', 'error')),
    error            text,
    started_at       timestamptz,
    ended_at         timestamptz,
    trace_id         text        NOT NULL,
    span_id          text,
    service_name     text,
    attributes       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ingest_warnings  jsonb,
    received_at      timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX xray_runs_pipeline_started_idx ON xray_runs (pipeline, started_at DESC);
CREATE INDEX xray_runs_entity_idx ON xray_runs (entity);
CREATE INDEX xray_runs_started_idx ON xray_runs (started_at DESC);
-- Runs whose run span has not arrived (yet, or ever).
CREATE INDEX xray_runs_pending_idx ON xray_runs (updated_at) WHERE status = 'pending';

CREATE TABLE xray_steps (
    run_id           text             NOT NULL,
    seq              integer          CHECK (seq >= 1),
    step_name        text             NOT NULL,
    step_type        text             NOT NULL
                                      CHECK (step_type IN ('llm', 'search', 'filter', 'rank',
                                                           'transform', 'other')),
    pipeline         text,
    candidates_in    bigint           CHECK (candidates_in >= 0),
    candidates_out   bigint           CHECK (candidates_out >= 0),
    drop_ratio       double precision GENERATED ALWAYS AS (
                         CASE WHEN candidates_in > 0
                              THEN 1.0 - candidates_out::double precision / candidates_in
                         END) STORED,
    why              text,
    why_json         jsonb            CHECK (why_json IS NULL OR jsonb_typeof(why_json) = 'object'),
    input            jsonb,
    output           jsonb,
    metrics          jsonb            NOT NULL DEFAULT '{}'::jsonb
                                      CHECK (jsonb_typeof(metrics) = 'object'),
    status           text             NOT NULL CHECK (status IN ('ok', 'error')),
    error            text,
    started_at       timestamptz      NOT NULL,
    ended_at         timestamptz      NOT NULL,
    duration_ms      double precision GENERATED ALWAYS AS (
                         EXTRACT(EPOCH FROM (ended_at - started_at)) * 1000.0) STORED,
    trace_id         text             NOT NULL,
    span_id          text             NOT NULL,
    parent_span_id   text,
    attributes       jsonb            NOT NULL DEFAULT '{}'::jsonb
                                      CHECK (jsonb_typeof(attributes) = 'object'),
    ingest_warnings  jsonb            CHECK (jsonb_typeof(ingest_warnings) = 'array'),
    received_at      timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT xray_steps_span_key UNIQUE (trace_id, span_id)
);

-- The seed query: WHERE step_type = ... AND drop_ratio > ... ORDER BY drop_ratio DESC.
CREATE INDEX xray_steps_type_drop_ratio_idx
    ON xray_steps (step_type, drop_ratio DESC NULLS LAST);
-- A run's steps in order (`xray show RUN`, the funnel view, backfilling the pipeline).
CREATE INDEX xray_steps_run_seq_idx ON xray_steps (run_id, seq);
CREATE INDEX xray_steps_pipeline_started_idx ON xray_steps (pipeline, started_at DESC);
CREATE INDEX xray_steps_started_brin ON xray_steps USING brin (started_at);
-- Failed steps, newest first.
CREATE INDEX xray_steps_errors_idx ON xray_steps (started_at DESC) WHERE status = 'error';

CREATE TABLE xray_artifacts (
    artifact_id      text        NOT NULL,
    trace_id         text        NOT NULL,
    span_id          text        NOT NULL,
    run_id           text        NOT NULL,
    attribute        text        NOT NULL,
    size_bytes       bigint      NOT NULL CHECK (size_bytes >= 0),
    content_type     text        NOT NULL,
    storage          text        NOT NULL CHECK (storage IN ('local', 's3', 'summary')),
    location         text,
    preview          text,
    downgraded       boolean     NOT NULL DEFAULT false,
    downgrade_reason text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trace_id, span_id, attribute)
);

CREATE INDEX xray_artifacts_artifact_idx ON xray_artifacts (artifact_id);
CREATE INDEX xray_artifacts_run_idx ON xray_artifacts (run_id);
