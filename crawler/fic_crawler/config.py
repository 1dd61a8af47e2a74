"""Environment settings and the per-crawl Scrapy settings that follow from them.

The crawler stays a standalone Scrapy project, so it reads the same FIC_* environment variables as
fic_assets/platform/settings.py (same names, same defaults) instead of importing it.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any
from urllib.parse import urlsplit

from scrapy.settings import BaseSettings

ENV_DEFAULTS: dict[str, str] = {
    "FIC_SHOP_URL": "http://127.0.0.1:8765",
    "FIC_BRAND_INDEX_PATH": "/brands/",
    "FIC_MAX_PAGES": "0",
    "FIC_RENDER": "none",
    "FIC_SPLASH_URL": "http://127.0.0.1:8050",
    "FIC_HTTP_CACHE": "false",
    "FIC_STATS_FILE": "",
    "FIC_PROGRESS_SECONDS": "5",
    "FIC_CHROMIUM": "/usr/bin/chromium",
    "FIC_USER_AGENT": "fic-crawler/0.1 (fashion image research crawler; obeys robots.txt)",
}

RENDER_MODES = ("none", "playwright", "splash")

PLAYWRIGHT_HANDLER = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
ASYNCIO_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def env(name: str) -> str:
    return os.environ.get(name) or ENV_DEFAULTS[name]


def truthy(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def politeness(shop_url: str) -> dict[str, Any]:
    """Request pacing for the shop.

    A real shop gets one request at a time-ish with AutoThrottle backing off when it slows down. The demo
    shop on a loopback address is our own process: there is nobody to be polite to, and the real-site
    pacing would stretch a test crawl of a few hundred pages into minutes.
    """
    if is_loopback(shop_url):
        return {
            "DOWNLOAD_DELAY": 0,
            "AUTOTHROTTLE_START_DELAY": 0,
            "AUTOTHROTTLE_TARGET_CONCURRENCY": 16.0,
            "CONCURRENT_REQUESTS_PER_DOMAIN": 16,
        }
    return {
        "DOWNLOAD_DELAY": 1.0,
        "AUTOTHROTTLE_START_DELAY": 1.0,
        "AUTOTHROTTLE_TARGET_CONCURRENCY": 1.0,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 4,
    }


def render_settings(mode: str, splash_url: str, chromium: str) -> dict[str, Any]:
    """Scrapy settings for a JavaScript rendering mode; "none" loads neither scrapy-playwright nor scrapy-splash."""
    if mode == "playwright":
        return {
            "DOWNLOAD_HANDLERS": {"http": PLAYWRIGHT_HANDLER, "https": PLAYWRIGHT_HANDLER},
            # Scrapy 2.13's default already; stated because scrapy-playwright cannot run on another reactor.
            "TWISTED_REACTOR": ASYNCIO_REACTOR,
            "PLAYWRIGHT_BROWSER_TYPE": "chromium",
            # Playwright's own browser download does not work here; Debian's chromium does.
            "PLAYWRIGHT_LAUNCH_OPTIONS": {"executable_path": chromium, "args": CHROMIUM_ARGS, "headless": True},
            # The parser reads the DOM only: images, fonts and media would only load the shop.
            "PLAYWRIGHT_ABORT_REQUEST": "fic_crawler.render.abort_heavy_request",
            "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": 30_000,
        }
    if mode == "splash":
        # From the scrapy-splash 0.11 README; its SplashAwareDupeFilter is deprecated in favour of the
        # fingerprinter, which the default dupefilter uses.
        return {
            "SPLASH_URL": splash_url,
            "DOWNLOADER_MIDDLEWARES": {
                "scrapy_splash.SplashCookiesMiddleware": 723,
                "scrapy_splash.SplashMiddleware": 725,
                "scrapy.downloadermiddlewares.httpcompression.HttpCompressionMiddleware": 810,
            },
            "SPIDER_MIDDLEWARES": {"scrapy_splash.SplashDeduplicateArgsMiddleware": 100},
            "REQUEST_FINGERPRINTER_CLASS": "scrapy_splash.SplashRequestFingerprinter",
            "HTTPCACHE_STORAGE": "scrapy_splash.SplashAwareFSCacheStorage",
        }
    if mode == "none":
        return {}
    raise ValueError(f"unknown render mode {mode!r}: use one of {', '.join(RENDER_MODES)} (FIC_RENDER or -a render=)")


def configure_crawl(settings: BaseSettings, shop_url: str, render: str) -> None:
    """Apply the shop's pacing and the render mode at spider priority: `-s NAME=value` still wins."""
    splash_url = settings.get("FIC_SPLASH_URL") or env("FIC_SPLASH_URL")
    chromium = settings.get("FIC_CHROMIUM") or env("FIC_CHROMIUM")
    for name, value in {**politeness(shop_url), **render_settings(render, splash_url, chromium)}.items():
        if isinstance(value, dict) and name in settings and isinstance(settings[name], BaseSettings):
            # Merge component dicts (middlewares) rather than replace the project's own entries.
            settings[name].update(value, priority="spider")
        else:
            settings.set(name, value, priority="spider")
    # Spider arguments are the most specific choice, so they outrank `-s FIC_...` too.
    settings.set("FIC_SHOP_URL", shop_url, priority="cmdline")
    settings.set("FIC_RENDER", render, priority="cmdline")
