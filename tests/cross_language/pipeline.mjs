// The cross-language pipeline, TypeScript side: the same runs and steps as
// test_same_rows.py's Python pipeline, sent with the TypeScript SDK's events transport.
//
//   node pipeline.mjs ENDPOINT RUN_ID

import { eventsTransport, xray } from '../../sdk/typescript/dist/index.js';

class LookupError extends Error {
  name = 'LookupError';
}

const [endpoint, runId] = process.argv.slice(2);
xray.configure({ transport: eventsTransport({ endpoint, serviceName: 'xlang' }) });

await xray.run('xlang', { entity: 'B0XL', runId }, async () => {
  await xray.step('llm', { name: 'keywords' }, async (step) => {
    step.record({ input: { asin: 'B0XL' }, output: ['case', 'cover'], why: '2 keywords',
                  metrics: { tokens: 12, temperature: 0.5 } });
  });
  xray.step('search', { name: 'search' }, (step) => {
    step.record({ candidatesOut: 100, why: '100 hits' });
  });
  await xray.step('filter', { name: 'category_filter' }, async (step) => {
    step.record({ candidatesIn: 100, candidatesOut: 5, why: 'dropped 95%',
                  whyJson: { top_reject_reasons: { category_mismatch: 90, price: 5 } },
                  artifacts: { rejected: 'laptop stand, monitor arm' } });
  });
  try {
    await xray.step('rank', { name: 'pick' }, async (step) => {
      step.record({ candidatesIn: 5 });
      throw new LookupError('no clear winner');
    });
  } catch (error) {
    if (!(error instanceof LookupError)) throw error;
  }
});
await xray.shutdown(10_000);
const stats = xray.stats();
if (stats.sent !== stats.queued) {
  console.error(`not everything was sent: ${JSON.stringify(stats)}`);
  process.exitCode = 1;
}
