"""The crawl as a Dagster Pipes process, for real: the demo shop (behind a proxy that slows product pages, so the
crawl lasts long enough to be watched), Scrapy subprocesses, a Dagster instance on a temp DAGSTER_HOME with the
platform's dagster.yaml, and the `dg` CLI. Its progress reaches the run's event log while Scrapy still crawls,
each brand partition's materialization carries that brand's own counts, and a plain `scrapy crawl` (no Dagster)
works as before."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from fic_assets.platform import warehouse
from fic_assets.platform.warehouse import DuckDBResource
from fic_assets_tests.conftest import dg_command, platform_env, wait_for
from fic_assets_tests.reliability import CRAWL_BRANDS, ShopProxy, expected_catalogue, my_children, seed_brands

CRAWLER_DIR = Path(__file__).resolve().parents[1] / "crawler"


@pytest.fixture
def slow_shop(demo_shop_url):
    """The demo shop behind a proxy that delays each product page by 0.3 s: a three-brand crawl of ~10 s."""
    with ShopProxy(demo_shop_url, lambda kind, path, n: 0.3 if kind == "product" else None) as proxy:
        yield proxy


def progress_lines(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id) if entry.user_message.startswith("crawl progress:")]


def test_crawl_progress_reaches_the_run_log_while_scrapy_runs_and_each_brand_partition_has_its_own_counts(
        slow_shop, tmp_path, monkeypatch):
    from fic_assets.defs.crawl.assets import brand_catalogue
    from fic_assets.defs.crawl.crawler import CrawlerResource
    from fic_assets.defs.crawl.jobs import crawl_job

    env = platform_env(tmp_path, slow_shop.url)
    monkeypatch.setenv("FIC_DATA_DIR", env["FIC_DATA_DIR"])  # crawl feeds and logs
    monkeypatch.setenv("FIC_PROGRESS_SECONDS", "1")  # read by the Scrapy subprocess
    seed_brands(env, slow_shop.url)
    defs = dg.Definitions(assets=[brand_catalogue], jobs=[crawl_job], resources={
        "duckdb": DuckDBResource(path=env["FIC_DUCKDB"]), "crawler": CrawlerResource(shop_url=slow_shop.url, max_pages=1)})
    tags = {"dagster/asset_partition_range_start": CRAWL_BRANDS[0], "dagster/asset_partition_range_end": CRAWL_BRANDS[-1]}

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        outcome = {}
        crawl = threading.Thread(target=lambda: outcome.update(
            result=defs.resolve_job_def("crawl_job").execute_in_process(instance=instance, tags=tags, raise_on_error=False)))
        crawl.start()
        wait_for(lambda: instance.get_run_records(), 60, "the crawl run to start")
        run_id = instance.get_run_records()[0].dagster_run.run_id
        wait_for(lambda: progress_lines(instance, run_id) or not crawl.is_alive(), 120, "a progress line in the run's log")
        # The line is in Dagster's event log while the Scrapy process is still running: streamed, not read afterwards.
        assert my_children(str(Path(env["FIC_DATA_DIR"]) / "crawls")), "Scrapy had already ended"
        first_seen = progress_lines(instance, run_id)[0]
        crawl.join(timeout=300)
        result = outcome["result"]
        assert result.success
        lines = progress_lines(instance, run_id)
        finished = [entry.user_message for entry in instance.all_logs(run_id) if entry.user_message.startswith("crawl finished")]

    expected = {slug: expected_catalogue(slow_shop.url, [slug])[0] for slug in CRAWL_BRANDS}
    total = sum(len(items) for items in expected.values())
    assert f"{total} items" not in first_seen, first_seen  # seen mid-crawl: not every item yet
    assert len(finished) == 1 and f"{total} items" in finished[0] and "no_images 1" in finished[0], finished
    for slug in CRAWL_BRANDS:  # each brand named with its own counts while it crawled
        assert any(f"{slug} " in line and " items / " in line for line in lines), (slug, lines)

    by_partition = {(m.asset_key.to_user_string(), m.partition): {k: v.value for k, v in m.metadata.items()}
                    for m in result.asset_materializations_for_node("brand_catalogue")}
    assert set(by_partition) == {(asset, slug) for asset in ("pieces", "image_urls") for slug in CRAWL_BRANDS}
    with warehouse.connect(env["FIC_DUCKDB"], read_only=True) as con:
        stored = dict(con.execute("SELECT brand_slug, count(*) FROM pieces GROUP BY brand_slug").fetchall())
        images = dict(con.execute("""SELECT p.brand_slug, count(DISTINCT l.image_url) FROM piece_images l
                                     JOIN pieces p USING (item_id) GROUP BY p.brand_slug""").fetchall())
    for slug in CRAWL_BRANDS:
        pieces, image_urls = by_partition[("pieces", slug)], by_partition[("image_urls", slug)]
        assert pieces["pieces"] == len(expected[slug]) == stored[slug], slug
        assert image_urls["images"] == images[slug], slug
        assert pieces["listing_status"] == "ok" and pieces["pages"] == len(expected[slug]) + 1 + (slug == "bjorn-borg")
        assert pieces["run"]["pieces"] == total and pieces["run"]["brands"] == len(CRAWL_BRANDS)
    # Bad input: Björn Borg's truncated product page is a drop of that brand only.
    assert by_partition[("pieces", "bjorn-borg")]["dropped_by_reason"] == {"no_images": 1}
    assert by_partition[("pieces", "levis")]["dropped"] == by_partition[("pieces", "jack-jones")]["dropped"] == 0


def test_plain_scrapy_crawl_outside_dagster_works_as_before_and_counts_per_brand(demo_shop_url, tmp_path):
    """`scrapy crawl` from the command line (README): no Pipes, no Dagster warning, the feed and stats as before, plus
    the per-brand counts in the stats."""
    feed, stats_file = tmp_path / "levis.jsonl", tmp_path / "stats.json"
    completed = subprocess.run(
        [sys.executable, "-m", "scrapy", "crawl", "zalando", "-a", "brands=levis", "-a", "max_pages=1",
         "-O", f"{feed}:jsonlines", "-s", f"FIC_STATS_FILE={stats_file}"],
        cwd=CRAWLER_DIR, env={**platform_env(tmp_path, demo_shop_url), "FIC_PROGRESS_SECONDS": "1"},
        capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Pipes" not in completed.stderr and "crawl progress" not in completed.stderr
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    items = feed.read_text(encoding="utf-8").splitlines()
    assert stats["item_scraped_count"] == len(items) > 0
    assert stats["fic/brand/levis/pages"] == len(items) + 1  # the listing page and its product pages


def test_pieces_alone_crawls_once_and_writes_only_pieces_then_image_urls_alone_only_images(demo_shop_url, tmp_path):
    """Bad input (issue 14): `dg launch --assets pieces --partition levis`, without image_urls, once a raw
    DagsterInvalidSubsetError. It runs, stores levis's pieces and no image; image_urls alone then adds the images."""
    env = platform_env(tmp_path, demo_shop_url)
    seed_brands(env, demo_shop_url, slugs=("levis",))

    def launch(assets: str) -> dict[str, int]:
        completed = subprocess.run(dg_command("launch", "--assets", assets, "--partition", "levis"), env=env,
                                   capture_output=True, text=True, timeout=300)
        assert completed.returncode == 0, completed.stderr[-5000:]
        assert "DeprecationWarning" not in completed.stderr, completed.stderr[-3000:]
        with warehouse.connect(env["FIC_DUCKDB"], read_only=True) as con:
            return warehouse.table_counts(con)

    def materialized(instance: dg.DagsterInstance) -> dict[str, set]:
        return {asset: instance.get_materialized_partitions(dg.AssetKey(asset)) for asset in ("pieces", "image_urls")}

    pieces_only = launch("pieces")
    assert pieces_only["pieces"] > 0 and pieces_only["price_history"] == pieces_only["pieces"]
    assert (pieces_only["images"], pieces_only["crawl_log"]) == (0, 1)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert materialized(instance) == {"pieces": {"levis"}, "image_urls": set()}

    images_only = launch("image_urls")
    assert images_only["images"] > 0 and images_only["pieces"] == pieces_only["pieces"]
    assert images_only["price_history"] == pieces_only["price_history"]
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert materialized(instance) == {"pieces": {"levis"}, "image_urls": {"levis"}}


def test_pieces_carries_a_weekly_freshness_policy():
    """The weekly recrawl: `pieces` warns after 7 days without a crawl and fails after 8 (Dagster's freshness
    daemon, on by default in 1.13, shows it on the asset in the UI)."""
    from fic_assets.definitions import defs

    policy = defs().get_repository_def().asset_graph.get(dg.AssetKey("pieces")).freshness_policy
    assert policy == dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8), warn_window=timedelta(days=7))
    assert (policy.fail_window.to_timedelta(), policy.warn_window.to_timedelta()) == (timedelta(days=8), timedelta(days=7))
