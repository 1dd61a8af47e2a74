"""Sensors and schedules that launch crawls."""

from collections.abc import Sequence

import dagster as dg

from fic_assets.platform import settings
from fic_assets.platform import warehouse
from fic_assets.defs.crawl.jobs import crawl_job, discover_brands_job
from fic_assets.defs.shared import SENSOR_LOCK_WAIT_SECONDS, brand_partitions, partition_range_request
from fic_assets.platform.warehouse import DuckDBResource


def new_brand_requests(known_partitions: Sequence[str], stored_slugs: Sequence[str]) -> tuple[list[str], dg.RunRequest | None]:
    """Brands in DuckDB that are not partitions yet, and the run that crawls them for the first time.

    Dynamic partitions keep the order they were added in, so the new ones form one range at the end.
    """
    known = set(known_partitions)
    new = [slug for slug in stored_slugs if slug not in known]
    if not new:
        return [], None
    return new, partition_range_request(new, run_key="first-crawl:" + ",".join(new), tags={"fic/trigger": "new_brands"})


@dg.sensor(
    job=crawl_job,
    minimum_interval_seconds=settings.sensor_interval(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds brands found by the `brands` asset as partitions and requests their first crawl.",
)
def brand_sensor(context: dg.SensorEvaluationContext, duckdb: DuckDBResource) -> dg.SensorResult | dg.SkipReason:
    # Only look at DuckDB when `brands` was materialized since the last tick: cheap ticks, no lock contention.
    records = context.instance.fetch_materializations(dg.AssetKey("brands"), limit=1).records
    if not records:
        return dg.SkipReason("`brands` has never been materialized")
    latest = records[0]
    if context.cursor == str(latest.storage_id):
        return dg.SkipReason("no new `brands` materialization")
    try:
        with duckdb.connect(read_only=True, wait_seconds=SENSOR_LOCK_WAIT_SECONDS) as con:
            stored = warehouse.brand_slugs(con)
    except warehouse.DuckDBBusyError as error:
        return dg.SkipReason(f"DuckDB busy, will retry next tick: {error}")
    new, request = new_brand_requests(context.instance.get_dynamic_partitions(brand_partitions.name), stored)
    if request is None:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new brands"), cursor=str(latest.storage_id))
    context.log.info(f"new brands: {new}")
    return dg.SensorResult(
        run_requests=[request],
        dynamic_partitions_requests=[brand_partitions.build_add_request(new)],
        cursor=str(latest.storage_id),
    )


discover_brands_schedule = dg.ScheduleDefinition(
    name="discover_brands_schedule",
    job=discover_brands_job,
    cron_schedule="0 2 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily: re-read the brand index; brand_sensor picks up brands that appeared.",
)


@dg.schedule(
    job=crawl_job,
    cron_schedule="0 3 * * 1",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly: re-crawl every known brand in one run (prices move, products come and go).",
)
def recrawl_schedule(context: dg.ScheduleEvaluationContext):
    slugs = context.instance.get_dynamic_partitions(brand_partitions.name)
    if not slugs:
        return dg.SkipReason("no brand partitions yet")
    return partition_range_request(slugs, tags={"fic/trigger": "recrawl_schedule"})
