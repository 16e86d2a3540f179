#!/usr/bin/env node
// X-Ray example in Node.js: "find a competitor product for an ASIN".
//
// Five decision steps (keyword generation -> search -> filter -> rank -> pick) over a
// small synthetic catalog, instrumented with the X-Ray TypeScript SDK (`@xray/sdk`, in
// sdk/typescript): `xray.run` wraps a run, `xray.step` each step, `step.record` says what
// the step decided; the SDK numbers the steps and writes the attribute contract. Spans
// are exported by the application's own OpenTelemetry provider.
//
//   node pipeline.mjs                        # two default runs
//   node pipeline.mjs B0CASE0001 B0LAMP0001  # one run per ASIN, generated run ids
//   node pipeline.mjs B0CASE0001=my-run-1    # ASIN=RUN_ID sets the run id
//
// Spans go over OTLP/HTTP (protobuf) to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else
// OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else http://127.0.0.1:4318/v1/traces.
// Exit code: 0 when every run found a competitor, 1 when a run failed, 2 on bad usage.

import { randomUUID } from 'node:crypto';

import { diag, DiagConsoleLogger, DiagLogLevel } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { xray } from '@xray/sdk';
import { otelTransport, XRaySpanProcessor } from '@xray/sdk/otel';

export const SERVICE_NAME = 'js-competitor-finder';
export const SERVICE_VERSION = '0.1.0';
export const PIPELINE = 'competitor_finder';
const DEFAULT_ENDPOINT = 'http://127.0.0.1:4318/v1/traces';
const DEFAULT_ASINS = ['B0CASE0001', 'B0STND0001'];

// --- a small synthetic catalog ---------------------------------------------------------

const CATALOG = [
  ['B0CASE0001', 'Slim Silicone Phone Case for Pixel 8, Black', 'cell_phone_cases', 14.99, 4.4],
  ['B0CASE0002', 'Rugged Shockproof Phone Case for Pixel 8', 'cell_phone_cases', 19.99, 4.6],
  ['B0CASE0003', 'Clear Slim Phone Case for Pixel 8 with Kickstand', 'cell_phone_cases', 12.49, 4.1],
  ['B0CASE0004', 'Leather Wallet Phone Case for Pixel 8', 'cell_phone_cases', 39.99, 4.3],
  ['B0CASE0005', 'Silicone Phone Case for iPhone 15, Black', 'cell_phone_cases', 13.99, 3.2],
  ['B0STND0001', 'Adjustable Aluminum Laptop Stand for Desk', 'laptop_stands', 29.99, 4.7],
  ['B0STND0002', 'Foldable Laptop Stand, Slim Aluminum Riser', 'laptop_stands', 24.99, 4.5],
  ['B0STND0003', 'Wooden Laptop Stand for Desk, Walnut', 'laptop_stands', 44.99, 4.2],
  ['B0STND0004', 'Phone and Tablet Stand, Adjustable Aluminum', 'phone_stands', 15.99, 4.4],
  ['B0STND0005', 'Vertical Laptop Stand Dock, Black', 'laptop_stands', 69.99, 4.0],
  ['B0CHRG0001', 'Fast Wireless Charger for Pixel 8 and iPhone 15', 'chargers', 25.99, 4.3],
  ['B0CHRG0002', 'USB-C Charging Cable, 2-Pack, Black', 'chargers', 9.99, 4.5],
  ['B0SCRN0001', 'Tempered Glass Screen Protector for Pixel 8', 'screen_protectors', 8.99, 4.4],
  ['B0LAMP0001', 'LED Desk Lamp with Phone Stand and Wireless Charger', 'desk_lamps', 34.99, 4.1],
  ['B0MOUS0001', 'Slim Wireless Mouse, Black', 'computer_mice', 17.99, 4.2],
].map(([asin, title, category, price, rating]) => ({ asin, title, category, price, rating }));

const STOPWORDS = new Set(['and', 'for', 'the', 'with']);
const KEYWORD_COUNT = 5;
const PRICE_BAND = [0.5, 2.0]; // a competitor costs between half and twice the source price
const MIN_RATING = 3.5;
const WEIGHTS = { overlap: 0.5, rating: 0.3, price: 0.2 };
const TOP_K = 3;

class UnknownProductError extends Error {
  name = 'UnknownProductError';
}

