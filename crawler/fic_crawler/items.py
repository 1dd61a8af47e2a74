"""What the spiders yield. Field names are the columns fic_assets/platform/warehouse.py reads from the feed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

import scrapy
from slugify import slugify


def brand_slug(brand_path: str) -> str:
    """python-slugify of the shop's brand path segment ([a-z0-9-] only): a brand's partition key unless it collides."""
    return slugify(unquote(brand_path.strip().strip("/")))


def path_hash(path: str, length: int = 6) -> str:
    return hashlib.sha1(path.encode("utf-8")).hexdigest()[:length]


def assign_brand_slugs(paths: Iterable[str], known: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[dict]]:
    """Partition keys for brand paths. A brand is its shop path (`levis` and `levi-s` are two brands).

    `known` ({path: slug}, from DuckDB) keeps the keys already given out. A new path gets brand_slug(path)
    when no other path holds it, else that slug plus a stable suffix, the first 6 hex digits of sha1(path)
    (`LEVIS` -> `levis-1f2e3d`); a path without any slug character gets `brand-<hash>`. Among new paths wanting
    the same slug, the one that already is that slug wins, then the first in sorted order, so the outcome
    does not depend on the index's order. Returns ({path: slug}, collisions: [{path, slug, collides_with}]).
    """
    known = dict(known or {})
    holders = {slug: path for path, slug in known.items()}
    ordered = list(dict.fromkeys(paths))
    slugs = {path: known[path] for path in ordered if path in known}
    collisions = []
    for path in sorted((path for path in ordered if path not in known), key=lambda path: (brand_slug(path) != path, path)):
        base = brand_slug(path)
        slug = base
        if not base or base in holders:
            prefix = base or "brand"
            slug = next(
                candidate
                for candidate in (f"{prefix}-{path_hash(path, n)}" for n in (6, 10, 16, 40))
                if candidate not in holders
            )
            if base:
                collisions.append({"path": path, "slug": slug, "collides_with": holders[base]})
        holders[slug] = path
        slugs[path] = slug
    return {path: slugs[path] for path in ordered}, collisions


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
    parsed_by = scrapy.Field()  # json-ld | json-ld+html | html: what answered (parsing.PARSED_BY)
    # The shop's breadcrumb trail without home, brand and product (parsing.page_category), else the listing URL's
    # category segment; None when neither says one.
    category = scrapy.Field()  # the first level: `Herren`, `Damenbekleidung`
    category_path = scrapy.Field()  # every level, " > "-joined: `Herren > Jeans`
    # where the crawl found it
    brand_slug = scrapy.Field()
    listing_url = scrapy.Field()


class BrandItem(scrapy.Item):
    name = scrapy.Field()
    slug = scrapy.Field()  # the partition key assign_brand_slugs gave the path within this index
    url = scrapy.Field()
    path = scrapy.Field()  # the shop's brand path segment, unquoted: the brand's identity
