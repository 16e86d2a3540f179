/**
 * The OpenTelemetry transport, for teams already on OpenTelemetry JS: runs and steps
 * become spans with the X-Ray attribute contract, exported by the application's own
 * tracer provider (OTLP to the collector). `XRaySpanProcessor` stamps run id and `seq`
 * on step spans the application creates itself inside an `xray.run`, like the Python
 * SDK's processor.
 *
 * Only `@opentelemetry/api` is needed (a peer dependency); spans are created by the
 * provider passed in, and parented explicitly, so this works with or without a
 * registered context manager.
 */

import {
  type Attributes,
  type Context,
  context as contextApi,
  createContextKey,
  type Span,
  SpanStatusCode,
  trace,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';

import * as c from './conventions.js';
import type { Active, RunState, StepFacts, StepInfo, Transport } from './core.js';
import { errorText, warn } from './log.js';

/** Where the current X-Ray run lives in an OpenTelemetry context. */
export const RUN_CONTEXT_KEY = createContextKey('xray.run');

const MAX_VALUE_CHARS = 64 * 1024;
const MAX_ARTIFACT_CHARS = 2 * 1024 * 1024;

export interface OtelTransportOptions {
  /** The provider whose processors export the spans (default: the global one). */
  tracerProvider?: TracerProvider;
  /** Instrumentation scope name. Default `xray-sdk`. */
  tracerName?: string;
}

/** A transport that records runs and steps as OpenTelemetry spans. */
export function otelTransport(options: OtelTransportOptions = {}): Transport {
  const provider = options.tracerProvider ?? trace.getTracerProvider();
  return new OtelTransport(provider, provider.getTracer(options.tracerName ?? 'xray-sdk'));
}

interface OtelActive extends Active {
  readonly ctx: Context;
}

class OtelTransport implements Transport {
  constructor(private readonly provider: TracerProvider, private readonly tracer: Tracer) {}

  startRun(run: RunState): Active {
    const attributes: Attributes = { [c.RUN_ID]: run.runId };
    if (run.pipeline !== undefined) attributes[c.RUN_PIPELINE] = run.pipeline;
    if (run.entity !== undefined) attributes[c.RUN_ENTITY] = run.entity;
    const base = contextApi.active().setValue(RUN_CONTEXT_KEY, run);
    const span = this.tracer.startSpan(run.pipeline ?? 'run', { attributes,
                                                               startTime: run.startTime }, base);
    return spanActive(span, trace.setSpan(base, span));
  }

  startStep(step: StepInfo, parent: Active | undefined): Active {
    const run = step.run;
    const attributes: Attributes = {
      [c.STEP_TYPE]: step.type, // first: the collector finds steps by it
      [c.RUN_ID]: run.runId,
      [c.STEP_NAME]: step.name,
      [c.STEP_SEQ]: step.seq,
    };
    if (run.pipeline !== undefined) attributes[c.RUN_PIPELINE] = run.pipeline;
    if (run.entity !== undefined) attributes[c.RUN_ENTITY] = run.entity;
    if (step.input !== undefined) setJson(attributes, c.STEP_INPUT, step.input);
    const base = (parent as OtelActive | undefined)?.ctx
      ?? contextApi.active().setValue(RUN_CONTEXT_KEY, run);
    const span = this.tracer.startSpan(step.name, { attributes, startTime: step.startTime },
                                       base);
    return spanActive(span, trace.setSpan(base, span));
  }

  async flush(timeoutMs = 2000): Promise<void> {
    const provider = this.provider as { forceFlush?: () => Promise<void> };
    if (typeof provider.forceFlush !== 'function') return;
    await bounded(provider.forceFlush(), timeoutMs);
  }

  async shutdown(timeoutMs = 2000): Promise<void> {
    await this.flush(timeoutMs);
  }

  stats(): Record<string, number> {
    return {};
  }
}

function spanActive(span: Span, ctx: Context): OtelActive {
  return {
    ctx,
    record: (facts) => span.setAttributes(stepAttributes(facts)),
    end: (error, threw) => {
      if (threw) {
        span.recordException(error instanceof Error ? error : String(error));
        span.setStatus({ code: SpanStatusCode.ERROR,
                         message: error instanceof Error ? error.message : errorText(error) });
      }
      span.end();
    },
    within: (fn, ...args) => contextApi.with(ctx, fn, undefined, ...args),
  };
}

/** The contract attributes for what a step decided. JSON values become JSON strings. */
export function stepAttributes(facts: StepFacts): Attributes {
  const attributes: Attributes = {};
  if (isCount(facts.candidatesIn)) attributes[c.STEP_CANDIDATES_IN] = facts.candidatesIn;
  if (isCount(facts.candidatesOut)) attributes[c.STEP_CANDIDATES_OUT] = facts.candidatesOut;
  if (typeof facts.why === 'string') attributes[c.STEP_WHY] = facts.why.slice(0, MAX_VALUE_CHARS);
  if (facts.whyJson !== undefined) setJson(attributes, c.STEP_WHY_JSON, facts.whyJson);
  if (facts.input !== undefined) setJson(attributes, c.STEP_INPUT, facts.input);
  if (facts.output !== undefined) setJson(attributes, c.STEP_OUTPUT, facts.output);
  for (const [name, value] of Object.entries(facts.metrics ?? {})) {
    if (typeof value === 'number' && Number.isFinite(value)) {
      attributes[c.STEP_METRIC_PREFIX + name] = value;
    }
  }
  for (const [name, value] of Object.entries(facts.artifacts ?? {})) {
    if (typeof value === 'string') {
      attributes[c.ARTIFACT_PREFIX + name] = value.slice(0, MAX_ARTIFACT_CHARS);
    } else if (value instanceof Uint8Array) {
      // OpenTelemetry JS attributes cannot hold bytes: they travel as base64 text.
      attributes[c.ARTIFACT_PREFIX + name] = Buffer.from(value).toString('base64');
    }
  }
  return attributes;
}

function setJson(attributes: Attributes, name: string, value: unknown): void {
  try {
    const text = JSON.stringify(value);
    if (text !== undefined) attributes[name] = text.slice(0, MAX_VALUE_CHARS);
  } catch (error) {
    warn('json', `${name} is not JSON-serialisable; left out: ${String(error)}`);
  }
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

async function bounded(work: Promise<void>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([work.catch((error: unknown) => warn('flush', String(error))),
                        new Promise<void>((resolve) => {
                          timer = setTimeout(resolve, timeoutMs);
                          timer.unref();
                        })]);
  } finally {
    clearTimeout(timer);
  }
}

/** The slice of the OpenTelemetry SDK's span the processor touches. */
interface StartedSpan {
  readonly attributes: Attributes;
  setAttribute(key: string, value: number | string): unknown;
}

/**
 * Stamps `xray.run.id` and `xray.step.seq` on step spans (those with `xray.step.type`)
 * started inside an `xray.run`, numbering them with the run's own counter. Add it to the
 * tracer provider's span processors, before the exporting one. Constant time; never
 * throws.
 */
export class XRaySpanProcessor {
  onStart(span: StartedSpan, parentContext: Context): void {
    try {
      const attributes = span.attributes;
      if (attributes[c.STEP_TYPE] === undefined) return;
      const run = parentContext.getValue(RUN_CONTEXT_KEY) as RunState | undefined;
      if (run === undefined) return;
      if (attributes[c.RUN_ID] === undefined) span.setAttribute(c.RUN_ID, run.runId);
      if (attributes[c.STEP_SEQ] === undefined) span.setAttribute(c.STEP_SEQ, run.nextSeq());
      if (attributes[c.RUN_PIPELINE] === undefined && run.pipeline !== undefined) {
        span.setAttribute(c.RUN_PIPELINE, run.pipeline);
      }
    } catch (error) {
      warn('processor', `span not stamped: ${String(error)}`);
    }
  }

  onEnding(): void {}

  onEnd(): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}
