import dagster as dg

from fic_assets.defs.crawl import assets, jobs, sensors

defs = dg.Definitions(
    assets=[assets.brands, assets.brand_catalogue],
    jobs=[jobs.discover_brands_job, jobs.crawl_job],
    sensors=[sensors.brand_sensor],
    schedules=[sensors.discover_brands_schedule, sensors.recrawl_schedule],
)
