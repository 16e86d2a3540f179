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
import { Buffer } from 'node:buffer';
import { errorText, warn } from './log.js';
const MAX_VALUE_CHARS = 64 * 1024;
const MAX_ARTIFACT_BYTES = 2 * 1024 * 1024;
const MAX_BACKOFF_MS = 30_000;
/** A transport that sends events to `POST /events`. */
export function eventsTransport(options = {}) {
    return new EventsTransport(options);
}
export class EventsTransport {
    url;
    serviceName;
    headers;
    maxQueue;
    maxBatch;
    maxBytes;
    intervalMs;
    timeoutMs;
    queue = [];
    timer;
    exporting;
    controllers = new Set();
    failures = 0;
    pausedUntil = 0;
    stopped = false;
    counts = { queued: 0, sent: 0, droppedQueueFull: 0, droppedExportFailed: 0,
        droppedTooLarge: 0, droppedAtShutdown: 0,
        exportsFailed: 0 };
    constructor(options) {
        const base = (options.endpoint ?? 'http://127.0.0.1:4318').replace(/\/+$/, '');
        this.url = base.endsWith('/events') ? base : `${base}/events`;
        this.serviceName = options.serviceName;
        this.headers = { 'content-type': 'application/json', ...options.headers };
        this.maxQueue = options.maxQueueSize ?? 2048;
        this.maxBatch = options.maxBatchSize ?? 512;
        this.maxBytes = options.maxRequestBytes ?? 4 * 1024 * 1024;
        this.intervalMs = options.flushIntervalMs ?? 1000;
        this.timeoutMs = options.exportTimeoutMs ?? 10_000;
    }
    // Events are queued as plain records and turned into JSON only when sent, so queuing
    // costs little and an event dropped from a full buffer costs almost nothing.
    startRun(run) {
        this.enqueue({ kind: 'runStart', run, at: run.startTime });
        return {
            record: () => { },
            end: (error, threw) => {
                this.enqueue({ kind: 'runEnd', run, at: Date.now(), error, threw });
            },
            within: (fn, ...args) => fn(...args),
        };
    }
    startStep(step, _parent) {
        this.enqueue({ kind: 'stepStart', run: step.run, step, at: step.startTime });
        let facts;
        return {
            record: (more) => {
                facts = merge(facts, more);
            },
            end: (error, threw) => {
                this.enqueue({ kind: 'stepEnd', run: step.run, step, at: Date.now(), error, threw,
                    facts });
            },
            within: (fn, ...args) => fn(...args),
        };
    }
    stats() {
        return { ...this.counts, buffered: this.queue.length };
    }
    async flush(timeoutMs = 2000) {
        const deadline = Date.now() + timeoutMs;
        await withTimeout(this.drain(deadline), timeoutMs, () => this.abortAll());
    }
    async shutdown(timeoutMs = 2000) {
        if (this.stopped)
            return;
        await this.flush(timeoutMs);
        this.stopped = true;
        if (this.timer !== undefined)
            clearTimeout(this.timer);
        this.counts.droppedAtShutdown += this.queue.length;
        this.queue = [];
        this.abortAll();
    }
    enqueue(event) {
        if (this.stopped) {
            this.counts.droppedAtShutdown += 1;
            return;
        }
        if (this.queue.length >= this.maxQueue) {
            this.counts.droppedQueueFull += 1;
            warn('queue', 'event buffer full; events dropped (see stats())');
            return;
        }
        this.queue.push(event);
        this.counts.queued += 1;
        if (this.queue.length >= this.maxBatch)
            this.kick(0);
        else if (this.timer === undefined)
            this.kick(this.intervalMs);
    }
    kick(delayMs) {
        if (this.timer !== undefined) {
            if (delayMs > 0)
                return;
            clearTimeout(this.timer);
        }
        this.timer = setTimeout(() => {
            this.timer = undefined;
            void this.exportSome(false);
        }, Math.max(delayMs, this.pausedUntil - Date.now(), 0));
        this.timer.unref();
    }
    /** Send everything buffered now, ignoring the back-off, until `deadline`. */
    async drain(deadline) {
        while ((this.queue.length > 0 || this.exporting !== undefined) && Date.now() < deadline) {
            await (this.exporting ?? this.exportSome(true, deadline));
        }
    }
    exportSome(force, deadline = Infinity) {
        if (this.exporting !== undefined)
            return this.exporting;
        if (this.queue.length === 0 || (!force && Date.now() < this.pausedUntil)) {
            if (this.queue.length > 0)
                this.kick(this.intervalMs);
            return Promise.resolve();
        }
        const batch = this.queue.splice(0, this.maxBatch);
        this.exporting = this.send(batch, deadline).finally(() => {
            this.exporting = undefined;
            if (this.queue.length > 0 && !this.stopped)
                this.kick(force ? 0 : this.intervalMs);
        });
        return this.exporting;
    }
    async send(batch, deadline) {
        for (const body of this.bodies(batch)) {
            const controller = new AbortController();
            this.controllers.add(controller);
            const limit = Math.max(0, Math.min(this.timeoutMs, deadline - Date.now()));
            const timer = setTimeout(() => controller.abort(), limit);
            timer.unref();
            try {
                const response = await fetch(this.url, { method: 'POST', headers: this.headers,
                    body: body.json, signal: controller.signal });
                const answer = await response.text();
                if (!response.ok)
                    throw new Error(`HTTP ${response.status}: ${answer.slice(0, 300)}`);
                this.counts.sent += body.count;
                this.failures = 0;
                this.pausedUntil = 0;
                if (answer.length > 2)
                    warn('partial', `collector changed or refused events: ${answer}`);
            }
            catch (error) {
                this.counts.droppedExportFailed += body.count;
                this.counts.exportsFailed += 1;
                this.failures += 1;
                this.pausedUntil = Date.now() + Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.failures);
                warn('export', `events not sent to ${this.url} (dropped): ${errorText(error)}`);
            }
            finally {
                clearTimeout(timer);
                this.controllers.delete(controller);
            }
        }
    }
    /** Request bodies of at most `maxBytes` each; an event larger than that alone is dropped. */
    *bodies(batch) {
        const head = this.serviceName === undefined ? '{"events":['
            : `{"serviceName":${JSON.stringify(this.serviceName)},"events":[`;
        let parts = [];
        let size = head.length + 2;
        for (const event of batch) {
            let text;
            try {
                text = JSON.stringify(wire(event));
            }
            catch (error) {
                this.counts.droppedTooLarge += 1;
                warn('encode', `event not encodable (dropped): ${String(error)}`);
                continue;
            }
            const bytes = Buffer.byteLength(text);
            if (bytes + head.length + 2 > this.maxBytes) {
                this.counts.droppedTooLarge += 1;
                warn('large', `event of ${bytes} bytes over the request limit (dropped)`);
                continue;
            }
            if (parts.length > 0 && size + bytes + 1 > this.maxBytes) {
                yield { json: `${head}${parts.join(',')}]}`, count: parts.length };
                parts = [];
                size = head.length + 2;
            }
            parts.push(text);
            size += bytes + 1;
        }
        if (parts.length > 0)
            yield { json: `${head}${parts.join(',')}]}`, count: parts.length };
    }
    abortAll() {
        for (const controller of this.controllers)
            controller.abort();
    }
}
/** The event as `xray.v1.Event` in protobuf's JSON mapping. */
function wire(entry) {
    const run = entry.run;
    if (entry.kind === 'runStart' || entry.kind === 'runEnd') {
        const body = { runId: run.runId, pipeline: run.pipeline, entity: run.entity };
        if (entry.kind === 'runStart')
            return { runStart: { ...body, time: iso(entry.at) } };
        return { runEnd: { ...body, startTime: iso(run.startTime), time: iso(entry.at),
                ...outcome(entry.error, entry.threw) } };
    }
    const step = entry.step;
    const facts = entry.facts ?? {};
    const body = {
        runId: run.runId, stepId: step.stepId, seq: step.seq, name: step.name, type: step.type,
        pipeline: run.pipeline, entity: run.entity, parentStepId: step.parentStepId,
        input: json(facts.input !== undefined ? facts.input : step.input),
    };
    if (entry.kind === 'stepStart')
        return { stepStart: { ...body, time: iso(entry.at) } };
    return { stepEnd: { ...body, startTime: iso(step.startTime), time: iso(entry.at),
            ...outcome(entry.error, entry.threw), ...stepOutcome(facts) } };
}
/** `more` recorded over `facts`: later values win, metrics and artifacts merge by name. */
function merge(facts, more) {
    if (facts === undefined)
        return { ...more };
    const metrics = more.metrics && facts.metrics ? { ...facts.metrics, ...more.metrics } : undefined;
    const artifacts = more.artifacts && facts.artifacts
        ? { ...facts.artifacts, ...more.artifacts } : undefined;
    Object.assign(facts, more);
    if (metrics)
        facts.metrics = metrics;
    if (artifacts)
        facts.artifacts = artifacts;
    return facts;
}
function outcome(error, threw) {
    return threw ? { status: 'STATUS_ERROR', error: errorText(error) } : { status: 'STATUS_OK' };
}
function stepOutcome(facts) {
    const out = {};
    if (isCount(facts.candidatesIn))
        out.candidatesIn = facts.candidatesIn;
    if (isCount(facts.candidatesOut))
        out.candidatesOut = facts.candidatesOut;
    if (typeof facts.why === 'string')
        out.why = facts.why.slice(0, MAX_VALUE_CHARS);
    const whyJson = json(facts.whyJson);
    if (whyJson !== null && typeof whyJson === 'object' && !Array.isArray(whyJson)) {
        out.whyJson = whyJson;
    }
    if (facts.output !== undefined)
        out.output = json(facts.output);
    const metrics = {};
    for (const [name, value] of Object.entries(facts.metrics ?? {})) {
        if (typeof value === 'number' && Number.isFinite(value))
            metrics[name] = value;
    }
    if (Object.keys(metrics).length > 0)
        out.metrics = metrics;
    const artifacts = {};
    for (const [name, value] of Object.entries(facts.artifacts ?? {})) {
        if (typeof value === 'string') {
            artifacts[name] = { text: value.slice(0, MAX_ARTIFACT_BYTES) };
        }
        else if (value instanceof Uint8Array) {
            artifacts[name] = { data: Buffer.from(value.subarray(0, MAX_ARTIFACT_BYTES))
                    .toString('base64') };
        }
    }
    if (Object.keys(artifacts).length > 0)
        out.artifacts = artifacts;
    return out;
}
function isCount(value) {
    return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
/** A JSON-safe copy of `value` (what JSON.stringify keeps), or undefined if it has none. */
function json(value) {
    if (value === undefined)
        return undefined;
    try {
        const text = JSON.stringify(value);
        if (text === undefined)
            return undefined;
        if (text.length > MAX_VALUE_CHARS)
            return `${text.slice(0, MAX_VALUE_CHARS)}…`;
        return JSON.parse(text);
    }
    catch (error) {
        warn('json', `value not JSON-serialisable, replaced by its description: ${String(error)}`);
        return String(value);
    }
}
function iso(ms) {
    return new Date(ms).toISOString();
}
async function withTimeout(work, timeoutMs, onTimeout) {
    let timer;
    const limit = new Promise((resolve) => {
        timer = setTimeout(() => {
            onTimeout();
            resolve();
        }, timeoutMs);
        timer.unref();
    });
    try {
        await Promise.race([work.catch(() => { }), limit]);
    }
    finally {
        clearTimeout(timer);
    }
}
