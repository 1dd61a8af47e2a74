"""Crawl assets materialized in-process against the real demo shop, real Scrapy subprocesses and DuckDB files."""

from __future__ import annotations



import dagster as dg
import pytest

from fic_assets.platform import warehouse
from fic_assets.defs.crawl.assets import brand_catalogue, brands
from fic_assets.defs.crawl.jobs import crawl_job
from fic_assets.defs.shared import brand_partitions
from fic_assets.demo.shop.catalogue import build_catalogue
from fic_assets.platform.warehouse import DuckDBResource
from fic_assets.defs.crawl.crawler import CrawlError, CrawlerResource
from fic_assets_tests.conftest import free_port

RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


@pytest.fixture(scope="module")
def catalogue():
    return build_catalogue(seed=42)


@pytest.fixture
def platform(tmp_path, demo_shop_url, monkeypatch):
    monkeypatch.setenv("FIC_DATA_DIR", str(tmp_path))  # crawl feeds and logs
    resources = {
        "duckdb": DuckDBResource(path=str(tmp_path / "fic.duckdb")),
        "crawler": CrawlerResource(shop_url=demo_shop_url),
    }
    defs = dg.Definitions(assets=[brands, brand_catalogue], jobs=[crawl_job], resources=resources)
    with dg.instance_for_test() as instance:
        yield defs, instance, resources["duckdb"]


def discover(defs, instance) -> dg.ExecuteInProcessResult:
    result = dg.materialize([brands], instance=instance, resources=defs.resources)
    assert result.success
    return result


def crawl(defs, instance, first: str, last: str):
    return defs.resolve_job_def("crawl_job").execute_in_process(instance=instance, tags=dict(zip(RANGE, (first, last))))


def test_brands_asset_reads_the_brand_index_with_awkward_names(platform, catalogue):
    defs, instance, duckdb = platform
    result = discover(defs, instance)
    with duckdb.connect(read_only=True) as con:
        names = dict(con.execute("SELECT slug, name FROM brands").fetchall())
    assert set(names.values()) == {brand.name for brand in catalogue.brands}
    assert names["levis"] == "Levi's"
    assert all(slug.replace("-", "").isalnum() and slug.isascii() and slug == slug.lower() for slug in names)
    metadata = result.asset_materializations_for_node("brands")[0].metadata
    assert metadata["brands"].value == len(catalogue.brands)


def expected_products(catalogue, brand_path: str) -> dict[str, object]:
    """Products of a brand the crawler stores: all but the truncated page, cut before its gallery (no images)."""
    return {product.sku: product for product in catalogue.products if product.brand.path == brand_path and product.page_defect != "truncated"}


def test_one_run_crawls_two_brands_and_a_rerun_adds_no_rows(platform, catalogue):
    defs, instance, duckdb = platform
    discover(defs, instance)
    partitions = ["levis", "bjorn-borg"]  # an apostrophe and a non-ASCII letter in the display names
    instance.add_dynamic_partitions(brand_partitions.name, partitions)

    first = crawl(defs, instance, *partitions)
    assert first.success
    with duckdb.connect(read_only=True) as con:
        counts = warehouse.table_counts(con)
        stored = dict(con.execute("SELECT item_id, brand_slug FROM pieces").fetchall())
        packshots = dict(con.execute("SELECT image_url, is_packshot FROM images").fetchall())
        last_crawled = con.execute("SELECT count(*) FROM brands WHERE last_crawled IS NOT NULL").fetchone()[0]

    for path in partitions:
        expected = expected_products(catalogue, path)
        assert {sku for sku, slug in stored.items() if slug == path} == set(expected)
    assert last_crawled == 2
    assert instance.get_materialized_partitions(dg.AssetKey("pieces")) == set(partitions)
    assert any(packshots.values()) and not all(packshots.values())
    for url, flag in packshots.items():
        assert flag == ("filter=packshot" in url)

    # Each brand partition's materialization carries the brand's own counts, and the run's beside them.
    by_partition = {m.partition: m.metadata for m in first.asset_materializations_for_node("brand_catalogue")
                    if m.asset_key == dg.AssetKey("pieces")}
    assert set(by_partition) == set(partitions)
    for path in partitions:
        assert by_partition[path]["pieces"].value == len(expected_products(catalogue, path)) > 0
        assert by_partition[path]["listing_status"].value == "ok" and by_partition[path]["pages"].value > 0
    assert by_partition["levis"]["run"].value["pieces"] == len(stored) and by_partition["levis"]["run"].value["brands"] == 2
    # Bad input: Björn Borg's truncated product page (cut before its gallery) is the one recorded drop, and only
    # Björn Borg's; Levi's pages without / with broken JSON-LD are parsed from the markup and stored.
    assert by_partition["bjorn-borg"]["dropped_by_reason"].value == {"no_images": 1}
    assert by_partition["levis"]["dropped_by_reason"].value == {} and by_partition["levis"]["dropped"].value == 0
    assert by_partition["levis"]["run"].value["dropped_by_reason"] == {"no_images": 1}
    assert by_partition["levis"]["run"].value["dropped"] == 1
    broken_markup = [p.sku for p in catalogue.products if p.brand.path == "levis" and p.page_defect in ("no_jsonld", "broken_jsonld")]
    assert broken_markup and set(broken_markup) <= set(stored)

    second = crawl(defs, instance, *partitions)
    assert second.success
    with duckdb.connect(read_only=True) as con:
        after = warehouse.table_counts(con)
    assert {k: v for k, v in after.items() if k != "crawl_log"} == {k: v for k, v in counts.items() if k != "crawl_log"}
    assert after["crawl_log"] == counts["crawl_log"] + 1


def test_partition_missing_from_brands_fails_with_advice(platform):
    """Bad input: a partition key added by hand that the brand index never listed."""
    defs, instance, _ = platform
    discover(defs, instance)
    instance.add_dynamic_partitions(brand_partitions.name, ["no-such-brand"])
    result = defs.resolve_job_def("crawl_job").execute_in_process(instance=instance, partition_key="no-such-brand", raise_on_error=False)
    assert not result.success
    assert "materialize `brands` first" in str(result.all_events)


def test_shop_down_fails_the_run_clearly_and_writes_nothing(tmp_path, monkeypatch):
    """Bad input: the shop (a service) is down; the error names the URL and DuckDB stays untouched."""
    monkeypatch.setenv("FIC_DATA_DIR", str(tmp_path))
    down = f"http://127.0.0.1:{free_port()}"
    duckdb = DuckDBResource(path=str(tmp_path / "fic.duckdb"))
    with duckdb.connect() as con:
        warehouse.upsert_brands(con, [{"slug": "levis", "name": "Levi's", "url": f"{down}/levis/"}])
    with pytest.raises(CrawlError, match=down):
        dg.materialize([brands], resources={"duckdb": duckdb, "crawler": CrawlerResource(shop_url=down)})
    with duckdb.connect(read_only=True) as con:
        assert warehouse.table_counts(con)["brands"] == 1
