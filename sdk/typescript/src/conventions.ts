/**
 * The X-Ray attribute contract (v1), as in `xray_otel/conventions.py`: the names an
 * OpenTelemetry span carries so the collector stores it as a run or a step.
 */

export const RUN_ID = 'xray.run.id';
export const RUN_PIPELINE = 'xray.run.pipeline';
export const RUN_ENTITY = 'xray.run.entity';
export const STEP_TYPE = 'xray.step.type';
export const STEP_NAME = 'xray.step.name';
export const STEP_SEQ = 'xray.step.seq';
export const STEP_CANDIDATES_IN = 'xray.step.candidates_in';
export const STEP_CANDIDATES_OUT = 'xray.step.candidates_out';
export const STEP_WHY = 'xray.step.why';
export const STEP_WHY_JSON = 'xray.step.why_json';
export const STEP_INPUT = 'xray.step.input';
export const STEP_OUTPUT = 'xray.step.output';
export const STEP_METRIC_PREFIX = 'xray.step.metric.';
export const ARTIFACT_PREFIX = 'xray.artifact.';
export const SDK_TRUNCATED = 'xray.sdk.truncated';

/** The step types the collector knows; anything else is stored as `other`. */
export const STEP_TYPES = ['llm', 'search', 'filter', 'rank', 'transform', 'other'] as const;
export type StepType = (typeof STEP_TYPES)[number];
