import dagster as dg

discover_brands_job = dg.define_asset_job(
    "discover_brands_job",
    selection=dg.AssetSelection.assets("brands"),
    description="Read the shop's brand index into DuckDB `brands`; brand_sensor turns new brands into partitions.",
)

crawl_job = dg.define_asset_job(
    "crawl_job",
    selection=dg.AssetSelection.assets("pieces", "image_urls"),
    description="Crawl the listing and product pages of one brand partition, or of a range of them in one run.",
)
