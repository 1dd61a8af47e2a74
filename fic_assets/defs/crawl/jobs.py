import dagster as dg

from fic_assets.defs.shared import max_runtime

discover_brands_job = dg.define_asset_job(
    "discover_brands_job",
    selection=dg.AssetSelection.assets("brands"),
    description="Read the shop's brand index into DuckDB `brands`; brand_sensor turns new brands into partitions.",
    # One index page, retried politely: an hour means it hangs.
    tags=max_runtime(hours=1),
)

crawl_job = dg.define_asset_job(
    "crawl_job",
    selection=dg.AssetSelection.assets("pieces", "image_urls"),
    description="Crawl the listing and product pages of one brand partition, or of a range of them in one run.",
    # The weekly recrawl of every brand is one run; the real shop, AutoThrottled, with FIC_MAX_PAGES=0
    # can take hours. A day is far beyond that and still ends a hung run before the next week's crawl.
    tags=max_runtime(hours=24),
)