class NoCompetitorFoundError extends Error {
  name = 'NoCompetitorFoundError';
}

// --- OpenTelemetry set-up, and X-Ray on top of it -------------------------------------

function makeProvider() {
  // Export problems are logged, never thrown: the pipeline does not fail because of X-Ray.
  diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.WARN);
  const fromEnv = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    || process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  // With a URL in the config the exporter ignores the environment, so pass one only when
  // neither variable is set. 127.0.0.1 rather than the exporter's own "localhost"
  // default: Node may resolve localhost to ::1 while the collector listens on IPv4.
  const exporter = new OTLPTraceExporter(fromEnv ? {} : { url: DEFAULT_ENDPOINT });
  return new BasicTracerProvider({
    resource: defaultResource().merge(resourceFromAttributes({
      [ATTR_SERVICE_NAME]: SERVICE_NAME,
      [ATTR_SERVICE_VERSION]: SERVICE_VERSION,
    })),
    // XRaySpanProcessor numbers step spans the application starts itself inside a run.
    spanProcessors: [new XRaySpanProcessor(), new BatchSpanProcessor(exporter)],
  });
}

// --- the pipeline ----------------------------------------------------------------------

const tokens = (text) => text.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean);
const round4 = (value) => Math.round(value * 10_000) / 10_000;
const summary = ({ asin, title, category, price, rating }) => ({
  asin, title, category, price, rating,
});

async function findCompetitor(entity) {
  const source = CATALOG.find((product) => product.asin === entity);

  // 1. Keyword generation: a deterministic stand-in for an LLM call.
  const keywords = await xray.step('llm', { name: 'generate_keywords' }, async (step) => {
    if (!source) throw new UnknownProductError(`ASIN ${entity} is not in the catalog`);
    const words = tokens(source.title);
    const distinct = [...new Set(words)]
      .filter((word) => word.length >= 3 && !STOPWORDS.has(word) && !/^\d+$/.test(word));
    const picked = distinct.slice(0, KEYWORD_COUNT);
    step.record({
      why: `Took the first ${picked.length} distinctive words of the title`,
      whyJson: { strategy: 'title_words', skipped: words.length - picked.length },
      input: { asin: source.asin, title: source.title, category: source.category },
      output: { keywords: picked },
      metrics: { prompt_tokens: words.length, completion_tokens: picked.length, temperature: 0 },
    });
    return picked;
  });

  // 2. Search: any product whose title shares a keyword.
  const hits = await xray.step('search', { name: 'search_catalog' }, async (step) => {
    const found = CATALOG.filter((product) => tokens(product.title).some(
      (word) => keywords.includes(word)));
    step.record({
      candidatesOut: found.length,
      why: `${found.length} of ${CATALOG.length} catalog products share a keyword`,
      whyJson: { match: 'any_keyword_in_title', catalog_size: CATALOG.length },
      input: { keywords },
      output: { asins: found.map((product) => product.asin) },
      metrics: { catalog_size: CATALOG.length },
    });
    return found;
  });

  // 3. Filter: same category, comparable price, decent rating, not the product itself.
  const [low, high] = PRICE_BAND.map((factor) => round4(source.price * factor));
  const kept = await xray.step('filter', { name: 'filter_candidates' }, async (step) => {
    const rejected = {};
    const survivors = [];
    for (const product of hits) {
      let reason = null;
      if (product.asin === source.asin) reason = 'self_match';
      else if (product.category !== source.category) reason = 'category_mismatch';
      else if (product.price < low || product.price > high) reason = 'price_out_of_range';
      else if (product.rating < MIN_RATING) reason = 'rating_below_min';
      if (reason) rejected[reason] = (rejected[reason] ?? 0) + 1;
      else survivors.push(product);
    }
    const reasons = Object.entries(rejected).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const dropped = hits.length - survivors.length;
    step.record({
      candidatesIn: hits.length,
      candidatesOut: survivors.length,
      why: `Dropped ${dropped} of ${hits.length} candidates`
        + (reasons.length ? `, mostly ${reasons[0][0]} (${reasons[0][1]})` : ''),
      whyJson: { top_reject_reasons: Object.fromEntries(reasons) },
      input: { category: source.category, price_band: [low, high], min_rating: MIN_RATING },
      output: { asins: survivors.map((product) => product.asin) },
      metrics: { price_low: low, price_high: high, min_rating: MIN_RATING },
    });
    return survivors;
  });

  // 4. Rank: keyword overlap, rating and price closeness, best first.
  const ranked = await xray.step('rank', { name: 'rank_candidates' }, async (step) => {
    const scored = kept.map((product) => {
      const overlap = tokens(product.title).filter((word) => keywords.includes(word));
      const score = WEIGHTS.overlap * (new Set(overlap).size / keywords.length)
        + WEIGHTS.rating * (product.rating / 5)
        + WEIGHTS.price * (1 - Math.min(1, Math.abs(product.price - source.price) / source.price));
      return { product, score: round4(score) };
    }).sort((a, b) => b.score - a.score || (a.product.asin < b.product.asin ? -1 : 1));
    const top = scored.slice(0, TOP_K);
    step.record({
      candidatesIn: kept.length,
      candidatesOut: top.length,
      why: top.length ? `Kept the top ${top.length} by score; best ${top[0].score}`
        : 'Nothing to rank',
      whyJson: { weights: WEIGHTS, top_k: TOP_K },
      output: { ranked: top.map(({ product, score }) => ({ asin: product.asin, score })) },
      metrics: top.length ? { top_score: top[0].score } : {},
    });
    return top;
  });

  // 5. Pick: a deterministic stand-in for an LLM that chooses among the finalists.
  return xray.step('llm', { name: 'pick_competitor' }, async (step) => {
    step.record({ candidatesIn: ranked.length, input: { finalists: ranked.map((r) => r.product.asin) } });
    if (!ranked.length) {
      throw new NoCompetitorFoundError(`no candidate left to pick for ${source.asin}`);
    }
    const [best, runnerUp] = ranked;
    step.record({
      candidatesOut: 1,
      why: `Picked ${best.product.asin}, the highest score (${best.score})`,
      whyJson: {
        rule: 'highest_score',
        runner_up: runnerUp ? runnerUp.product.asin : null,
        margin: round4(best.score - (runnerUp?.score ?? 0)),
      },
      output: { competitor: { ...summary(best.product), score: best.score } },
      metrics: { score: best.score },
    });
    return best;
  });
}

