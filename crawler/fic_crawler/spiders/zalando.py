"""Brand listings -> product pages -> ProductItems.

    scrapy crawl zalando -a brands=levis,jack-jones [-a category=women-clothing] [-a max_pages=2]
                         [-a brand_keys='{"LEVIS": "levis-1f2e3d"}']
                         [-a shop_url=https://www.zalando.de] [-a render=playwright] -O items.jsonl
    scrapy crawl zalando -a product_urls=https://www.zalando.de/...-le221a000-k11.html -O items.jsonl

`brand_keys` (JSON, brand path -> partition key) names the partition of a path whose slug collides with
another brand's; other paths are keyed by their slug. `product_urls` crawls single product pages (re-checks,
the render tests); their brand_slug is the slug of the page's brand link path.

How each brand's listing answered is in the stats: `fic/listing/<partition key>` = `ok`, `http_<status>`,
`download_error` (refused, timed out, after retries), `ignored` (robots.txt) or `not_text`; a brand without
the key was never requested. The Dagster asset fails or marks brands from it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, Self
from urllib.parse import quote, unquote

import scrapy
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from fic_crawler import brand_stats
from fic_crawler.items import ProductItem
from fic_crawler.items import brand_slug as slug_of
from fic_crawler.parsing import NoProductError, brand_path, category_from_listing, page_number, pagination_links, parse_product, product_links
from fic_crawler.spiders.base import ShopSpider


def split_brand_paths(brands: str) -> list[str]:
    """'levis, /jack-jones/' -> ['levis', 'jack-jones']: the shop's brand path segments, once each."""
    paths: dict[str, None] = {}
    for raw in brands.split(","):
        path = unquote(raw.strip().strip("/"))
        if path:
            paths.setdefault(path)
    return list(paths)


