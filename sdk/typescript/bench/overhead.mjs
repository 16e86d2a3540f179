// What an X-Ray step costs the pipeline, beside a bare function call and a bare
// OpenTelemetry span, with the collector alive, dead (connection refused) and
// black-holed (accepts, never answers).
//
//   npm run bench              # (needs the dev dependencies: npm ci)
//   node bench/overhead.mjs 200000

import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';

import { eventsTransport, setLogger, XRay } from '../dist/index.js';
import { otelTransport, XRaySpanProcessor } from '../dist/otel.js';
import { blackHole, closedPort, fakeCollector } from '../support/servers.mjs';

const N = Number(process.argv[2] ?? 100_000);
setLogger(() => {});

/** An exporter that accepts everything at once: the cost measured is the SDK's. */
const nullExporter = { export: (spans, done) => done({ code: 0 }), shutdown: async () => {},
                       forceFlush: async () => {} };

function work(step) {
  step.record({ candidatesIn: 100, candidatesOut: 10, why: 'kept 10',
                metrics: { threshold: 0.7 } });
  return 10;
}

/** Nanoseconds per call of `body`, yielding to the event loop every 500 calls (so
 * exports run, and their cost on this thread counts too). */
async function measure(label, body) {
  const round = async (count) => {
    for (let i = 0; i < count; i += 1) {
      body(i);
      if (i % 500 === 499) await new Promise((resolve) => setImmediate(resolve));
    }
  };
  await round(Math.min(N, 10_000)); // warm up
  const started = process.hrtime.bigint();
  await round(N);
  const ns = Number(process.hrtime.bigint() - started) / N;
  console.log(`${label.padEnd(52)} ${ns.toFixed(0).padStart(7)} ns/step`);
}

function eventsXRay(endpoint) {
  const xray = new XRay();
  xray.configure({ transport: eventsTransport({ endpoint, exportTimeoutMs: 2000 }) });
  return xray;
}

const noop = { record() {} };
await measure('bare function call', () => work(noop));

const provider = new BasicTracerProvider({ spanProcessors: [
  new XRaySpanProcessor(), new BatchSpanProcessor(nullExporter)] });
const tracer = provider.getTracer('bench');
await measure('bare OpenTelemetry span (+ setAttributes)', () => {
  const span = tracer.startSpan('filter');
  work({ record: (facts) => span.setAttributes({ 'xray.step.candidates_in': facts.candidatesIn }) });
  span.end();
});

const otel = new XRay();
otel.configure({ transport: otelTransport({ tracerProvider: provider }) });
await otel.run('bench', {}, () => measure('xray.step, OpenTelemetry transport',
                                          () => otel.step('filter', {}, work)));

const live = await fakeCollector();
const alive = eventsXRay(live.endpoint);
await alive.run('bench', {}, () => measure('xray.step, events transport, collector alive',
                                           () => alive.step('filter', {}, work)));
const dead = eventsXRay(await closedPort());
await dead.run('bench', {}, () => measure('xray.step, events transport, collector dead',
                                          () => dead.step('filter', {}, work)));
const hole = await blackHole();
const holed = eventsXRay(hole.endpoint);
await holed.run('bench', {}, () => measure('xray.step, events transport, black-holed',
                                           () => holed.step('filter', {}, work)));

for (const [label, xray] of [['alive', alive], ['dead', dead], ['black-holed', holed]]) {
  await xray.shutdown(500);
  console.log(`  ${label}: ${JSON.stringify(xray.stats())}`);
}
await provider.shutdown();
await live.close();
await hole.close();
