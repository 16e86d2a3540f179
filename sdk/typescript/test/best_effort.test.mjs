// Best-effort: a dead, failing or black-holed collector never fails or blocks the
// pipeline; the buffer is bounded and what is dropped is counted; exit flushes, within a
// time limit.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { eventsTransport, setLogger, XRay } from '../dist/index.js';
import { blackHole, closedPort, fakeCollector } from '../support/servers.mjs';

const warnings = [];
setLogger((message) => warnings.push(message));
const INDEX = fileURLToPath(new URL('../dist/index.js', import.meta.url));

async function pipeline(xray, runs = 3) {
  let total = 0;
  for (let i = 0; i < runs; i += 1) {
    total += await xray.run('p', { runId: `r${i}` }, async () => {
      const a = await xray.step('search', {}, async (step) => {
        step.record({ candidatesOut: 10 });
        return 10;
      });
      return xray.step('filter', {}, (step) => {
        step.record({ candidatesIn: a, candidatesOut: 1 });
        return 1;
      });
    });
  }
  return total;
}

test('a dead collector: the pipeline runs, failed exports are dropped and counted', async () => {
  const xray = new XRay();
  xray.configure({ transport: eventsTransport({ endpoint: await closedPort(),
                                                flushIntervalMs: 10 }) });
  assert.equal(await pipeline(xray), 3);
  await xray.flush(5000);
  const stats = xray.stats();
  assert.equal(stats.queued, 18);
  assert.equal(stats.sent, 0);
  assert.equal(stats.droppedExportFailed, 18);
  assert.ok(warnings.some((w) => w.includes('events not sent')));
});

test('a collector answering 503: the events are dropped and counted', async () => {
  const failing = await fakeCollector({ status: 503 });
  const xray = new XRay();
  xray.configure({ transport: eventsTransport({ endpoint: failing.endpoint }) });
  await pipeline(xray, 1);
  await xray.flush(5000);
  assert.deepEqual([xray.stats().sent, xray.stats().droppedExportFailed], [0, 6]);
  await failing.close();
});

test('a black-holed collector: the buffer stays bounded and flush keeps its time limit', { timeout: 30_000 }, async () => {
  const hole = await blackHole();
  const xray = new XRay();
  xray.configure({ transport: eventsTransport({ endpoint: hole.endpoint, maxQueueSize: 10,
                                                maxBatchSize: 4, exportTimeoutMs: 60_000 }) });
  assert.equal(await pipeline(xray, 10), 10);
  const stats = xray.stats();
  assert.ok(stats.droppedQueueFull > 0, JSON.stringify(stats));
  assert.ok(stats.buffered <= 10);
  assert.equal(stats.queued + stats.droppedQueueFull, 60);
  await xray.shutdown(200); // resolves although the collector never answers
  assert.equal(xray.stats().sent, 0);
  await hole.close();
});

test('a transport that throws never reaches the pipeline', async () => {
  const broken = {
    startRun() { throw new Error('transport bug'); },
    startStep() { throw new Error('transport bug'); },
    flush() { return Promise.reject(new Error('flush bug')); },
    shutdown() { return Promise.reject(new Error('shutdown bug')); },
    stats() { throw new Error('stats bug'); },
  };
  const xray = new XRay();
  xray.configure({ transport: broken });
  assert.equal(await pipeline(xray), 3);
  await xray.flush();
  await xray.shutdown();
  assert.deepEqual(xray.stats(), {});
  const half = { ...broken, startRun: () => ({ record() { throw new Error('r'); },
                                               end() { throw new Error('e'); },
                                               within(fn) { return fn(); } }),
                 startStep: () => ({ record() { throw new Error('r'); },
                                     end() { throw new Error('e'); },
                                     within() { throw new Error('w'); } }) };
  xray.configure({ transport: half });
  assert.equal(await pipeline(xray), 3);
});

function runChild(endpoint) {
  const script = `
    import { xray, eventsTransport } from ${JSON.stringify(INDEX)};
    xray.configure({ transport: eventsTransport({ endpoint: ${JSON.stringify(endpoint)},
                                                   flushIntervalMs: 60000 }) });
    await xray.run('exit_pipeline', { runId: 'r-exit' }, async () =>
      xray.step('llm', { name: 'only' }, () => 1));
  `;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script],
                        { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk) => { stderr += chunk; });
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

test('events still buffered when the process ends are sent before it exits', { timeout: 30_000 }, async () => {
  const collector = await fakeCollector();
  const { code, stderr } = await runChild(collector.endpoint);
  assert.equal(code, 0, stderr);
  assert.deepEqual(collector.events().map((e) => Object.keys(e)[0]),
                   ['runStart', 'stepStart', 'stepEnd', 'runEnd']);
  await collector.close();
});

test('a black-holed collector does not keep the process from exiting', { timeout: 30_000 }, async () => {
  const hole = await blackHole();
  const { code, stderr } = await runChild(hole.endpoint);
  assert.equal(code, 0, stderr);
  await hole.close();
});
