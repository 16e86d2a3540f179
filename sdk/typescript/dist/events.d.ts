/**
 * The events transport: runs and steps become `run_start` / `step_start` / `step_end` /
 * `run_end` events (proto/xray/v1/events.proto, JSON mapping), buffered in memory and
 * sent to the collector's `POST /events` in the background.
 *
 * Best-effort: the buffer is bounded and a full buffer drops (and counts) new events;
 * one export at a time, each with a time limit; a failed export is dropped and counted,
 * and exports pause with a growing back-off while the collector keeps failing, so a dead
 * or black-holed collector costs the pipeline only the cost of queuing an event.
 */
import type { Active, RunState, StepInfo, Transport } from './core.js';
export interface EventsTransportOptions {
    /** The collector's HTTP address (`/events` is appended). Default `http://127.0.0.1:4318`. */
    endpoint?: string;
    /** Stored as the rows' `service_name`. */
    serviceName?: string;
    /** Extra request headers, e.g. `{authorization: 'Bearer …'}`. */
    headers?: Record<string, string>;
    /** Most events buffered; more are dropped and counted. Default 2048. */
    maxQueueSize?: number;
    /** Events per request at most. Default 512. */
    maxBatchSize?: number;
    /** Bytes per request at most (JSON). Default 4 MiB. */
    maxRequestBytes?: number;
    /** How often buffered events are sent, in ms. Default 1000. */
    flushIntervalMs?: number;
    /** Time limit of one request, in ms. Default 10000. */
    exportTimeoutMs?: number;
}
/** A transport that sends events to `POST /events`. */
export declare function eventsTransport(options?: EventsTransportOptions): Transport;
export declare class EventsTransport implements Transport {
    private readonly url;
    private readonly serviceName;
    private readonly headers;
    private readonly maxQueue;
    private readonly maxBatch;
    private readonly maxBytes;
    private readonly intervalMs;
    private readonly timeoutMs;
    private queue;
    private timer;
    private exporting;
    private readonly controllers;
    private failures;
    private pausedUntil;
    private stopped;
    private readonly counts;
    constructor(options: EventsTransportOptions);
    startRun(run: RunState): Active;
    startStep(step: StepInfo, _parent: Active | undefined): Active;
    stats(): Record<string, number>;
    flush(timeoutMs?: number): Promise<void>;
    shutdown(timeoutMs?: number): Promise<void>;
    private enqueue;
    private kick;
    /** Send everything buffered now, ignoring the back-off, until `deadline`. */
    private drain;
    private exportSome;
    private send;
    /** Request bodies of at most `maxBytes` each; an event larger than that alone is dropped. */
    private bodies;
    private abortAll;
}
