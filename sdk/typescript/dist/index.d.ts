/**
 * X-Ray for Node.js. Wrap a pipeline's steps in closures; X-Ray numbers them, times them,
 * records what they decided and sends it to the X-Ray collector, best-effort.
 *
 * ```js
 * import { xray, eventsTransport } from '@xray/sdk';
 * xray.configure({ transport: eventsTransport({ endpoint: 'http://127.0.0.1:4318' }) });
 * await xray.run('competitor_search', { entity: asin }, async () => {
 *   const kept = await xray.step('filter', { name: 'category_filter' }, async (step) => {
 *     const kept = candidates.filter(sameCategory);
 *     step.record({ candidatesIn: candidates.length, candidatesOut: kept.length,
 *                   why: 'dropped other categories' });
 *     return kept;
 *   });
 * });
 * ```
 *
 * Teams on OpenTelemetry use `otelTransport` and `XRaySpanProcessor` from `@xray/sdk/otel`.
 */
import { XRay } from './core.js';
export * as conventions from './conventions.js';
export type { StepType } from './conventions.js';
export { type Active, RunState, type RunOptions, type Step, type StepFacts, type StepInfo, type StepOptions, type Transport, XRay, } from './core.js';
export { EventsTransport, eventsTransport, type EventsTransportOptions } from './events.js';
export { type Logger, setLogger } from './log.js';
/** The shared instance: does nothing but call the wrapped functions until configured. */
export declare const xray: XRay;
