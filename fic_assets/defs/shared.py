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

# The run tags of a partition range run (`dg launch --partition-range FIRST...LAST`, a single-run backfill).
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


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
    range_tags = {RANGE_START: slugs[0], RANGE_END: slugs[-1]}
    return dg.RunRequest(run_key=run_key, job_name=job_name, tags={**(tags or {}), **range_tags})


def brand_keys_in_range(start: str, end: str, known: Sequence[str]) -> list[str]:
    """The brand partitions from start to end in the partitions' order, or ValueError naming the valid order.

    Dagster resolves a range over the partitions' own order (the order they were added, as the UI lists
    them; brand_sensor adds each batch of new brands sorted); a reversed range would quietly select no brand.
    """
    given = f"{start}...{end}"
    unknown = [key for key in dict.fromkeys((start, end)) if key not in known]
    if unknown:
        raise ValueError(f"partition range {given!r}: no brand partition {' or '.join(map(repr, unknown))}; "
                         f"the brand partitions, in order: {_listed(known)} (materialize `brands` to add new brands)")
    first, last = known.index(start), known.index(end)
    if first > last:
        raise ValueError(f"partition range {given!r} is reversed: a range runs FIRST...LAST in the order of the brand "
                         f"partitions (as the UI lists them), where {end!r} comes before {start!r}; did you mean "
                         f"'{end}...{start}'? The order: {_listed(known)}")
    return list(known[first:last + 1])


def _listed(keys: Sequence[str], most: int = 20) -> str:
    if len(keys) <= most:
        return ", ".join(keys)
    return f"{', '.join(keys[:10])}, ... ({len(keys) - 15} more), {', '.join(keys[-5:])}"


def brand_partition_keys(context: dg.AssetExecutionContext) -> list[str]:
    """The run's brand partitions; a reversed or unknown `--partition-range` fails here with the valid order."""
    start, end = context.run.tags.get(RANGE_START), context.run.tags.get(RANGE_END)
    if start is not None and end is not None:
        try:
            brand_keys_in_range(start, end, context.instance.get_dynamic_partitions(brand_partitions.name))
        except ValueError as error:
            raise dg.Failure(description=str(error)) from None
    return list(context.partition_keys)


def png_markdown(path: Path, title: str) -> str:
    """An image inline in Dagster's metadata panel (markdown with a data URI)."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"**{title}**\n\n![{title}](data:image/png;base64,{encoded})"
