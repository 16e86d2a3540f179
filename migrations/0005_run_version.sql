-- The producer's pipeline version on each run: `xray.run.version` on the run span, else the
-- resource attribute `service.version`. Funnel diffs compare the runs of two versions.

ALTER TABLE xray_runs ADD COLUMN version text;

CREATE INDEX xray_runs_pipeline_version_idx ON xray_runs (pipeline, version, started_at DESC);

COMMENT ON COLUMN xray_runs.version IS
    'The pipeline''s version: xray.run.version on the run span, else the resource attribute '
    'service.version. NULL while pending or when neither is sent.';
