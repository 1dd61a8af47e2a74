"""`fic demo`: the platform end to end on the local demo shop, through Dagster, without a daemon.

It runs what the daemon would run, in order, on the persistent local instance (DAGSTER_HOME), so every run
shows up in `dagster dev` afterwards: materialize `brands`, evaluate `brand_sensor` once (new brands become
partitions; their first crawl is requested), then execute the requested crawl run. On a second call there are
no new brands and it runs the same all-brands crawl the weekly `recrawl_schedule` requests.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request

import dagster as dg

from fic_assets import settings, storage
from fic_assets.instance import prepare_dagster_home


def shop_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/robots.txt", timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


def ensure_demo_shop(shop_url: str) -> None:
    """Start the embedded demo shop in the background when the crawler points at it and it is not up."""
    if shop_url.rstrip("/") != settings.DEMO_SHOP_URL or shop_answers(shop_url):
        return
    from fic_assets.demo_shop import server

    if server.main(["--background", "--host", settings.DEMO_SHOP_HOST, "--port", str(settings.DEMO_SHOP_PORT)]) != 0:
        raise SystemExit(f"could not start the demo shop on {settings.DEMO_SHOP_URL}")


# Dagster's console logger prints every event at DEBUG; the demo's reader wants the INFO story.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def execute_run_request(defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str, request: dg.RunRequest) -> None:
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, tags=request.tags, partition_key=request.partition_key, run_config=QUIET_LOGS
    )
    if not result.success:
        raise SystemExit(f"{job_name} run {result.run_id} failed; see `dagster dev` or the log above")


def tick_brand_sensor(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    """Evaluate brand_sensor once and apply its partition requests, as the daemon does on a tick."""
    sensor = defs.resolve_sensor_def("brand_sensor")
    with dg.build_sensor_context(instance=instance, resources=defs.resources, sensor_name=sensor.name) as context:
        result = sensor(context)
    if isinstance(result, dg.SkipReason) or result.skip_reason is not None:
        return []
    for request in result.dynamic_partitions_requests or ():
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return list(result.run_requests or ())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fic demo", description=__doc__)
    parser.add_argument("--max-pages", type=int, default=None, help="listing pages per brand (default: FIC_MAX_PAGES, 0 = all)")
    args = parser.parse_args(argv)
    if args.max_pages is not None:
        os.environ["FIC_MAX_PAGES"] = str(args.max_pages)
    settings.apply_defaults()
    home = prepare_dagster_home()
    shop_url = settings.get("FIC_SHOP_URL")
    ensure_demo_shop(shop_url)

    from fic_assets.definitions import defs
    from fic_assets.defs.crawl.sensors import recrawl_schedule

    with dg.DagsterInstance.get() as instance:
        print(f"[fic demo] shop {shop_url}; Dagster instance {home}", flush=True)
        execute_run_request(defs, instance, "discover_brands_job", dg.RunRequest())
        requests = tick_brand_sensor(defs, instance)
        if not requests:
            # Nothing new: the weekly schedule's request, all brands in one run.
            with dg.build_schedule_context(instance=instance) as context:
                requests = [recrawl_schedule.evaluate_tick(context).run_requests[0]]
        for request in requests:
            execute_run_request(defs, instance, "crawl_job", request)

    with storage.connect(settings.get("FIC_DUCKDB"), read_only=True) as con:
        counts = storage.table_counts(con)
    print(f"[fic demo] DuckDB {settings.get('FIC_DUCKDB')}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    print(f"[fic demo] open the UI: DAGSTER_HOME={home} dagster dev -m fic_assets.definitions  (or scripts/ui)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
