"""What the spiders yield. Field names are the columns fic_assets/storage.py reads from the feed."""

from __future__ import annotations

from urllib.parse import unquote

import scrapy
from slugify import slugify


def brand_slug(brand_path: str) -> str:
    """The platform's brand partition key: python-slugify of the shop's brand path segment ([a-z0-9-] only)."""
    return slugify(unquote(brand_path.strip().strip("/")))


class ProductItem(scrapy.Item):
    # parsing.parse_product's keys
    item_id = scrapy.Field()
    sku = scrapy.Field()
    name = scrapy.Field()
    brand = scrapy.Field()
    price = scrapy.Field()
    currency = scrapy.Field()
    colour = scrapy.Field()
    url = scrapy.Field()
    images = scrapy.Field()  # [{url, position, is_packshot}]
    # where the crawl found it
    brand_slug = scrapy.Field()
    listing_url = scrapy.Field()


class BrandItem(scrapy.Item):
    name = scrapy.Field()
    slug = scrapy.Field()
    url = scrapy.Field()
