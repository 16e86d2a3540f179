// The OpenTelemetry transport: spans carry the attribute contract; XRaySpanProcessor
// stamps run id and seq on the application's own step spans inside a run.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { context, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

import { XRay } from '../dist/index.js';
import { otelTransport, XRaySpanProcessor } from '../dist/otel.js';

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

function setUp() {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    spanProcessors: [new XRaySpanProcessor(), new SimpleSpanProcessor(exporter)],
  });
  const xray = new XRay();
  xray.configure({ transport: otelTransport({ tracerProvider: provider }) });
  return { xray, exporter, provider };
}

test('runs and steps become spans with the attribute contract', async () => {
  const { xray, exporter } = setUp();
  const boom = new Error('nothing left');
  await assert.rejects(xray.run('competitor_search', { entity: 'B0', runId: 'r1' }, async () => {
    await xray.step('filter', { name: 'category_filter', input: { k: 1 } }, async (step) => {
      step.record({ candidatesIn: 50, candidatesOut: 5, why: 'dropped 90%',
                    whyJson: { top_reject_reasons: { category_mismatch: 45 } },
                    output: [1, 2], metrics: { threshold: 0.7 }, artifacts: { page: '<p>' } });
    });
    await xray.step('llm', { name: 'pick' }, async () => { throw boom; });
  }), (error) => error === boom);
  const spans = exporter.getFinishedSpans();
  const [filter, pick, run] = spans;
  assert.deepEqual(spans.map((s) => s.name), ['category_filter', 'pick', 'competitor_search']);
  assert.deepEqual(run.attributes, { 'xray.run.id': 'r1', 'xray.run.pipeline': 'competitor_search',
                                     'xray.run.entity': 'B0' });
  assert.deepEqual(filter.attributes, {
    'xray.step.type': 'filter', 'xray.run.id': 'r1', 'xray.step.name': 'category_filter',
    'xray.step.seq': 1, 'xray.run.pipeline': 'competitor_search', 'xray.run.entity': 'B0',
    'xray.step.input': '{"k":1}', 'xray.step.candidates_in': 50, 'xray.step.candidates_out': 5,
    'xray.step.why': 'dropped 90%',
    'xray.step.why_json': '{"top_reject_reasons":{"category_mismatch":45}}',
    'xray.step.output': '[1,2]', 'xray.step.metric.threshold': 0.7, 'xray.artifact.page': '<p>',
  });
  assert.equal(pick.attributes['xray.step.seq'], 2);
  assert.equal(pick.status.code, SpanStatusCode.ERROR);
  assert.equal(pick.events[0].name, 'exception');
  assert.equal(run.status.code, SpanStatusCode.ERROR);
  for (const step of [filter, pick]) {
    assert.equal(step.parentSpanContext.spanId, run.spanContext().spanId);
    assert.equal(step.spanContext().traceId, run.spanContext().traceId);
  }
});

test("the processor numbers the application's own step spans inside a run", async () => {
  const { xray, exporter, provider } = setUp();
  const tracer = provider.getTracer('app');
  await xray.run('p', { runId: 'r2' }, async () => {
    await xray.step('search', {}, async () => {});
    const own = tracer.startSpan('hand_made', { attributes: { 'xray.step.type': 'rank' } });
    own.end();
    tracer.startSpan('not_a_step').end();
  });
  const byName = Object.fromEntries(exporter.getFinishedSpans().map((s) => [s.name, s]));
  assert.equal(byName.hand_made.attributes['xray.step.seq'], 2);
  assert.equal(byName.hand_made.attributes['xray.run.id'], 'r2');
  assert.equal(byName.hand_made.attributes['xray.run.pipeline'], 'p');
  assert.equal(byName.hand_made.parentSpanContext.spanId, byName.p.spanContext().spanId);
  assert.deepEqual(byName.not_a_step.attributes, {});
  // Outside any run the processor leaves spans alone.
  tracer.startSpan('outside', { attributes: { 'xray.step.type': 'rank' } }).end();
  const outside = exporter.getFinishedSpans().find((s) => s.name === 'outside');
  assert.deepEqual(outside.attributes, { 'xray.step.type': 'rank' });
  assert.equal(trace.getActiveSpan(), undefined);
});
