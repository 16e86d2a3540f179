/**
 * The engine: `run` and `step` closures, the run and step context (AsyncLocalStorage),
 * automatic `seq`, and the transport they report to. Best-effort: X-Ray's own errors are
 * logged and swallowed; the user's errors and return values pass through unchanged.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { STEP_TYPES } from './conventions.js';
import { warn } from './log.js';
/** A run in progress. `nextSeq()` numbers its steps from 1. */
export class RunState {
    runId;
    pipeline;
    entity;
    startTime;
    seq = 0;
    constructor(runId, pipeline, entity, startTime) {
        this.runId = runId;
        this.pipeline = pipeline;
        this.entity = entity;
        this.startTime = startTime;
    }
    nextSeq() {
        this.seq += 1;
        return this.seq;
    }
}
const NO_STEP = Object.freeze({ runId: '', seq: 0, record: () => { } });
/** Runs and steps, reported to one transport. `xray` is the shared instance. */
export class XRay {
    transport;
    storage = new AsyncLocalStorage();
    exitHook;
    /** Use `transport` from now on; flush it when the process is about to exit. */
    configure(options) {
        this.transport = options.transport;
        const limit = options.flushOnExitMs ?? 2000;
        if (this.exitHook === undefined) {
            let done = false;
            this.exitHook = () => {
                if (done || this.transport === undefined)
                    return;
                done = true;
                void this.shutdown(limit);
            };
            process.once('beforeExit', this.exitHook);
        }
    }
    /** Run `fn` as one run of `pipeline`; its steps are numbered from 1. */
    run(pipeline, options, fn) {
        const transport = this.transport;
        if (transport === undefined)
            return fn();
        let frame;
        try {
            const run = new RunState(options.runId ?? randomUUID(), pipeline, options.entity, Date.now());
            frame = { run, active: transport.startRun(run), stepId: undefined };
        }
        catch (error) {
            warn('run', `run not recorded: ${String(error)}`);
            return fn();
        }
        return this.storage.run(frame, inside, frame, fn, undefined);
    }
    /** Run `fn(step)` as a step of type `type` in the current run (or a run of its own). */
    step(type, options, fn) {
        const transport = this.transport;
        if (transport === undefined)
            return fn(NO_STEP);
        let frame;
        let step;
        try {
            const parent = this.storage.getStore();
            const run = parent?.run ?? new RunState(randomUUID(), undefined, undefined, Date.now());
            const seq = run.nextSeq();
            const info = {
                run, stepId: String(seq), seq, name: options.name || type,
                type: STEP_TYPES.includes(type) ? type : 'other',
                parentStepId: parent?.stepId, startTime: Date.now(), input: options.input,
            };
            const active = transport.startStep(info, parent?.active);
            frame = { run, active, stepId: info.stepId };
            step = Object.freeze({
                runId: run.runId, seq,
                record: (facts) => {
                    try {
                        active.record(facts);
                    }
                    catch (error) {
                        warn('record', `step.record failed: ${String(error)}`);
                    }
                },
            });
        }
        catch (error) {
            warn('step', `step not recorded: ${String(error)}`);
            return fn(NO_STEP);
        }
        // Few frames between the user's function and its caller: stack traces stay useful.
        return this.storage.run(frame, inside, frame, fn, step);
    }
    /** The current step's handle, or a no-op one outside any step. */
    currentStep() {
        const frame = this.storage.getStore();
        if (frame?.stepId === undefined)
            return undefined;
        const active = frame.active;
        return { runId: frame.run.runId, seq: Number(frame.stepId),
            record: (facts) => { try {
                active.record(facts);
            }
            catch { /* best-effort */ } } };
    }
    /** Send what is buffered, waiting at most `timeoutMs`. Never rejects. */
    async flush(timeoutMs = 2000) {
        try {
            await this.transport?.flush(timeoutMs);
        }
        catch (error) {
            warn('flush', `flush failed: ${String(error)}`);
        }
    }
    /** Flush and stop the transport. Never rejects. */
    async shutdown(timeoutMs = 2000) {
        try {
            await this.transport?.shutdown(timeoutMs);
        }
        catch (error) {
            warn('shutdown', `shutdown failed: ${String(error)}`);
        }
    }
    /** The transport's counters (sent, dropped, ...). */
    stats() {
        try {
            return this.transport?.stats() ?? {};
        }
        catch {
            return {};
        }
    }
}
/** Call `fn(arg)` inside `frame`'s context; a transport failing to set it is skipped. */
function inside(frame, fn, arg) {
    try {
        return frame.active.within(invoke, frame, fn, arg);
    }
    catch (error) {
        if (frame.entered)
            throw error; // the user's error, re-thrown unchanged
        warn('context', `context not set: ${String(error)}`);
        return invoke(frame, fn, arg);
    }
}
/** Call `fn(arg)`; end the frame when it returns, throws, resolves or rejects; pass it on. */
function invoke(frame, fn, arg) {
    frame.entered = true;
    const active = frame.active;
    let result;
    try {
        result = fn(arg);
    }
    catch (error) {
        end(active, error, true);
        throw error;
    }
    if (isThenable(result)) {
        return result.then((value) => {
            end(active, undefined, false);
            return value;
        }, (error) => {
            end(active, error, true);
            throw error;
        });
    }
    end(active, undefined, false);
    return result;
}
function end(active, error, threw) {
    try {
        active.end(error, threw);
    }
    catch (problem) {
        warn('end', `step end not recorded: ${String(problem)}`);
    }
}
function isThenable(value) {
    return typeof value === 'object' && value !== null
        && typeof value.then === 'function';
}
