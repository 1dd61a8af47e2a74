"""Item checks. Every drop is counted as `fic/dropped/<reason>` (and per brand, fic_crawler.brand_stats) so the
Dagster asset can say why."""

from __future__ import annotations

from typing import Any

from itemadapter import ItemAdapter
from scrapy import Spider
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.statscollectors import StatsCollector

from fic_crawler import brand_stats
from fic_crawler.items import BrandItem, ProductItem


def product_problem(item: ItemAdapter) -> str | None:
    """Why a product item is useless to the platform, or None. A missing price is allowed (sold out)."""
    for field in ("name", "brand", "brand_slug"):
        if not item.get(field):
            return f"missing_{field}"
    if not item.get("images"):
        return "no_images"
    return None


def item_key(item: Any) -> str | None:
    if isinstance(item, ProductItem):
        return f"product:{item.get('item_id')}"
    if isinstance(item, BrandItem):
        # The shop's path is the brand's identity: two paths sharing a slug are two brands, not a duplicate.
        return f"brand:{item.get('path') or item.get('slug')}"
    return None


class _StatsPipeline:
    def __init__(self, stats: StatsCollector) -> None:
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> _StatsPipeline:
        return cls(crawler.stats)

    def drop(self, item: Any, reason: str, detail: str, log_level: str = "WARNING") -> DropItem:
        self.stats.inc_value(f"fic/dropped/{reason}")
        if isinstance(item, ProductItem) and item.get("brand_slug"):
            self.stats.inc_value(brand_stats.dropped_key(item["brand_slug"], reason))
        return DropItem(f"{reason}: {detail}", log_level=log_level)


class ValidationPipeline(_StatsPipeline):
    def process_item(self, item: Any, spider: Spider) -> Any:
        if not isinstance(item, ProductItem):
            return item
        adapter = ItemAdapter(item)
        problem = product_problem(adapter)
        if problem:
            raise self.drop(item, problem, str(adapter.get("url")))
        if adapter.get("price") is None:
            self.stats.inc_value("fic/warnings/missing_price")
        return item


class DedupePipeline(_StatsPipeline):
    """One item per product (item_id) or brand (shop path) per crawl: listings repeat products across pages."""

    def __init__(self, stats: StatsCollector) -> None:
        super().__init__(stats)
        self.seen: set[str] = set()

    def process_item(self, item: Any, spider: Spider) -> Any:
        key = item_key(item)
        if key is None:
            return item
        if key in self.seen:
            # Expected on a live shop (a product moves between pages mid-crawl), so not a warning.
            raise self.drop(item, "duplicate", key, log_level="INFO")
        self.seen.add(key)
        return item
