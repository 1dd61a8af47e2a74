"""Crawl assets: brands discovered from the shop, and per-brand pieces and image URLs."""

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path

import dagster as dg
from fic_crawler import brand_stats
from fic_crawler.items import assign_brand_slugs, brand_slug

from fic_assets.platform import settings
from fic_assets.platform import warehouse
from fic_assets.defs.shared import DUCKDB_POOL, brand_partition_keys, brand_partitions
from fic_assets.platform.warehouse import DuckDBResource
from fic_assets.defs.crawl.crawler import CrawlerResource, CrawlResult
from fic_assets.defs.crawl.freshness import CRAWL_FRESHNESS, judge_crawl_freshness


def crawl_work_dir(run_id: str, name: str) -> Path:
    """Feeds, stats and logs of one crawl; kept after the run so a person can read what happened."""
    return Path(settings.get("FIC_DATA_DIR")) / "crawls" / run_id / name


def brand_rows(items: list[dict], known: Mapping[str, str] | None = None) -> tuple[list[dict], list[dict]]:
    """Brand items from the spider -> rows for `brands`, and the brands whose key carries a collision suffix.

    The shop's path is the brand: a path DuckDB knows keeps its slug, a new one gets its slug, or the slug plus
    a stable hash suffix when another path holds it (fic_crawler.items.assign_brand_slugs). The spider's own
    slug is ignored: it knows this index only, not the keys already given out.
    """
    by_path: dict[str, dict] = {}
    for item in items:
        path = item.get("path") or warehouse.path_from_url(item.get("url") or "")
        if path and item.get("name") and item.get("url"):
            by_path.setdefault(path, item)
    slugs, _ = assign_brand_slugs(by_path, known)
    holders = {slug: path for path, slug in {**(known or {}), **slugs}.items()}
    rows, suffixed = [], []
    for path, item in by_path.items():
        rows.append({"slug": slugs[path], "name": item["name"], "url": item["url"], "path": path})
        if slugs[path] != brand_slug(path):
            suffixed.append({"path": path, "name": item["name"], "slug": slugs[path],
                             "collides_with": holders.get(brand_slug(path))})
    return rows, suffixed


def stats_under(stats: dict, prefix: str) -> dict[str, int]:
    return {key[len(prefix):]: int(value) for key, value in sorted(stats.items()) if key.startswith(prefix) and isinstance(value, int)}


def crawl_summary(result: CrawlResult) -> dict:
    """What one Scrapy run did, in plain values: the whole run's, not one brand's."""
    return {
        "pages": result.pages,
        "items": int(result.stats.get("item_scraped_count", 0)),
        "dropped": int(result.stats.get("item_dropped_count", 0)),
        "dropped_by_reason": result.dropped,
        # Which path of the parser read each item: json-ld (no DOM built), json-ld+html, html (the fallback).
        "parsed_by": stats_under(result.stats, "fic/parsed_by/"),
        # Fallbacks and rejections inside pages that were kept: image URLs dropped, prices rejected, ...
        "parse_notes": stats_under(result.stats, "fic/parse/"),
        "warnings": stats_under(result.stats, "fic/warnings/"),
        "bad_feed_lines": result.bad_feed_lines,
    }


def crawl_metadata(result: CrawlResult) -> dict:
    return {
        **{key: dg.MetadataValue.json(value) if isinstance(value, dict) else value for key, value in crawl_summary(result).items()},
        "crawl_log": dg.MetadataValue.path(str(result.log_path)),
    }


def total_upsert(upserts: Iterable[warehouse.CrawlUpsert]) -> warehouse.CrawlUpsert:
    """Per-brand upserts summed (an image two brands show counts for each)."""
    upserts = list(upserts)
    return warehouse.CrawlUpsert(**{field.name: sum(getattr(u, field.name) for u in upserts) for field in fields(warehouse.CrawlUpsert)})


def brand_metadata(status: str, upsert: warehouse.CrawlUpsert, counts: dict) -> dict[str, dict]:
    """One brand partition's own metadata, per asset: what its listing answered, its pages, drops and rows."""
    own = {"listing_status": status, "pages": counts["pages"], "dropped": counts["dropped"],
           "dropped_by_reason": dg.MetadataValue.json(counts["dropped_by_reason"])}
    return {
        "pieces": {"pieces": upsert.pieces, "pieces_new": upsert.pieces_new, "price_changes": upsert.price_changes, **own},
        "image_urls": {"images": upsert.images, "images_new": upsert.images_new, "image_links": upsert.image_links,
                       "image_links_new": upsert.image_links_new, **own},
    }


