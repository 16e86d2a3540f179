"""Competitor search, instrumented with X-Ray: find a competitor product for an ASIN.

keyword generation (an LLM stand-in) → search (5,000 candidates at most) → filter (with
a reason for every rejection) → rank → final selection (an LLM stand-in). Each step is
an ``@xray.step``; the raw search response and the full prompt are attached as
artifacts.

A polluted run is one whose keyword generation emits a stray keyword ("stand"): the
search then fills up with laptop stands, the filter throws away 99% of candidates for
``category_mismatch``, and the pick is a laptop stand. That is the bug the X-Ray demo
traces back to its cause.

Run it against a collector: ``python examples/competitor_search/pipeline.py``
(``OTEL_EXPORTER_OTLP_ENDPOINT`` says where the collector is; default localhost:4317).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from catalog import Product, build_catalog

import xray_otel as xray

PIPELINE = "competitor_search"
MAX_RESULTS = 5000
MIN_RATING = 3.0
PRICE_BAND = 0.6  # a competitor costs within ±60% of the product


@dataclass(frozen=True)
class Query:
    asin: str
    title: str
    category: str
    price: float


@xray.step("llm", name="generate_keywords")
def generate_keywords(query: Query, polluted: bool) -> list[str]:
    """Deterministic stand-in for an LLM prompt that writes search keywords."""
    prompt = (f"You are a shopping assistant. Write search keywords for products that "
              f"compete with: {query.title!r} (category {query.category}, "
              f"price ${query.price}). Return a JSON list of keywords.")
    keywords = ["phone case", "slim case", "case"]
    if polluted:  # the model latched onto "kickstand" in the title
        keywords = ["phone case", "phone stand", "stand"]
    xray.record(input=asdict(query), output=keywords,
                why=f"Generated {len(keywords)} keywords from the product title",
                metrics={"prompt_tokens": len(prompt.split()), "temperature": 0.7},
                artifacts={"prompt": prompt})
    return keywords


@xray.step("search", name="search_candidates")
def search_candidates(keywords: list[str], catalog: list[Product]) -> list[Product]:
    """Keyword search over the catalog, most matching keywords first, 5,000 at most."""
    scored = [(sum(k in p.title.lower() for k in keywords), p) for p in catalog]
    hits = sorted((s for s in scored if s[0] > 0),
                  key=lambda s: (-s[0], -s[1].rating, s[1].asin))
    results = [p for _, p in hits[:MAX_RESULTS]]
    distribution = Counter(p.category for p in results)
    xray.record(candidates_in=len(catalog), candidates_out=len(results),
                why=f"{len(results)} products matched {len(keywords)} keywords",
                why_json={"keywords": keywords,
                          "category_distribution": dict(distribution.most_common())},
                artifacts={"raw_response": json.dumps([asdict(p) for p in results])})
    return results


def reject_reason(candidate: Product, query: Query) -> str | None:
    cross_listed = "phone" in candidate.title.lower().split()
    if candidate.category != query.category and not cross_listed:
        return "category_mismatch"
    if abs(candidate.price - query.price) > PRICE_BAND * query.price:
        return "price_out_of_range"
    if candidate.rating < MIN_RATING:
        return "low_rating"
    return None


@xray.step("filter", name="filter_candidates")
def filter_candidates(candidates: list[Product], query: Query) -> list[Product]:
    """Keep same-category products at a comparable price with decent ratings."""
    reasons = Counter(reject_reason(c, query) for c in candidates)
    kept = [c for c in candidates if reject_reason(c, query) is None]
    rejected = {k: v for k, v in reasons.most_common() if k is not None}
    dropped = 1 - len(kept) / len(candidates) if candidates else 0.0
    xray.record(candidates_in=len(candidates), candidates_out=len(kept),
                why=f"Dropped {dropped:.0%} of candidates (category, price ±60%, "
                    f"rating ≥ {MIN_RATING})",
                why_json={"top_reject_reasons": rejected,
                          "thresholds": {"min_rating": MIN_RATING, "price_band": PRICE_BAND}})
    return kept


@xray.step("rank", name="rank_candidates")
def rank_candidates(candidates: list[Product], keywords: list[str]) -> list[Product]:
    """Score by keyword overlap, then rating; keep the top 10."""
    def score(p: Product) -> float:
        return sum(k in p.title.lower() for k in keywords) + p.rating / 10

    ranked = sorted(candidates, key=lambda p: (-score(p), p.asin))[:10]
    xray.record(candidates_in=len(candidates), candidates_out=len(ranked),
                why="Top 10 by keyword overlap, then rating",
                output=[{"asin": p.asin, "title": p.title, "score": round(score(p), 2)}
                        for p in ranked[:3]])
    return ranked


@xray.step("llm", name="select_best")
def select_best(candidates: list[Product], query: Query) -> Product | None:
    """Stand-in for an LLM that picks the single best competitor among the top ranked."""
    choice = candidates[0] if candidates else None
    xray.record(candidates_in=len(candidates), candidates_out=1 if choice else 0,
                why=f"Picked {choice.title!r}" if choice else "Nothing left to pick",
                output=asdict(choice) if choice else None)
    return choice


def find_competitor(query: Query, catalog: list[Product], polluted: bool = False
                    ) -> tuple[str, Product | None]:
    """One run of the pipeline; returns the run id and the chosen competitor.

    Polluted runs stand for a release whose keyword prompt changed: they record
    version "v2", the others "v1", so the two can be compared (``xray diff``).
    """
    with xray.run(PIPELINE, entity=query.asin, version="v2" if polluted else "v1") as run:
        keywords = generate_keywords(query, polluted)
        candidates = search_candidates(keywords, catalog)
        kept = filter_candidates(candidates, query)
        ranked = rank_candidates(kept, keywords)
        return run.id, select_best(ranked, query)


def sample_queries(count: int) -> list[Query]:
    models = ("Pixel 8", "iPhone 15", "Galaxy S24")
    return [Query(f"B0CASE{i:04d}", f"Slim phone case with kickstand for {models[i % 3]}",
                  "phone_cases", 19.99 + i % 5) for i in range(count)]


if __name__ == "__main__":
    xray.configure(service_name="competitor-finder")
    products = build_catalog()
    for i, q in enumerate(sample_queries(4)):
        run_id, pick = find_competitor(q, products, polluted=i % 2 == 1)
        print(f"{run_id}  {q.asin}  → {pick.title if pick else None}")
    xray.shutdown()
