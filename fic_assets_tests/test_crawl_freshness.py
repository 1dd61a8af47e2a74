"""`pieces_fresh_per_brand`: each brand partition's last crawl against the freshness windows, run through Dagster
on a real instance and real DuckDB files; its daily automation, evaluated as automation_sensor does; and the check
in a real crawl run."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from fic_assets.defs.crawl.assets import FRESHNESS_CHECK, FRESHNESS_CHECK_CONDITION, brand_catalogue, brands
from fic_assets.defs.crawl.crawler import CrawlerResource
from fic_assets.defs.crawl.freshness import CRAWL_FRESHNESS, FAIL_AFTER, WARN_AFTER
from fic_assets.defs.crawl.jobs import crawl_job
from fic_assets.defs.predictions.sensors import automation_sensor
from fic_assets.defs.shared import brand_partitions
from fic_assets.platform import warehouse
from fic_assets.platform.warehouse import DuckDBResource

CHECK = dg.AssetCheckKey(dg.AssetKey("pieces"), "pieces_fresh_per_brand")
NOW = warehouse.utcnow()


@pytest.fixture
def platform(tmp_path, monkeypatch):
    monkeypatch.setenv("FIC_DATA_DIR", str(tmp_path))
    duckdb = DuckDBResource(path=str(tmp_path / "fic.duckdb"))
    # The crawler is never called here (only the check is selected); the shop URL leads nowhere on purpose.
    defs = dg.Definitions(assets=[brands, brand_catalogue], jobs=[crawl_job],
                          resources={"duckdb": duckdb, "crawler": CrawlerResource(shop_url="http://127.0.0.1:9")})
    with dg.instance_for_test() as instance:
        yield defs, instance, duckdb


def store_brands(duckdb: DuckDBResource, instance: dg.DagsterInstance, brands_ages: dict[str, tuple[str, timedelta | None]],
                 found_ago: timedelta = timedelta(days=30)) -> None:
    """Brand partitions with a `brands` row each, found `found_ago`, last crawled (listing ok) `age` ago (None: never)."""
    with duckdb.connect() as con:
        warehouse.upsert_brands(con, [{"slug": slug, "name": name, "url": f"https://shop.example/{slug}/"}
                                      for slug, (name, _) in brands_ages.items()], seen_at=NOW - found_ago)
        for slug, (_, age) in brands_ages.items():
            if age is not None:
                warehouse.record_listing_status(con, {slug: "ok"}, NOW - age)
    instance.add_dynamic_partitions(brand_partitions.name, list(brands_ages))


def run_check(defs: dg.Definitions, instance: dg.DagsterInstance):
    """The check alone, as automation_sensor launches it (a run selecting only the check, no asset): the crawl's
    multi-asset evaluates it without crawling (the crawler's shop URL leads nowhere)."""
    result = dg.materialize([brands, brand_catalogue], selection=dg.AssetSelection.checks(CHECK),
                            instance=instance, resources=defs.resources)
    assert result.success  # a failing check is a result, never a failed run
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation, {key: value.value for key, value in evaluation.metadata.items()}


def test_one_brand_crawled_nine_days_ago_among_fresh_ones_fails_the_check_naming_it(platform):
    """Bad input: `esprit` was last crawled 9 days ago (a recrawl missed it) while the others were crawled today."""
    defs, instance, duckdb = platform
    store_brands(duckdb, instance, {"adidas": ("adidas", timedelta(hours=3)), "esprit": ("Esprit", timedelta(days=9)),
                                    "levis": ("Levi's", timedelta(days=1))})
    evaluation, metadata = run_check(defs, instance)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert [brand["slug"] for brand in metadata["stale_brands"]] == ["esprit"]
    assert metadata["stale_brands"][0]["days_since"] == 9.0 and metadata["stale_brands"][0]["level"] == "fail"
    assert (metadata["brands_judged"], metadata["brands_fresh"]) == (3, 2)
    assert evaluation.description.startswith("1 of 3 brands not crawled within 7 days (error after 8): esprit (Esprit, last crawled 9.0 days ago)")
    assert "adidas" not in evaluation.description and "levis" not in evaluation.description


def test_a_brand_seven_and_a_half_days_late_warns(platform):
    """Bad input: a brand past the warn window (7 d) but not the fail window (8 d): severity WARN, not ERROR."""
    defs, instance, duckdb = platform
    store_brands(duckdb, instance, {"esprit": ("Esprit", timedelta(days=7, hours=12)), "levis": ("Levi's", timedelta(days=1))})
    evaluation, metadata = run_check(defs, instance)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert [(brand["slug"], brand["level"]) for brand in metadata["stale_brands"]] == [("esprit", "warn")]


def test_all_brands_fresh_passes_and_a_just_found_brand_is_listed_not_failed(platform):
    defs, instance, duckdb = platform
    store_brands(duckdb, instance, {"adidas": ("adidas", timedelta(days=6)), "levis": ("Levi's", timedelta(hours=1))})
    store_brands(duckdb, instance, {"zero": ("Zero", None)}, found_ago=timedelta(minutes=5))  # first crawl requested
    evaluation, metadata = run_check(defs, instance)
    assert evaluation.passed, evaluation.description
    assert evaluation.description == "all 3 brands crawled within 7 days"
    assert metadata["stale_brands"] == []
    assert [brand["slug"] for brand in metadata["never_crawled"]] == ["zero"]


def test_brands_never_crawled_unknown_to_duckdb_delisted_or_gone(platform):
    """Bad input: a brand found 10 days ago and never crawled (its first crawl failed), a partition DuckDB does not
    know (a DuckDB file replaced under the instance), and a delisted and a gone brand not crawled for a month."""
    defs, instance, duckdb = platform
    store_brands(duckdb, instance, {"levis": ("Levi's", timedelta(days=1)), "late": ("Late & Never", None),
                                    "old": ("Old", timedelta(days=30)), "closed": ("Closed", timedelta(days=30))},
                 found_ago=timedelta(days=10))
    with duckdb.connect() as con:
        warehouse.mark_delisted(con, ["levis", "late", "closed"], NOW - timedelta(days=20))
        warehouse.record_listing_status(con, {"closed": "http_410"}, NOW - timedelta(days=20))
    instance.add_dynamic_partitions(brand_partitions.name, ["lost"])
    evaluation, metadata = run_check(defs, instance)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert {brand["slug"]: brand["name"] for brand in metadata["stale_brands"]} == {"late": "Late & Never", "lost": None}
    assert [brand["slug"] for brand in metadata["never_crawled"]] == ["late", "lost"]
    assert {item["slug"]: item["why"] for item in metadata["not_judged"]} == {
        "old": "delisted from the brand index", "closed": "gone (its listing answers 404/410)"}
    assert "late (Late & Never, never crawled, found 10.0 days ago)" in evaluation.description
    assert "lost (not in DuckDB `brands`)" in evaluation.description


def test_a_stale_brand_with_quotes_slash_and_accent_is_named_exactly(platform):
    """Bad input: the display name `Levi's "501" / Ève` (apostrophe, double quotes, slash, non-ASCII): it travels
    as a SQL parameter and comes back unchanged in the description and the metadata."""
    defs, instance, duckdb = platform
    name = 'Levi\'s "501" / Ève'
    store_brands(duckdb, instance, {"levis-501-eve": (name, timedelta(days=12)), "adidas": ("adidas", timedelta(days=2))})
    evaluation, metadata = run_check(defs, instance)
    assert not evaluation.passed
    assert metadata["stale_brands"] == [{"slug": "levis-501-eve", "name": name, "level": "fail", "days_since": 12.0,
                                         "last_crawled": metadata["stale_brands"][0]["last_crawled"]}]
    assert datetime.fromisoformat(metadata["stale_brands"][0]["last_crawled"]) == pytest.approx(NOW - timedelta(days=12), abs=timedelta(seconds=1))
    assert f"levis-501-eve ({name}, last crawled 12.0 days ago)" in evaluation.description


def test_the_check_uses_the_freshness_policys_windows_and_never_blocks():
    assert (CRAWL_FRESHNESS.warn_window.to_timedelta(), CRAWL_FRESHNESS.fail_window.to_timedelta()) == (WARN_AFTER, FAIL_AFTER)
    (spec,) = brand_catalogue.check_specs
    assert spec.key == CHECK == FRESHNESS_CHECK.key and not spec.blocking
    assert spec.automation_condition == FRESHNESS_CHECK_CONDITION


def test_automation_requests_the_check_once_a_day_at_six_utc(platform):
    """As automation_sensor evaluates it: the first evaluation only starts the clock, the evaluation after 06:00 UTC
    requests the check (alone: no asset), a later one the same day requests nothing."""
    defs, instance, duckdb = platform
    store_brands(duckdb, instance, {"levis": ("Levi's", timedelta(days=1))})
    day = datetime(2026, 12, 1, tzinfo=timezone.utc)
    cursor, requested = None, []
    for hour in (5, 7, 23, 30):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor,
                                                   evaluation_time=day + timedelta(hours=hour))
        cursor = result.cursor
        requested.append([evaluation.key for evaluation in result.results if evaluation.true_subset.size])
    assert requested == [[], [CHECK], [], [CHECK]]
    # The platform's automation_sensor evaluates it: its target (every asset) takes in the assets' checks.
    assert CHECK in automation_sensor.asset_selection.resolve_checks(defs.resolve_asset_graph())