class ZalandoSpider(ShopSpider):
    name = "zalando"

    def __init__(
        self,
        brands: str = "",
        category: str = "",
        max_pages: str | int | None = None,
        product_urls: str = "",
        brand_keys: str = "",
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.brand_paths = split_brand_paths(brands)
        self.brand_keys = _brand_keys(brand_keys)
        self.product_urls = [url.strip() for url in product_urls.split(",") if url.strip()]
        if not self.brand_paths and not self.product_urls:
            raise ValueError("no brands to crawl: pass -a brands=levis,jack-jones (comma-separated brand paths)")
        self.category = category.strip().strip("/")
        # None: FIC_MAX_PAGES, read in from_crawler once settings exist.
        self.max_pages = _non_negative_int(max_pages, "max_pages") if max_pages not in (None, "") else None

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        if spider.max_pages is None:
            spider.max_pages = _non_negative_int(crawler.settings.get("FIC_MAX_PAGES", 0), "FIC_MAX_PAGES")
        return spider

    def listing_url(self, brand_path: str) -> str:
        segments = [self.category, brand_path] if self.category else [brand_path]
        return self.shop_page("/".join(quote(segment, safe="-_.~") for segment in segments) + "/")

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for request in self.start_requests():
            yield request

    def start_requests(self) -> Iterator[scrapy.Request]:
        # Kept (beside start) because scrapy-splash's spider middleware only implements
        # process_start_requests; Scrapy 2.13 refuses a start()-only spider with it enabled.
        self.note_crawl()
        for path in self.brand_paths:
            slug = self.brand_keys.get(path) or slug_of(path)
            if not slug:
                self.logger.error("brand path %r has no slug ([a-z0-9-]) and no brand_keys entry; skipped", path)
                self.count("fic/skipped/brand_without_slug")
                continue
            yield self.page_request(
                self.listing_url(path), self.parse_listing, errback=self.listing_failed,
                cb_kwargs={"brand_slug": slug, "first": True},
            )
        for url in self.product_urls:
            yield self.product_request(url, brand_slug=None, listing_url=None)

    def product_request(self, url: str, brand_slug: str | None, listing_url: str | None) -> scrapy.Request:
        cb_kwargs = {"brand_slug": brand_slug, "listing_url": listing_url}
        return self.page_request(url, self.parse_product, errback=self.product_failed, cb_kwargs=cb_kwargs)

    def listing_status(self, brand_slug: str, status: str) -> None:
        self.crawler.stats.set_value(f"fic/listing/{brand_slug}", status)

    def parse_listing(self, response: Response, brand_slug: str, first: bool = False) -> Iterator[scrapy.Request]:
        self.count("fic/pages/listing")
        self.count(brand_stats.pages_key(brand_slug))
        if not isinstance(response, TextResponse):
            self.logger.warning("listing %s is not a text page (%s)", response.url, type(response).__name__)
            if first:
                self.listing_status(brand_slug, "not_text")
            return
        if first:
            self.listing_status(brand_slug, "ok")
        links = product_links(response.selector, response.url)
        if not links:
            self.count("fic/warnings/empty_listing")
            self.logger.warning("no product links on listing %s", response.url)
        for link in links:
            yield self.product_request(link, brand_slug, response.url)
        for url in pagination_links(response.selector, response.url):
            if self.max_pages and page_number(url) > self.max_pages:
                continue
            # Every ?p=N link is followed; the duplicate filter drops the pages already requested.
            yield self.page_request(url, self.parse_listing, errback=self.listing_failed, cb_kwargs={"brand_slug": brand_slug})

    def listing_failed(self, failure: Failure) -> None:
        """A listing page that never arrived: for page 1 the brand's listing status, for later pages a warning."""
        request = failure.request
        reason = failure_reason(failure)
        if request.cb_kwargs.get("first"):
            self.listing_status(request.cb_kwargs["brand_slug"], reason)
            self.logger.error("brand listing %s failed (%s): %r", request.url, reason, failure.value)
        else:
            self.count(f"fic/warnings/listing_page_{reason}")
            self.logger.warning("listing page %s failed (%s): %r", request.url, reason, failure.value)

    def parse_product(self, response: Response, brand_slug: str | None, listing_url: str | None) -> Iterator[ProductItem]:
        self.count("fic/pages/product")
        if brand_slug is not None:
            self.count(brand_stats.pages_key(brand_slug))
        if not isinstance(response, TextResponse):
            self.drop_page(response.url, "no_product", f"not a text page ({type(response).__name__})", brand_slug)
            return
        notes: list[str] = []
        try:
            # The bytes as they came (scanned, not decoded): the DOM (response.selector) is built only if the
            # JSON-LD leaves something unsaid.
            product = parse_product(response.body, response.url, notes, selector=lambda: response.selector,
                                    encoding=response.encoding)
        except NoProductError as error:
            self.drop_page(response.url, error.kind, error.reason, brand_slug)
            return
        finally:
            for note in notes:  # a dropped page's notes too (an ld+json script too deep to read, ...)
                self.count(f"fic/parse/{note}")
        self.count(f"fic/parsed_by/{product['parsed_by']}")
        if brand_slug is None:
            path = brand_path(response.selector, response.url)
            brand_slug = self.brand_keys.get(path or "") or slug_of(path or product["brand"] or "")
        if product["category"] is None and (category := category_from_listing(listing_url)):
            # The page names no category, the listing it was found on does (`/{category}/{brand-path}/`).
            product = {**product, "category": category, "category_path": category}
            self.count("fic/parse/category_from_listing")
        yield ProductItem(**product, brand_slug=brand_slug, listing_url=listing_url)

    def product_failed(self, failure: Failure) -> None:
        """A product page that never arrived (HTTP error after retries, timeout, refused) is a counted drop."""
        self.drop_page(failure.request.url, failure_reason(failure), repr(failure.value), failure.request.cb_kwargs.get("brand_slug"))

    def drop_page(self, url: str, reason: str, detail: str, brand_slug: str | None) -> None:
        self.count(f"fic/dropped/{reason}")
        if brand_slug is not None:
            self.count(brand_stats.dropped_key(brand_slug, reason))
        self.logger.warning("dropped product page %s (%s): %s", url, reason, detail)


def failure_reason(failure: Failure) -> str:
    if failure.check(HttpError):
        return f"http_{failure.value.response.status}"
    if failure.check(IgnoreRequest):
        return "ignored"  # robots.txt or off-site; Scrapy's own stats say which
    return "download_error"  # refused, timed out, DNS, cut connection: after the retries


def _brand_keys(value: str) -> dict[str, str]:
    if not value.strip():
        return {}
    try:
        keys = json.loads(value)
    except ValueError:
        keys = None
    if not isinstance(keys, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in keys.items()):
        raise ValueError(f"brand_keys must be a JSON object of brand path -> partition key, got {value!r}")
    return {unquote(path.strip().strip("/")): key for path, key in keys.items()}


def _non_negative_int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number (0 = all pages), got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must be 0 (all pages) or more, got {number}")
    return number
