/**
 * The engine: `run` and `step` closures, the run and step context (AsyncLocalStorage),
 * automatic `seq`, and the transport they report to. Best-effort: X-Ray's own errors are
 * logged and swallowed; the user's errors and return values pass through unchanged.
 */

import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';

import { STEP_TYPES, type StepType } from './conventions.js';
import { warn } from './log.js';

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
export class RunState {
  private seq = 0;
  constructor(readonly runId: string, readonly pipeline: string | undefined,
              readonly entity: string | undefined, readonly startTime: number) {}

  nextSeq(): number {
    this.seq += 1;
    return this.seq;
  }
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

interface Frame {
  run: RunState;
  active: Active;
  stepId: string | undefined;
  /** Set once the user's function was called: from then on errors are the user's. */
  entered?: boolean;
}

const NO_STEP: Step = Object.freeze({ runId: '', seq: 0, record: () => {} });

/** Runs and steps, reported to one transport. `xray` is the shared instance. */
export class XRay {
  private transport: Transport | undefined;
  private readonly storage = new AsyncLocalStorage<Frame>();
  private exitHook: (() => void) | undefined;

  /** Use `transport` from now on; flush it when the process is about to exit. */
  configure(options: { transport: Transport; flushOnExitMs?: number }): void {
    this.transport = options.transport;
    const limit = options.flushOnExitMs ?? 2000;
    if (this.exitHook === undefined) {
      let done = false;
      this.exitHook = () => {
        if (done || this.transport === undefined) return;
        done = true;
        void this.shutdown(limit);
      };
      process.once('beforeExit', this.exitHook);
    }
  }

  /** Run `fn` as one run of `pipeline`; its steps are numbered from 1. */
  run<T>(pipeline: string, options: RunOptions, fn: () => T): T {
    const transport = this.transport;
    if (transport === undefined) return fn();
    let frame: Frame;
    try {
      const run = new RunState(options.runId ?? randomUUID(), pipeline, options.entity,
                               Date.now());
      frame = { run, active: transport.startRun(run), stepId: undefined };
    } catch (error) {
      warn('run', `run not recorded: ${String(error)}`);
      return fn();
    }
    return this.storage.run(frame, inside, frame, fn, undefined);
  }

  /** Run `fn(step)` as a step of type `type` in the current run (or a run of its own). */
  step<T>(type: StepType, options: StepOptions, fn: (step: Step) => T): T {
    const transport = this.transport;
    if (transport === undefined) return fn(NO_STEP);
    let frame: Frame;
    let step: Step;
    try {
      const parent = this.storage.getStore();
      const run = parent?.run ?? new RunState(randomUUID(), undefined, undefined, Date.now());
      const seq = run.nextSeq();
      const info: StepInfo = {
        run, stepId: String(seq), seq, name: options.name || type,
        type: STEP_TYPES.includes(type) ? type : 'other',
        parentStepId: parent?.stepId, startTime: Date.now(), input: options.input,
      };
      const active = transport.startStep(info, parent?.active);
      frame = { run, active, stepId: info.stepId };
      step = Object.freeze({
        runId: run.runId, seq,
        record: (facts: StepFacts) => {
          try {
            active.record(facts);
          } catch (error) {
            warn('record', `step.record failed: ${String(error)}`);
          }
        },
      });
    } catch (error) {
      warn('step', `step not recorded: ${String(error)}`);
      return fn(NO_STEP);
    }
    // Few frames between the user's function and its caller: stack traces stay useful.
    return this.storage.run(frame, inside, frame, fn, step);
  }

  /** The current step's handle, or a no-op one outside any step. */
  currentStep(): Step | undefined {
    const frame = this.storage.getStore();
    if (frame?.stepId === undefined) return undefined;
    const active = frame.active;
    return { runId: frame.run.runId, seq: Number(frame.stepId),
             record: (facts) => { try { active.record(facts); } catch { /* best-effort */ } } };
  }

  /** Send what is buffered, waiting at most `timeoutMs`. Never rejects. */
  async flush(timeoutMs = 2000): Promise<void> {
    try {
      await this.transport?.flush(timeoutMs);
    } catch (error) {
      warn('flush', `flush failed: ${String(error)}`);
    }
  }

  /** Flush and stop the transport. Never rejects. */
  async shutdown(timeoutMs = 2000): Promise<void> {
    try {
      await this.transport?.shutdown(timeoutMs);
    } catch (error) {
      warn('shutdown', `shutdown failed: ${String(error)}`);
    }
  }

  /** The transport's counters (sent, dropped, ...). */
  stats(): Record<string, number> {
    try {
      return this.transport?.stats() ?? {};
    } catch {
      return {};
    }
  }
}

/** Call `fn(arg)` inside `frame`'s context; a transport failing to set it is skipped. */
function inside<A, T>(frame: Frame, fn: (arg: A) => T, arg: A): T {
  try {
    return frame.active.within(invoke, frame, fn, arg);
  } catch (error) {
    if (frame.entered) throw error; // the user's error, re-thrown unchanged
    warn('context', `context not set: ${String(error)}`);
    return invoke(frame, fn, arg);
  }
}

/** Call `fn(arg)`; end the frame when it returns, throws, resolves or rejects; pass it on. */
function invoke<A, T>(frame: Frame, fn: (arg: A) => T, arg: A): T {
  frame.entered = true;
  const active = frame.active;
  let result: T;
  try {
    result = fn(arg);
  } catch (error) {
    end(active, error, true);
    throw error;
  }
  if (isThenable(result)) {
    return result.then(
      (value: unknown) => {
        end(active, undefined, false);
        return value;
      },
      (error: unknown) => {
        end(active, error, true);
        throw error;
      },
    ) as T;
  }
  end(active, undefined, false);
  return result;
}

function end(active: Active, error: unknown, threw: boolean): void {
  try {
    active.end(error, threw);
  } catch (problem) {
    warn('end', `step end not recorded: ${String(problem)}`);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null
    && typeof (value as { then?: unknown }).then === 'function';
}
