"""Crawl stats to a JSON file, for the Dagster asset that runs Scrapy in a subprocess."""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.statscollectors import StatsCollector


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
