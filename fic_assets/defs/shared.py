"""Dagster pieces the domains share: the brand partitions, the DuckDB pool, range run requests, metadata."""

import base64
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

# Keyed by brand slug ([a-z0-9-]: no "/", ",", quotes or "..." that Dagster's partition syntax reserves);
# the display name ("Levi's", "Selected Femme/Homme") lives in DuckDB `brands`.
brand_partitions = dg.DynamicPartitionsDefinition(name="brands")

# Every asset that writes DuckDB runs in this pool: DuckDB allows a single writer process at a time.
DUCKDB_POOL = "duckdb"

# A sensor that reads DuckDB while a run writes it waits this long, then skips the tick (the next one retries):
# the daemon's sensor loop must not stall for the resource's two-minute wait.
SENSOR_LOCK_WAIT_SECONDS = 2.0


def max_runtime(hours: float) -> dict[str, str]:
    """The `dagster/max_runtime` tag: run monitoring (dagster.yaml) terminates a run of the job after this long.

    The limits are generous on purpose: they exist to end a run that hangs (a socket no deadline covers, a step
    that waits for ever), never to cut short a slow but working run on 2 cores or against the real shop.
    """
    return {"dagster/max_runtime": str(int(hours * 3600))}


def partition_range_request(slugs: Sequence[str], run_key: str | None = None, tags: dict | None = None,
                            job_name: str | None = None) -> dg.RunRequest:
    """One run over consecutive brand partitions (the brand-partitioned assets use a single-run backfill policy).

    One run per brand would start one Scrapy process and one DuckDB writer per brand; one run keeps the
    crawl polite and the writes serial.
    """
    range_tags = {"dagster/asset_partition_range_start": slugs[0], "dagster/asset_partition_range_end": slugs[-1]}
    return dg.RunRequest(run_key=run_key, job_name=job_name, tags={**(tags or {}), **range_tags})


def png_markdown(path: Path, title: str) -> str:
    """An image inline in Dagster's metadata panel (markdown with a data URI)."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"**{title}**\n\n![{title}](data:image/png;base64,{encoded})"
