"""Page requests per render mode: plain Scrapy, a Playwright browser, or a Splash service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import scrapy

SPLASH_ARGS = {"wait": 0.5}
HEAVY_RESOURCES = frozenset({"image", "media", "font"})


def page_request(url: str, callback: Callable, render: str, **kwargs: Any) -> scrapy.Request:
    """A request for a shop page (listing, product, brand index) rendered as FIC_RENDER says."""
    if render == "playwright":
        meta = {**kwargs.pop("meta", {}), "playwright": True}
        return scrapy.Request(url, callback=callback, meta=meta, **kwargs)
    if render == "splash":
        # Imported here so render=none never loads scrapy-splash.
        from scrapy_splash import SplashRequest

        return SplashRequest(url, callback=callback, endpoint="render.html", args=dict(SPLASH_ARGS), **kwargs)
    return scrapy.Request(url, callback=callback, **kwargs)


def abort_heavy_request(request: Any) -> bool:
    """PLAYWRIGHT_ABORT_REQUEST: the parser needs the DOM, not the pictures."""
    return request.resource_type in HEAVY_RESOURCES
