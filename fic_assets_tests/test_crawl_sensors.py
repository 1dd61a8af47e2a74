"""brand_sensor and the crawl schedules, evaluated with build_sensor_context on a real (temp) instance."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import dagster as dg
import pytest

from fic_assets.platform import warehouse
from fic_assets.defs.shared import brand_partitions
from fic_assets.defs.crawl.sensors import brand_sensor, recrawl_schedule
from fic_assets.platform.warehouse import DuckDBResource

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def duckdb_resource(tmp_path):
    return DuckDBResource(path=str(tmp_path / "fic.duckdb"))


def store_brands(resource: DuckDBResource, slugs: list[str]) -> None:
    with resource.connect() as con:
        warehouse.upsert_brands(con, [{"slug": slug, "name": slug.title(), "url": f"http://shop/{slug}/"} for slug in slugs])


def report_brands_materialized(instance: dg.DagsterInstance) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization("brands"))


def tick(instance, duckdb_resource, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"duckdb": duckdb_resource})
    return brand_sensor(context)


def test_sensor_skips_until_brands_was_materialized(instance, duckdb_resource):
    result = tick(instance, duckdb_resource)
    assert isinstance(result, dg.SkipReason) and "never been materialized" in result.skip_message


def test_new_brands_become_partitions_with_one_first_crawl_run(instance, duckdb_resource):
    store_brands(duckdb_resource, ["levis", "marc-o-polo", "bjorn-borg"])
    report_brands_materialized(instance)

    result = tick(instance, duckdb_resource)

    (add,) = result.dynamic_partitions_requests
    assert add.partitions_def_name == brand_partitions.name
    # Brands seen in the same materialization are ordered by slug.
    assert list(add.partition_keys) == ["bjorn-borg", "levis", "marc-o-polo"]
    (run,) = result.run_requests
    assert (run.tags[RANGE_START], run.tags[RANGE_END]) == ("bjorn-borg", "marc-o-polo")
    assert result.cursor


def test_second_tick_on_the_same_materialization_does_nothing(instance, duckdb_resource):
    store_brands(duckdb_resource, ["levis"])
    report_brands_materialized(instance)
    first = tick(instance, duckdb_resource)
    second = tick(instance, duckdb_resource, cursor=first.cursor)
    assert isinstance(second, dg.SkipReason) and "no new `brands` materialization" in second.skip_message


def test_only_brands_that_appeared_since_are_requested(instance, duckdb_resource):
    store_brands(duckdb_resource, ["levis", "mango"])
    report_brands_materialized(instance)
    first = tick(instance, duckdb_resource)
    instance.add_dynamic_partitions(brand_partitions.name, list(first.dynamic_partitions_requests[0].partition_keys))

    store_brands(duckdb_resource, ["levis", "mango", "jack-jones"])
    report_brands_materialized(instance)
    second = tick(instance, duckdb_resource, cursor=first.cursor)

    assert list(second.dynamic_partitions_requests[0].partition_keys) == ["jack-jones"]
    (run,) = second.run_requests
    assert (run.tags[RANGE_START], run.tags[RANGE_END]) == ("jack-jones", "jack-jones")


def test_no_new_brands_advances_the_cursor_without_runs(instance, duckdb_resource):
    store_brands(duckdb_resource, ["levis"])
    instance.add_dynamic_partitions(brand_partitions.name, ["levis"])
    report_brands_materialized(instance)
    result = tick(instance, duckdb_resource)
    assert not result.run_requests and not result.dynamic_partitions_requests and result.cursor


def test_sensor_skips_while_another_process_writes_duckdb(instance, tmp_path):
    """Bad input: DuckDB held by a writer process during the tick; the tick skips instead of erroring."""
    resource = DuckDBResource(path=str(tmp_path / "fic.duckdb"), lock_wait_seconds=0.3)
    store_brands(resource, ["levis"])
    report_brands_materialized(instance)
    code = textwrap.dedent(
        f"""
        import duckdb, time
        con = duckdb.connect({resource.path!r})
        print("locked", flush=True)
        time.sleep(10)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = tick(instance, resource)
        assert isinstance(result, dg.SkipReason) and "DuckDB busy" in result.skip_message
    finally:
        holder.kill()
        holder.wait()
    # Same materialization, lock gone: the next tick does the work.
    assert list(tick(instance, resource).dynamic_partitions_requests[0].partition_keys) == ["levis"]


def test_recrawl_schedule_requests_every_brand_in_one_run(instance):
    with dg.build_schedule_context(instance=instance) as context:
        assert isinstance(recrawl_schedule(context), dg.SkipReason)
    instance.add_dynamic_partitions(brand_partitions.name, ["levis", "mango", "jack-jones"])
    with dg.build_schedule_context(instance=instance) as context:
        run = recrawl_schedule(context)
    assert (run.tags[RANGE_START], run.tags[RANGE_END]) == ("levis", "jack-jones")