@dg.asset(
    group_name="crawl",
    kinds={"scrapy", "duckdb"},
    pool=DUCKDB_POOL,
    description="Brands listed on the shop's brand index (DuckDB `brands`). New ones become brand partitions via brand_sensor.",
)
def brands(context: dg.AssetExecutionContext, crawler: CrawlerResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
    started = warehouse.utcnow()
    result = crawler.discover_brands(crawl_work_dir(context.run.run_id, "brands"), context=context)
    with duckdb.connect() as con, warehouse.transaction(con):
        rows, suffixed = brand_rows(result.items, warehouse.brand_paths(con))
        upsert = warehouse.upsert_brands(con, rows, seen_at=started)
        delisted = warehouse.mark_delisted(con, [row["slug"] for row in rows], started)
        warehouse.log_crawl(con, f"{context.run.run_id}:brands", "zalando_brands", [], started, warehouse.utcnow(), result.stats)
    for brand in suffixed:
        why = f"shares its slug with /{brand['collides_with']}/" if brand["collides_with"] else "has no slug characters"
        context.log.warning(f"brand {brand['name']!r} at /{brand['path']}/ {why}: partition key {brand['slug']!r}")
    if delisted:
        context.log.warning(f"{len(delisted)} brand(s) no longer on the brand index, marked delisted (kept): {delisted}")
    return dg.MaterializeResult(
        metadata={
            "brands": upsert.total,
            "new_brands": dg.MetadataValue.json(upsert.new),
            # Brands whose slug another path of the index holds: keyed slug-<hash of path>, none dropped.
            "slug_collisions": dg.MetadataValue.json(suffixed),
            "delisted_brands": dg.MetadataValue.json(delisted),
            "shop_url": crawler.shop_url,
            **crawl_metadata(result),
        }
    )


CATALOGUE_ASSETS = ("pieces", "image_urls")

# A brand goes stale by time passing, not by an update: once a day the check runs on its own (automation_sensor
# evaluates the condition; cron_tick_passed, unlike on_cron, does not wait for `pieces` to update). It also runs
# in every run that crawls `pieces` (Dagster runs an asset's checks with it), so a recrawl clears it at once.
FRESHNESS_CHECK_CONDITION = dg.AutomationCondition.cron_tick_passed("0 6 * * *", cron_timezone="UTC").with_label(
    "daily at 06:00 UTC")
# A check of the crawl's own multi-asset, not an @asset_check of its own: evaluated in the crawl's step, it costs a
# query; as a step of its own it would cost a step process importing the code location (~10 s on 2 busy cores) in
# every multiprocess crawl run. Selected alone (its daily run), the multi-asset evaluates it without crawling.
FRESHNESS_CHECK = dg.AssetCheckSpec(
    "pieces_fresh_per_brand",
    asset="pieces",
    # Not blocking: a late brand is worth a warning, never a reason to hold back crawls or predictions.
    blocking=False,
    automation_condition=FRESHNESS_CHECK_CONDITION,
    description=(
        "Every brand partition crawled within the freshness policy's windows (DuckDB `brands.last_crawled`): "
        "WARN after 7 days, ERROR after 8; names the late and never-crawled brands. Delisted or gone brands are "
        "listed, not judged."
    ),
)


def crawl_freshness(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """pieces_fresh_per_brand: every brand partition's last crawl against the freshness windows (freshness.py)."""
    partitions = context.instance.get_dynamic_partitions(brand_partitions.name)
    rows = []
    if partitions:
        # A write connection, though it only reads: it brings a file from before brands.gone_at up to date.
        with duckdb.connect() as con:
            rows = warehouse.brand_crawl_times(con, partitions)
    judgement = judge_crawl_freshness(partitions, rows, warehouse.utcnow())
    return dg.AssetCheckResult(check_name=FRESHNESS_CHECK.name, asset_key=FRESHNESS_CHECK.asset_key,
                               passed=judgement.passed, severity=judgement.severity,
                               description=judgement.description(), metadata=judgement.metadata())


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "pieces",
            deps=["brands"],
            kinds={"scrapy", "duckdb"},
            description="Products of the brand (DuckDB `pieces`, with `price_history`).",
            # Weekly recrawl (freshness.py). Dagster judges it on the asset's latest materialization (any brand),
            # so it flags a crawl that stopped; pieces_fresh_per_brand flags one brand left behind.
            freshness_policy=CRAWL_FRESHNESS,
        ),
        dg.AssetSpec(
            "image_urls",
            deps=["brands"],
            kinds={"duckdb"},
            description="The products' own image URLs with the shop's packshot flag (DuckDB `images`).",
        ),
    ],
    check_specs=[FRESHNESS_CHECK],
    group_name="crawl",
    partitions_def=brand_partitions,
    # One crawl fills both; selecting one of them crawls once and writes only its tables.
    can_subset=True,
    # A backfill over many brands is one run and one Scrapy process: one DuckDB writer, shared politeness.
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
)
def brand_catalogue(context: dg.AssetExecutionContext, crawler: CrawlerResource, duckdb: DuckDBResource):
    selected = [name for name in CATALOGUE_ASSETS if dg.AssetKey(name) in context.selected_asset_keys]
    checked = FRESHNESS_CHECK.key in context.selected_asset_check_keys
    if not selected:  # the freshness check alone (its daily automation run): nothing to crawl
        if checked:
            yield crawl_freshness(context, duckdb)
        return
    slugs = brand_partition_keys(context)
    # A write connection, though it only reads here: it brings a file from before brands.path up to date.
    with duckdb.connect() as con:
        paths = warehouse.brand_listing_paths(con, slugs)
    unknown = [slug for slug in slugs if slug not in paths]
    if unknown:
        raise dg.Failure(f"brand partitions {unknown} are not in DuckDB `brands`: materialize `brands` first")
    started = warehouse.utcnow()
    # The spider keys items by the plain slug of their path; a suffixed key (a colliding slug) is passed on.
    keys = {paths[slug]: slug for slug in slugs if brand_slug(paths[slug]) != slug}
    result = crawler.crawl_brands([paths[slug] for slug in slugs], crawl_work_dir(context.run.run_id, "pieces"), keys, context=context)
    # How each brand's listing answered (the spider's `fic/listing/<slug>`): only `ok` is a crawled brand.
    statuses = {slug: str(result.stats.get(f"fic/listing/{slug}", "not_requested")) for slug in slugs}
    gone = [slug for slug in slugs if statuses[slug] in warehouse.GONE_STATUSES]
    failed = {slug: status for slug, status in statuses.items() if status != "ok" and slug not in gone}
    items_by_brand: dict[str, list[dict]] = defaultdict(list)
    for item in result.items:
        items_by_brand[item.get("brand_slug")].append(item)
    with duckdb.connect() as con, warehouse.transaction(con):
        # Brand by brand, so each partition's metadata counts its own rows.
        upserts = {slug: warehouse.upsert_items(con, items, seen_at=started, pieces="pieces" in selected,
                                                images="image_urls" in selected)
                   for slug, items in items_by_brand.items()}
        warehouse.record_listing_status(con, statuses, warehouse.utcnow())
        warehouse.log_crawl(con, context.run.run_id, "zalando", slugs, started, warehouse.utcnow(), result.stats)
    upsert = total_upsert(upserts.values())
    context.log.info(f"crawled {len(slugs)} brand(s), wrote {' and '.join(selected)}: {upsert}; listings: {statuses}")
    # The run as a whole: the brands it crawled, how their listings answered, the crawl's totals.
    run = {
        "brands": len(slugs),
        "pieces": upsert.pieces,
        "images": upsert.images,
        "listing_status": dict(Counter(statuses.values())),
        "gone_brands": gone,
        "failed_brands": failed,
        "brands_without_pieces": [slug for slug in slugs if statuses[slug] == "ok" and not items_by_brand.get(slug)],
        **crawl_summary(result),
    }
    if failed or len(gone) == len(slugs):
        # A listing that never answered (refused, timed out, 5xx, robots.txt) is a crawl that reached nothing:
        # the run fails and last_crawled stays. So does a run in which every listing is gone (404/410), which
        # is more likely a wrong FIC_SHOP_URL than a shop that closed all its brands at once. The brands that
        # did answer are stored (and their last_crawled moved); gone ones are marked in `brands` (gone_at).
        problems = [f"{slug} ({status})" for slug, status in {**failed, **{slug: statuses[slug] for slug in gone}}.items()]
        more = f" and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise dg.Failure(
            description=(
                f"crawl of {len(slugs)} brand(s) at {crawler.shop_url} reached nothing for {', '.join(problems[:20])}{more}; "
                f"pages fetched: {result.pages}; log {result.log_path}"
            ),
            metadata={**run, "crawl_log": dg.MetadataValue.path(str(result.log_path))},
        )
    if gone:
        context.log.warning(f"brand listing(s) gone (404/410), marked in `brands`.gone_at: {gone}")
    counts = brand_stats.per_brand(result.stats)
    of_run = {"run": dg.MetadataValue.json(run), "crawl_log": dg.MetadataValue.path(str(result.log_path))}
    for slug in slugs:
        own = brand_metadata(statuses[slug], upserts.get(slug) or total_upsert([]), counts.get(slug) or brand_stats.empty())
        for name in selected:
            # Each partition's materialization: the brand's own counts first, then the run it was part of.
            context.add_asset_metadata({**own[name], **of_run}, asset_key=name, partition_key=slug)
    for name in selected:
        yield dg.MaterializeResult(asset_key=name)
    if checked:  # after the writes above: this crawl counts
        yield crawl_freshness(context, duckdb)
