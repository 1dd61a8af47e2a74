"""Per-brand crawl stats: `fic/brand/<partition key>/pages` and `fic/brand/<partition key>/dropped/<reason>`.

Kept in Scrapy's stats collector beside the run's totals, so `scrapy crawl`'s stats dump, the stats file and the
progress the Pipes extension streams all show them; the Dagster asset turns them into each brand partition's
metadata. Partition keys are [a-z0-9-], so they never contain the "/" that separates the parts of a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PREFIX = "fic/brand/"


def pages_key(brand_slug: str) -> str:
    return f"{PREFIX}{brand_slug}/pages"


def dropped_key(brand_slug: str, reason: str) -> str:
    return f"{PREFIX}{brand_slug}/dropped/{reason}"


def per_brand(stats: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{slug: {"pages": n, "dropped": total, "dropped_by_reason": {reason: n}}} from a crawl's stats."""
    brands: dict[str, dict[str, Any]] = {}
    for key, value in stats.items():
        if not key.startswith(PREFIX) or not isinstance(value, int):
            continue
        slug, _, what = key[len(PREFIX):].partition("/")
        brand = brands.setdefault(slug, empty())
        if what == "pages":
            brand["pages"] = value
        elif what.startswith("dropped/"):
            brand["dropped_by_reason"][what[len("dropped/"):]] = value
            brand["dropped"] += value
    return brands


def empty() -> dict[str, Any]:
    return {"pages": 0, "dropped": 0, "dropped_by_reason": {}}