// --- command line ----------------------------------------------------------------------

function parseArgs(argv) {
  if (argv.some((arg) => arg === '-h' || arg === '--help')) {
    console.log('usage: node pipeline.mjs [ASIN[=RUN_ID] ...]\n'
      + `  default ASINs: ${DEFAULT_ASINS.join(' ')}; run id default: js-<asin>-<random>\n`
      + `  catalog: ${CATALOG.map((product) => product.asin).join(' ')}`);
    process.exit(0);
  }
  const bad = argv.find((arg) => arg.startsWith('-') || /^=|=$/.test(arg));
  if (bad) {
    console.error(`pipeline.mjs: bad argument ${JSON.stringify(bad)}; see --help`);
    process.exit(2);
  }
  return (argv.length ? argv : DEFAULT_ASINS).map((arg) => {
    const [entity, runId] = arg.split(/=(.*)/s, 2);
    return { entity, runId: runId || `js-${entity}-${randomUUID().slice(0, 8)}` };
  });
}

async function main() {
  const runs = parseArgs(process.argv.slice(2));
  const provider = makeProvider();
  xray.configure({ transport: otelTransport({ tracerProvider: provider,
                                             tracerName: SERVICE_NAME }) });
  let failed = 0;
  try {
    for (const { entity, runId } of runs) {
      try {
        const best = await xray.run(PIPELINE, { runId, entity }, () => findCompetitor(entity));
        console.log(`${runId}: ${entity} -> ${best.product.asin} `
          + `"${best.product.title}" (score ${best.score})`);
      } catch (error) {
        failed += 1;
        console.log(`${runId}: ${entity} -> failed: ${error.name}: ${error.message}`);
      }
    }
  } finally {
    // Flush the batch processor and close the exporter before the process exits. An export
    // that failed after the exporter's retries rejects here: report it, but X-Ray is best
    // effort, so it does not change the pipeline's exit code.
    try {
      await provider.shutdown();
    } catch (error) {
      console.error(`pipeline.mjs: spans not exported: ${error?.message ?? error}`);
    }
  }
  return failed ? 1 : 0;
}

process.exitCode = await main();
