"""The shop's brand index -> BrandItems.

    scrapy crawl zalando_brands [-a index_path=/marken/] [-a shop_url=https://www.zalando.de] -O brands.jsonl
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.http import Response, TextResponse

from fic_crawler.items import BrandItem, assign_brand_slugs, brand_slug
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
        # Every brand of the index is kept: slugs that collide (`Levi's` at /levi's/ and /levi-s/, /björn-borg/ and
        # /bjorn-borg/) get a stable suffix instead of one brand dropping the other as a duplicate.
        slugs, collisions = assign_brand_slugs(brand["path"] for brand in brands)
        for collision in collisions:
            self.count("fic/warnings/slug_collision")
            self.logger.warning(
                "brand path %r collides with %r on slug %r: partition key %r",
                collision["path"], collision["collides_with"], brand_slug(collision["path"]), collision["slug"],
            )
        for brand in brands:
            if not brand_slug(brand["path"]):
                self.count("fic/warnings/brand_without_slug")
                self.logger.warning("brand %r at %s has no slug characters ([a-z0-9-]): key %r", brand["name"], brand["url"], slugs[brand["path"]])
            yield BrandItem(name=brand["name"], slug=slugs[brand["path"]], url=brand["url"], path=brand["path"])
