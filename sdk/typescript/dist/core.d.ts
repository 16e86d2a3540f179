/**
 * The engine: `run` and `step` closures, the run and step context (AsyncLocalStorage),
 * automatic `seq`, and the transport they report to. Best-effort: X-Ray's own errors are
 * logged and swallowed; the user's errors and return values pass through unchanged.
 */
import { type StepType } from './conventions.js';
/** What a step decided, as passed to `step.record()`. Every field is optional. */
export interface StepFacts {
    candidatesIn?: number;
    candidatesOut?: number;
    /** One line, human-readable: "Dropped 92% of candidates below relevance 0.7". */
    why?: string;
    /** A JSON object, e.g. `{top_reject_reasons: {category_mismatch: 4720}}`. */
    whyJson?: Record<string, unknown>;
    /** Small JSON values. */
    input?: unknown;
    output?: unknown;
    /** Finite numbers by name. */
    metrics?: Record<string, number>;
    /** Bulky evidence by name (text or bytes): always stored as an artifact. */
    artifacts?: Record<string, string | Uint8Array>;
}
/** A run in progress. `nextSeq()` numbers its steps from 1. */
export declare class RunState {
    readonly runId: string;
    readonly pipeline: string | undefined;
    readonly entity: string | undefined;
    readonly startTime: number;
    private seq;
    constructor(runId: string, pipeline: string | undefined, entity: string | undefined, startTime: number);
    nextSeq(): number;
}
/** What a transport is told of a step when it starts. */
export interface StepInfo {
    run: RunState;
    stepId: string;
    seq: number;
    name: string;
    type: StepType;
    parentStepId: string | undefined;
    startTime: number;
    input: unknown;
}
/** A run or step in flight, as a transport tracks it. */
export interface Active {
    /** Merge `facts` into what the step decided (later values win). */
    record(facts: StepFacts): void;
    /** The run or step finished; `error` is what it threw, if anything. */
    end(error?: unknown, threw?: boolean): void;
    /** Call `fn(...args)` with this run or step as the current one (OpenTelemetry context). */
    within<A extends unknown[], T>(fn: (...args: A) => T, ...args: A): T;
}
/** Where runs and steps go: OpenTelemetry spans, or events for `POST /events`. */
export interface Transport {
    startRun(run: RunState): Active;
    /** `parent` is the enclosing step or run; undefined for a step outside any run. */
    startStep(step: StepInfo, parent: Active | undefined): Active;
    /** Send what is buffered; resolves within `timeoutMs`, never rejects. */
    flush(timeoutMs?: number): Promise<void>;
    /** Flush, then stop; idempotent. */
    shutdown(timeoutMs?: number): Promise<void>;
    /** Counters: what was sent, what was dropped and why. */
    stats(): Record<string, number>;
}
/** The step handle passed to a step's function. */
export interface Step {
    readonly runId: string;
    readonly seq: number;
    /** Record what the step decided; never throws. */
    record(facts: StepFacts): void;
}
export interface RunOptions {
    entity?: string;
    /** Defaults to a random UUID. */
    runId?: string;
}
export interface StepOptions {
    /** Defaults to the step type. */
    name?: string;
    input?: unknown;
}
/** Runs and steps, reported to one transport. `xray` is the shared instance. */
export declare class XRay {
    private transport;
    private readonly storage;
    private exitHook;
    /** Use `transport` from now on; flush it when the process is about to exit. */
    configure(options: {
        transport: Transport;
        flushOnExitMs?: number;
    }): void;
    /** Run `fn` as one run of `pipeline`; its steps are numbered from 1. */
    run<T>(pipeline: string, options: RunOptions, fn: () => T): T;
    /** Run `fn(step)` as a step of type `type` in the current run (or a run of its own). */
    step<T>(type: StepType, options: StepOptions, fn: (step: Step) => T): T;
    /** The current step's handle, or a no-op one outside any step. */
    currentStep(): Step | undefined;
    /** Send what is buffered, waiting at most `timeoutMs`. Never rejects. */
    flush(timeoutMs?: number): Promise<void>;
    /** Flush and stop the transport. Never rejects. */
    shutdown(timeoutMs?: number): Promise<void>;
    /** The transport's counters (sent, dropped, ...). */
    stats(): Record<string, number>;
}
