"""What both spiders share: the shop URL, the render mode and the settings that follow from them."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Self
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import Crawler
from scrapy.exceptions import ScrapyDeprecationWarning

from fic_crawler import config, render


class ShopSpider(scrapy.Spider):
    """Spider arguments: `shop_url` (default FIC_SHOP_URL) and `render` (none|playwright|splash, default FIC_RENDER)."""

    shop_url: str
    render: str

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        settings = crawler.settings
        shop_url = (kwargs.pop("shop_url", None) or settings.get("FIC_SHOP_URL") or config.env("FIC_SHOP_URL")).rstrip("/")
        mode = (kwargs.pop("render", None) or settings.get("FIC_RENDER") or "none").strip().lower()
        if urlsplit(shop_url).scheme not in ("http", "https") or not urlsplit(shop_url).hostname:
            raise ValueError(f"shop URL {shop_url!r} is not an http(s) URL (FIC_SHOP_URL or -a shop_url=)")
        # Settings are still mutable here (Scrapy freezes them after the spider is built), and the render
        # mode must pick download handlers and middlewares before the engine exists.
        config.configure_crawl(settings, shop_url, mode)
        if mode == "splash":
            # scrapy-splash 0.11 calls a deprecated Scrapy method on every request: one log line each.
            warnings.filterwarnings("ignore", category=ScrapyDeprecationWarning, module=r"scrapy_splash\.")
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.shop_url = shop_url
        spider.render = mode
        spider.allowed_domains = allowed_domains(shop_url, mode, settings.get("SPLASH_URL"))
        return spider

    def shop_page(self, path: str) -> str:
        return f"{self.shop_url}/{path.lstrip('/')}"

    def page_request(self, url: str, callback: Callable, **kwargs: Any) -> scrapy.Request:
        return render.page_request(url, callback, self.render, **kwargs)

    def count(self, key: str, amount: int = 1) -> None:
        self.crawler.stats.inc_value(key, amount)

    def note_crawl(self) -> None:
        """What this crawl ran against, in the stats file the Dagster asset reads."""
        self.crawler.stats.set_value("fic/shop_url", self.shop_url)
        self.crawler.stats.set_value("fic/render", self.render)


def allowed_domains(shop_url: str, mode: str, splash_url: str | None) -> list[str]:
    """The shop only; plus the Splash host, because scrapy-splash re-schedules requests to its endpoint."""
    hosts = [urlsplit(shop_url).hostname]
    if mode == "splash" and splash_url:
        hosts.append(urlsplit(splash_url).hostname)
    return [host for host in hosts if host]
