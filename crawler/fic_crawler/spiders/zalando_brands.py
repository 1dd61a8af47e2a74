"""The shop's brand index -> BrandItems.

    scrapy crawl zalando_brands [-a index_path=/marken/] [-a shop_url=https://www.zalando.de] -O brands.jsonl
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.http import Response, TextResponse

from fic_crawler.items import BrandItem, brand_slug
from fic_crawler.parsing import parse_brand_index
from fic_crawler.spiders.base import ShopSpider


class ZalandoBrandsSpider(ShopSpider):
    name = "zalando_brands"

    def __init__(self, index_path: str = "", *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.index_path = index_path  # empty: FIC_BRAND_INDEX_PATH

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for request in self.start_requests():
            yield request

    def start_requests(self) -> Iterator[scrapy.Request]:
        # Kept (beside start) because scrapy-splash's spider middleware only implements
        # process_start_requests; Scrapy 2.13 refuses a start()-only spider with it enabled.
        self.note_crawl()
        path = self.index_path or self.settings.get("FIC_BRAND_INDEX_PATH") or "/brands/"
        yield self.page_request(self.shop_page(path), self.parse_index)

    def parse_index(self, response: Response) -> Iterator[BrandItem]:
        self.count("fic/pages/brand_index")
        brands = parse_brand_index(response.selector, response.url) if isinstance(response, TextResponse) else []
        if not brands:
            self.count("fic/warnings/empty_brand_index")
            self.logger.warning("no brand links on the brand index %s", response.url)
        for brand in brands:
            slug = brand_slug(brand["path"])
            if not slug:
                self.count("fic/dropped/brand_without_slug")
                self.logger.warning("brand %r at %s has no slug ([a-z0-9-]); skipped", brand["name"], brand["url"])
                continue
            yield BrandItem(name=brand["name"], slug=slug, url=brand["url"])
