"""What the Dagster assets that run Scrapy in a subprocess learn from it: the stats as a JSON file at the end, and,
when Dagster started the crawl as a Pipes process, its progress in the run's log while it crawls."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any

from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, open_dagster_pipes
from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.statscollectors import StatsCollector
from twisted.internet import task

from fic_crawler import brand_stats


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def write_stats(path: Path, stats: dict[str, Any]) -> None:
    """Write whole or not at all: the reader must never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(stats, default=_json_default, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(partial, path)


class StatsFile:
    """On spider close, write the crawl stats to FIC_STATS_FILE (setting or environment); off when unset."""

    def __init__(self, path: Path, stats: StatsCollector) -> None:
        self.path = path
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StatsFile:
        path = crawler.settings.get("FIC_STATS_FILE")
        if not path:
            raise NotConfigured  # without a message: Scrapy would log a warning on every plain crawl
        extension = cls(Path(path), crawler.stats)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_closed(self, spider: Spider, reason: str) -> None:
        stats = dict(self.stats.get_stats())
        # CoreStats sets finish_reason in its own spider_closed handler; do not depend on handler order.
        stats.setdefault("finish_reason", reason)
        write_stats(self.path, stats)


class PipesProgress:
    """In a Dagster Pipes process, the crawl's progress in the Dagster run's log while it crawls.

    Every FIC_PROGRESS_SECONDS one line: pages, items (by the parser path that read them), drops by reason, and the brands that moved since the last
    line with their own counts; one last line with every brand when the spider closes. Off (NotConfigured) for a plain
    `scrapy crawl`, which Dagster did not start: Scrapy's own LogStats covers that.
    """

    MAX_BRANDS_PER_LINE = 20

    def __init__(self, pipes: PipesContext, stats: StatsCollector, interval: float) -> None:
        self.pipes = pipes
        self.stats = stats
        self.interval = interval
        self.items_by_brand: Counter[str] = Counter()
        self.reported: dict[str, tuple] = {}
        self.loop: task.LoopingCall | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PipesProgress:
        if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
            raise NotConfigured
        extension = cls(open_dagster_pipes(), crawler.stats, crawler.settings.getfloat("FIC_PROGRESS_SECONDS", 5.0))
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self, spider: Spider) -> None:
        self.pipes.log.info(f"crawl started: scrapy crawl {spider.name}, progress every {self.interval:g} s")
        self.loop = task.LoopingCall(self.report)
        self.loop.start(self.interval, now=False)

    def item_scraped(self, item: Any, spider: Spider) -> None:
        slug = item.get("brand_slug") if hasattr(item, "get") else None
        if slug:
            self.items_by_brand[slug] += 1

    def report(self, final: str | None = None) -> None:
        stats = self.stats.get_stats()
        dropped = {key[len("fic/dropped/"):]: value for key, value in sorted(stats.items()) if key.startswith("fic/dropped/")}
        reasons = f" ({', '.join(f'{reason} {n}' for reason, n in dropped.items())})" if dropped else ""
        parsed = {key[len("fic/parsed_by/"):]: value for key, value in sorted(stats.items()) if key.startswith("fic/parsed_by/")}
        read_by = f" (read by {', '.join(f'{path} {n}' for path, n in parsed.items())})" if parsed else ""
        line = (f"{stats.get('response_received_count', 0)} pages, {stats.get('item_scraped_count', 0)} items{read_by}, "
                f"{sum(dropped.values())} dropped{reasons}")
        moved = []
        for slug, brand in sorted(brand_stats.per_brand(stats).items()):
            counts = (brand["pages"], self.items_by_brand[slug], brand["dropped"])
            if final or self.reported.get(slug) != counts:
                self.reported[slug] = counts
                moved.append(f"{slug} {counts[0]} pages / {counts[1]} items / {counts[2]} dropped")
        if moved:
            more = f" and {len(moved) - self.MAX_BRANDS_PER_LINE} more" if len(moved) > self.MAX_BRANDS_PER_LINE else ""
            line += "; by brand: " + ", ".join(moved[: self.MAX_BRANDS_PER_LINE]) + more
        self.pipes.log.info(f"crawl finished ({final}): {line}" if final else f"crawl progress: {line}")

    def spider_closed(self, spider: Spider, reason: str) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.report(final=reason)
        self.pipes.close()