def test_a_crawl_run_checks_freshness_after_the_crawl_and_a_recrawl_clears_a_late_brand(tmp_path, monkeypatch, demo_shop_url):
    """The real crawl: the check runs in the crawl run itself, after `pieces` (Dagster runs an asset's checks with
    it). Bad input: `levis` 9 days late (its last_crawled set back) fails the check alone; its recrawl's run then
    passes it."""
    monkeypatch.setenv("FIC_DATA_DIR", str(tmp_path))
    duckdb = DuckDBResource(path=str(tmp_path / "fic.duckdb"))
    defs = dg.Definitions(assets=[brands, brand_catalogue], jobs=[crawl_job],
                          resources={"duckdb": duckdb, "crawler": CrawlerResource(shop_url=demo_shop_url, max_pages=1)})
    with dg.instance_for_test() as instance:
        assert dg.materialize([brands], instance=instance, resources=defs.resources).success
        with duckdb.connect(read_only=True) as con:
            instance.add_dynamic_partitions(brand_partitions.name, warehouse.brand_slugs(con))  # as brand_sensor does

        with duckdb.connect() as con:
            warehouse.record_listing_status(con, {"levis": "ok"}, warehouse.utcnow() - timedelta(days=9))
        late, metadata = run_check(defs, instance)
        assert not late.passed and [brand["name"] for brand in metadata["stale_brands"]] == ["Levi's"]

        recrawl = defs.resolve_job_def("crawl_job").execute_in_process(instance=instance, partition_key="levis")
        assert recrawl.success
        (evaluation,) = recrawl.get_asset_check_evaluations()
        # The other brands, never crawled, were found just now: within the window.
        assert evaluation.passed, evaluation.description
