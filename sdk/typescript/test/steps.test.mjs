// run/step closures: automatic seq, context through async code, values and errors passed
// through unchanged, what a step records, all seen on the wire of the events transport.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { eventsTransport, XRay } from '../dist/index.js';
import { fakeCollector, kindOf } from '../support/servers.mjs';

let collector;
before(async () => { collector = await fakeCollector(); });
after(() => collector.close());

function configured(options = {}) {
  const xray = new XRay();
  const transport = eventsTransport({ endpoint: collector.endpoint, serviceName: 'ts-test',
                                      flushIntervalMs: 60_000, ...options });
  xray.configure({ transport });
  return xray;
}

async function sent(xray, runId) {
  await xray.flush(5000);
  return collector.events().filter((event) => kindOf(event)[1].runId === runId);
}

test('steps are numbered in order, nested and sync or async, with start and end', async () => {
  const xray = configured();
  const result = await xray.run('search_pipeline', { entity: 'B0', runId: 'r-order' }, async () => {
    const words = xray.step('llm', { name: 'keywords', input: { asin: 'B0' } }, (step) => {
      step.record({ output: ['a', 'b'], metrics: { tokens: 12 } });
      return ['a', 'b'];
    });
    const found = await xray.step('search', {}, async (step) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      const inner = await xray.step('transform', { name: 'dedupe' }, async () => 7);
      step.record({ candidatesOut: inner });
      return inner;
    });
    return { words, found };
  });
  assert.deepEqual(result, { words: ['a', 'b'], found: 7 });
  const events = await sent(xray, 'r-order');
  assert.deepEqual(events.map((e) => kindOf(e)[0]), [
    'runStart', 'stepStart', 'stepEnd', 'stepStart', 'stepStart', 'stepEnd', 'stepEnd', 'runEnd']);
  const ends = events.filter((e) => e.stepEnd).map((e) => e.stepEnd);
  const byName = Object.fromEntries(ends.map((e) => [e.name, e]));
  assert.deepEqual(ends.map((e) => [e.name, e.seq, e.type, e.stepId]), [
    ['keywords', 1, 'llm', '1'], ['dedupe', 3, 'transform', '3'], ['search', 2, 'search', '2']]);
  assert.equal(byName.dedupe.parentStepId, '2');
  assert.equal(byName.search.parentStepId, undefined);
  assert.deepEqual(byName.keywords.input, { asin: 'B0' });
  assert.deepEqual(byName.keywords.output, ['a', 'b']);
  assert.deepEqual(byName.keywords.metrics, { tokens: 12 });
  assert.equal(byName.search.candidatesOut, 7);
  assert.equal(byName.search.pipeline, 'search_pipeline');
  assert.equal(byName.search.entity, 'B0');
  assert.ok(Date.parse(byName.search.time) >= Date.parse(byName.search.startTime));
  const runEnd = events.at(-1).runEnd;
  assert.deepEqual([runEnd.status, runEnd.pipeline, runEnd.entity], ['STATUS_OK', 'search_pipeline', 'B0']);
  assert.equal(collector.batches.at(-1).body.serviceName, 'ts-test');
});

test('concurrent runs keep their own context and numbering', async () => {
  const xray = configured();
  const one = (runId) => xray.run('p', { runId }, async () => {
    for (let i = 0; i < 3; i += 1) {
      await xray.step('rank', { name: `s${i}` }, async () => {
        await new Promise((resolve) => setImmediate(resolve));
      });
    }
  });
  await Promise.all([one('r-a'), one('r-b')]);
  for (const runId of ['r-a', 'r-b']) {
    const ends = (await sent(xray, runId)).filter((e) => e.stepEnd).map((e) => e.stepEnd);
    assert.deepEqual(ends.map((e) => [e.name, e.seq]), [['s0', 1], ['s1', 2], ['s2', 3]]);
  }
});

test("the user's errors are re-thrown unchanged and recorded", async () => {
  const xray = configured();
  const boom = new RangeError('no candidates');
  await assert.rejects(xray.run('p', { runId: 'r-err' }, async () => {
    await xray.step('filter', { name: 'f' }, async (step) => {
      step.record({ candidatesIn: 10, candidatesOut: 0 });
      throw boom;
    });
  }), (error) => error === boom);
  const sync = new TypeError('sync');
  assert.throws(() => xray.run('p', { runId: 'r-sync' }, () => xray.step('llm', {}, () => {
    throw sync;
  })), (error) => error === sync);
  const events = await sent(xray, 'r-err');
  const end = events.find((e) => e.stepEnd).stepEnd;
  assert.deepEqual([end.status, end.error, end.candidatesIn], ['STATUS_ERROR', 'RangeError: no candidates', 10]);
  assert.equal(events.at(-1).runEnd.error, 'RangeError: no candidates');
});

test('record merges, and keeps only what the collector can store', async () => {
  const xray = configured();
  const cyclic = {};
  cyclic.self = cyclic;
  await xray.run('p', { runId: 'r-record' }, () => xray.step('filter', {}, (step) => {
    step.record({ candidatesIn: 5, metrics: { a: 1 }, whyJson: { reasons: { x: 4 } } });
    step.record({ candidatesOut: 2, metrics: { b: 2.5, bad: Number.NaN }, why: 'kept 2',
                  artifacts: { page: '<html>', raw: new Uint8Array([0, 1]) } });
    step.record({ candidatesIn: -1, whyJson: ['not', 'an', 'object'], output: cyclic });
  }));
  const end = (await sent(xray, 'r-record')).find((e) => e.stepEnd).stepEnd;
  assert.equal(end.candidatesIn, undefined); // -1 is not a count: left out
  assert.equal(end.candidatesOut, 2);
  assert.deepEqual(end.metrics, { a: 1, b: 2.5 });
  assert.equal(end.whyJson, undefined); // only objects are whyJson
  assert.equal(end.why, 'kept 2');
  assert.equal(end.output, '[object Object]');
  assert.deepEqual(end.artifacts, { page: { text: '<html>' }, raw: { data: 'AAE=' } });
});

test('a step outside any run gets a run of its own, and unconfigured X-Ray does nothing', async () => {
  const xray = configured();
  const seen = [];
  const value = await xray.step('other', { name: 'lonely' }, async (step) => {
    seen.push(step.runId);
    return 3;
  });
  assert.equal(value, 3);
  const events = await sent(xray, seen[0]);
  assert.deepEqual(events.map((e) => kindOf(e)[0]), ['stepStart', 'stepEnd']);
  const bare = new XRay();
  assert.equal(bare.run('p', {}, () => bare.step('llm', {}, (step) => {
    step.record({ why: 'nothing recorded' });
    return 'ok';
  })), 'ok');
});
