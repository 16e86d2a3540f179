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
import { type Attributes, type Context, type TracerProvider } from '@opentelemetry/api';
import type { StepFacts, Transport } from './core.js';
/** Where the current X-Ray run lives in an OpenTelemetry context. */
export declare const RUN_CONTEXT_KEY: symbol;
export interface OtelTransportOptions {
    /** The provider whose processors export the spans (default: the global one). */
    tracerProvider?: TracerProvider;
    /** Instrumentation scope name. Default `xray-sdk`. */
    tracerName?: string;
}
/** A transport that records runs and steps as OpenTelemetry spans. */
export declare function otelTransport(options?: OtelTransportOptions): Transport;
/** The contract attributes for what a step decided. JSON values become JSON strings. */
export declare function stepAttributes(facts: StepFacts): Attributes;
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
export declare class XRaySpanProcessor {
    onStart(span: StartedSpan, parentContext: Context): void;
    onEnding(): void;
    onEnd(): void;
    forceFlush(): Promise<void>;
    shutdown(): Promise<void>;
}
export {};
