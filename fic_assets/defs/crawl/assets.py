"""Crawl assets: brands discovered from the shop, and per-brand pieces and image URLs."""

from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
from slugify import slugify

from fic_assets import settings, storage
from fic_assets.defs.crawl.partitions import DUCKDB_POOL, brand_partitions
from fic_assets.resources import CrawlerResource, CrawlResult, DuckDBResource


def crawl_work_dir(run_id: str, name: str) -> Path:
    """Feeds, stats and logs of one crawl; kept after the run so a person can read what happened."""
    return Path(settings.get("FIC_DATA_DIR")) / "crawls" / run_id / name


def brand_rows(items: list[dict]) -> list[dict]:
    """Brand items from the spider -> rows for `brands`; the slug is re-checked so a partition key is safe."""
    rows = []
    for item in items:
        slug = slugify(item.get("slug") or item["name"])
        if slug:
            rows.append({"slug": slug, "name": item["name"], "url": item["url"]})
    return rows


def brand_path(url: str, slug: str) -> str:
    """The shop path segment of a brand listing URL ('https://www.zalando.de/levis/' -> 'levis')."""
    segments = [segment for segment in urlsplit(url).path.split("/") if segment]
    return segments[-1] if segments else slug


def crawl_metadata(result: CrawlResult) -> dict:
    return {
        "pages": result.pages,
        "items": int(result.stats.get("item_scraped_count", 0)),
        "dropped": int(result.stats.get("item_dropped_count", 0)),
        "dropped_by_reason": dg.MetadataValue.json(result.dropped),
        "bad_feed_lines": result.bad_feed_lines,
        "crawl_log": dg.MetadataValue.path(str(result.log_path)),
    }


@dg.asset(
    group_name="crawl",
    kinds={"scrapy", "duckdb"},
    pool=DUCKDB_POOL,
    description="Brands listed on the shop's brand index (DuckDB `brands`). New ones become brand partitions via brand_sensor.",
)
def brands(context: dg.AssetExecutionContext, crawler: CrawlerResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
    started = storage.utcnow()
    result = crawler.discover_brands(crawl_work_dir(context.run.run_id, "brands"))
    rows = brand_rows(result.items)
    with duckdb.connect() as con, storage.transaction(con):
        upsert = storage.upsert_brands(con, rows, seen_at=started)
        storage.log_crawl(con, f"{context.run.run_id}:brands", "zalando_brands", [], started, storage.utcnow(), result.stats)
    return dg.MaterializeResult(
        metadata={
            "brands": upsert.total,
            "new_brands": dg.MetadataValue.json(upsert.new),
            "shop_url": crawler.shop_url,
            **crawl_metadata(result),
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "pieces",
            deps=["brands"],
            kinds={"scrapy", "duckdb"},
            description="Products of the brand (DuckDB `pieces`, with `price_history`).",
        ),
        dg.AssetSpec(
            "image_urls",
            deps=["brands"],
            kinds={"duckdb"},
            description="The products' own image URLs with the shop's packshot flag (DuckDB `images`).",
        ),
    ],
    group_name="crawl",
    partitions_def=brand_partitions,
    # A backfill over many brands is one run and one Scrapy process: one DuckDB writer, shared politeness.
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
)
def brand_catalogue(context: dg.AssetExecutionContext, crawler: CrawlerResource, duckdb: DuckDBResource):
    slugs = list(context.partition_keys)
    with duckdb.connect(read_only=True) as con:
        urls = storage.brand_urls(con, slugs)
    unknown = [slug for slug in slugs if slug not in urls]
    if unknown:
        raise dg.Failure(f"brand partitions {unknown} are not in DuckDB `brands`: materialize `brands` first")
    started = storage.utcnow()
    result = crawler.crawl_brands([brand_path(urls[slug], slug) for slug in slugs], crawl_work_dir(context.run.run_id, "pieces"))
    with duckdb.connect() as con, storage.transaction(con):
        upsert = storage.upsert_items(con, result.items, seen_at=started)
        storage.mark_crawled(con, slugs, storage.utcnow())
        storage.log_crawl(con, context.run.run_id, "zalando", slugs, started, storage.utcnow(), result.stats)
    context.log.info(f"crawled {len(slugs)} brand(s): {upsert}")
    common = {"brands": dg.MetadataValue.json(slugs), **crawl_metadata(result)}
    yield dg.MaterializeResult(
        asset_key="pieces",
        metadata={"pieces": upsert.pieces, "pieces_new": upsert.pieces_new, "price_changes": upsert.price_changes, **common},
    )
    yield dg.MaterializeResult(
        asset_key="image_urls", metadata={"images": upsert.images, "images_new": upsert.images_new, **common}
    )
