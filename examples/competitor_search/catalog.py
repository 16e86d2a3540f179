"""A synthetic product catalog: deterministic, with categories, prices and ratings.

Stands in for a real product search index so the example pipeline runs anywhere.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "phone_cases": ("phone case", "slim case", "rugged case", "wallet case", "clear case"),
    "laptop_stands": ("laptop stand", "adjustable stand", "desk stand", "aluminum stand",
                      "folding stand"),
    "chargers": ("usb-c charger", "wall charger", "fast charger", "wireless charger"),
    "screen_protectors": ("screen protector", "tempered glass", "privacy screen"),
    "headphones": ("wireless earbuds", "over-ear headphones", "noise cancelling headphones"),
}
BRANDS = ("Acme", "Orbit", "Nimbus", "Vertex", "Kite", "Lumen", "Quartz", "Harbor")
MODELS = ("Pixel 8", "iPhone 15", "Galaxy S24", "MacBook Air", "ThinkPad", "universal")
SIZES = {"phone_cases": 1800, "laptop_stands": 5200, "chargers": 900,
         "screen_protectors": 700, "headphones": 600}


@dataclass(frozen=True)
class Product:
    asin: str
    title: str
    category: str
    price: float
    rating: float


def build_catalog(seed: int = 7) -> list[Product]:
    """About 9,000 products; laptop stands are the largest category, as in real marketplaces."""
    rng = random.Random(seed)
    products: list[Product] = []
    for category, count in SIZES.items():
        for i in range(count):
            words = rng.choice(CATEGORY_WORDS[category])
            model = rng.choice(MODELS)
            # A few stands are cross-listed for phones: the filter lets those through.
            if category == "laptop_stands" and rng.random() < 0.01:
                words = "phone stand and laptop stand"
            title = f"{rng.choice(BRANDS)} {words} for {model}"
            price = round(rng.uniform(5, 80), 2)
            rating = round(rng.uniform(2.5, 5.0), 1)
            products.append(Product(f"B0{category[:2].upper()}{i:05d}", title, category,
                                    price, rating))
    return products
