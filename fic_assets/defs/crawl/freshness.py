"""How fresh each brand's crawl is: the windows of the weekly recrawl, and the judgement of every brand partition.

Dagster's freshness policy on `pieces` (CRAWL_FRESHNESS) is judged on the asset's latest materialization, any
brand: it flags a crawl that stopped altogether, not one brand left behind while the others are crawled. The
`pieces_fresh_per_brand` check (assets.py) judges each brand partition with judge_crawl_freshness below, on the
same windows, from DuckDB `brands.last_crawled` (the last crawl whose listing answered).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg

# The weekly recrawl_schedule crawls every brand on Mondays: a week without a crawl is late (warn), a week and a
# day means a recrawl was missed (fail).
WARN_AFTER = timedelta(days=7)
FAIL_AFTER = timedelta(days=8)
CRAWL_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=FAIL_AFTER, warn_window=WARN_AFTER)

# A brand judged stale lists at most this many names in the check's description (the metadata has them all).
DESCRIBED_BRANDS = 20


def days(delta: timedelta) -> float:
    return round(delta.total_seconds() / 86400, 1)


@dataclass(frozen=True)
class BrandFreshness:
    slug: str
    name: str | None           # the shop's display name; None when DuckDB does not know the partition
    last_crawled: datetime | None
    age: timedelta | None      # since the last crawl, or, never crawled, since the brand was found; None: unknown
    level: str                 # fresh, warn, fail

    def as_metadata(self) -> dict:
        return {"slug": self.slug, "name": self.name,
                "last_crawled": self.last_crawled.isoformat() if self.last_crawled else None,
                "days_since": days(self.age) if self.age is not None else None, "level": self.level}

    def describe(self) -> str:
        if self.name is None:
            return f"{self.slug} (not in DuckDB `brands`)"
        if self.last_crawled is None:
            return f"{self.slug} ({self.name}, never crawled, found {days(self.age)} days ago)"
        return f"{self.slug} ({self.name}, last crawled {days(self.age)} days ago)"


@dataclass(frozen=True)
class CrawlFreshness:
    checked_at: datetime
    brands: tuple[BrandFreshness, ...]
    not_judged: tuple[dict, ...] = field(default=())  # delisted or gone brands: no crawl is expected any more

    @property
    def stale(self) -> list[BrandFreshness]:
        return [brand for brand in self.brands if brand.level != "fresh"]

    @property
    def passed(self) -> bool:
        return not self.stale

    @property
    def severity(self) -> dg.AssetCheckSeverity:
        failing = any(brand.level == "fail" for brand in self.brands)
        return dg.AssetCheckSeverity.ERROR if failing else dg.AssetCheckSeverity.WARN

    def description(self) -> str:
        if not self.brands:
            return "no brand partition to judge"
        if self.passed:
            return f"all {len(self.brands)} brands crawled within {days(WARN_AFTER):g} days"
        stale = sorted(self.stale, key=lambda brand: (brand.level != "fail", brand.slug))
        named = "; ".join(brand.describe() for brand in stale[:DESCRIBED_BRANDS])
        more = f"; and {len(stale) - DESCRIBED_BRANDS} more" if len(stale) > DESCRIBED_BRANDS else ""
        return (f"{len(stale)} of {len(self.brands)} brands not crawled within {days(WARN_AFTER):g} days "
                f"(error after {days(FAIL_AFTER):g}): {named}{more}")

    def metadata(self) -> dict:
        return {
            "stale_brands": dg.MetadataValue.json([brand.as_metadata() for brand in self.stale]),
            "never_crawled": dg.MetadataValue.json([brand.as_metadata() for brand in self.brands if brand.last_crawled is None]),
            "not_judged": dg.MetadataValue.json(list(self.not_judged)),
            "brands_judged": len(self.brands),
            "brands_fresh": len(self.brands) - len(self.stale),
            "warn_after_days": days(WARN_AFTER),
            "fail_after_days": days(FAIL_AFTER),
            "checked_at": self.checked_at.isoformat(),
        }


def level(age: timedelta | None) -> str:
    if age is None or age > FAIL_AFTER:
        return "fail"
    return "warn" if age > WARN_AFTER else "fresh"


def judge_crawl_freshness(partitions: Sequence[str], stored: Iterable[Mapping], now: datetime) -> CrawlFreshness:
    """Every brand partition against the windows, from its `brands` row (warehouse.brand_crawl_times).

    A brand never crawled counts from when it was found (its first crawl is requested at once; a week later it is
    as late as a missed recrawl). A partition DuckDB does not know cannot say when it was crawled: it fails. A
    brand the shop no longer lists (delisted) or whose listing is gone (404/410) is not crawled any more: it is
    listed under not_judged instead of failing the check for ever.
    """
    rows = {row["slug"]: row for row in stored}
    judged, not_judged = [], []
    for slug in partitions:
        row = rows.get(slug)
        if row is None:
            judged.append(BrandFreshness(slug, None, None, None, "fail"))
            continue
        if row.get("delisted_at") is not None or row.get("gone_at") is not None:
            why = "gone (its listing answers 404/410)" if row.get("gone_at") is not None else "delisted from the brand index"
            not_judged.append({"slug": slug, "name": row["name"], "why": why})
            continue
        since = row["last_crawled"] or row["first_seen"]
        age = now - since
        judged.append(BrandFreshness(slug, row["name"], row["last_crawled"], age, level(age)))
    return CrawlFreshness(checked_at=now, brands=tuple(judged), not_judged=tuple(not_judged))
