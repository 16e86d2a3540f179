/**
 * The X-Ray attribute contract (v1), as in `xray_otel/conventions.py`: the names an
 * OpenTelemetry span carries so the collector stores it as a run or a step.
 */
export declare const RUN_ID = "xray.run.id";
export declare const RUN_PIPELINE = "xray.run.pipeline";
export declare const RUN_ENTITY = "xray.run.entity";
export declare const STEP_TYPE = "xray.step.type";
export declare const STEP_NAME = "xray.step.name";
export declare const STEP_SEQ = "xray.step.seq";
export declare const STEP_CANDIDATES_IN = "xray.step.candidates_in";
export declare const STEP_CANDIDATES_OUT = "xray.step.candidates_out";
export declare const STEP_WHY = "xray.step.why";
export declare const STEP_WHY_JSON = "xray.step.why_json";
export declare const STEP_INPUT = "xray.step.input";
export declare const STEP_OUTPUT = "xray.step.output";
export declare const STEP_METRIC_PREFIX = "xray.step.metric.";
export declare const ARTIFACT_PREFIX = "xray.artifact.";
export declare const SDK_TRUNCATED = "xray.sdk.truncated";
/** The step types the collector knows; anything else is stored as `other`. */
export declare const STEP_TYPES: readonly ["llm", "search", "filter", "rank", "transform", "other"];
export type StepType = (typeof STEP_TYPES)[number];
