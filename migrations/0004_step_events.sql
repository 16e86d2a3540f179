-- Producers of X-Ray events (POST /events, proto/xray/v1/events.proto) send a step's
-- start and its end separately: a step whose end has not arrived is stored as
-- 'running', with no end time, and completed when its end arrives. A run whose start
-- has arrived and whose end has not is 'running' too.

ALTER TABLE xray_steps DROP CONSTRAINT xray_steps_status_check;
ALTER TABLE xray_steps ADD CONSTRAINT xray_steps_status_check
    CHECK (status IN ('running', 'ok', 'error'));
ALTER TABLE xray_steps ALTER COLUMN ended_at DROP NOT NULL;
ALTER TABLE xray_steps ADD CONSTRAINT xray_steps_ended_check
    CHECK ((ended_at IS NULL) = (status = 'running'));

ALTER TABLE xray_runs DROP CONSTRAINT xray_runs_status_check;
ALTER TABLE xray_runs ADD CONSTRAINT xray_runs_status_check
    CHECK (status IN ('pending', 'running', 'ok', 'error'));

-- Steps still running, oldest first: the ones that may never end.
CREATE INDEX xray_steps_running_idx ON xray_steps (started_at) WHERE status = 'running';

COMMENT ON COLUMN xray_steps.status IS
    '''ok'' or ''error'', from the step span''s OpenTelemetry status or the step_end event; '
    '''running'' while only the step_start event has arrived.';
COMMENT ON COLUMN xray_steps.ended_at IS
    'Span end time, never before started_at (the collector corrects that, with an ingest '
    'warning). NULL exactly while status = ''running''.';
COMMENT ON COLUMN xray_steps.duration_ms IS
    'Derived: ended_at - started_at in milliseconds (double precision, >= 0); NULL while '
    'the step is running.';
COMMENT ON COLUMN xray_runs.status IS
    '''pending'' until the run span (or run_end event) arrives (the run may still be going, '
    'or its end was lost); ''running'' when a run_start event has arrived and its run_end '
    'has not; then ''ok'' or ''error''.';
COMMENT ON COLUMN xray_runs.span_id IS
    'OpenTelemetry span id of the run span (16 lowercase hex; for events, derived from the '
    'run id). NULL while the run span or run_end event has not arrived (status = '
    '''pending'' or ''running'').';
