"""Declarative automation with a real `dagster-daemon run` (temp DAGSTER_HOME with the platform's dagster.yaml, the
whole code location): a model that passed `model_quality` is promoted by `automation_sensor`, the promotion
refreshes every brand in ONE run (a backfill under the single-run backfill policy), a crawl of one brand refreshes
only that brand, the report follows each refresh, and the daemon records why (the automation condition's
evaluation per asset, the runs' tags that the UI reads)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from fic_assets.platform import warehouse
from fic_assets_tests.conftest import dg_command, free_port, platform_env, stop_process_group
from fic_assets_tests.daemon_loops import quick_daemon
from fic_assets_tests.test_predictions import brand_rows, catalogue_items

BIN = Path(sys.executable).parent
BRANDS = ("jack-jones", "levis", "marc-o-polo")  # in partition order
TERMINAL = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def instance_of(env: dict) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])


def wait_for(predicate, seconds: float, what: str, daemon: subprocess.Popen, log: Path, interval: float = 1.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert daemon.poll() is None, f"dagster-daemon exited ({daemon.returncode}):\n{log.read_text()[-5000:]}"
        time.sleep(interval)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}; daemon log:\n{log.read_text()[-5000:]}")


def finished_runs(env: dict, asset: str) -> list[dg.DagsterRun]:
    """The finished runs that materialize `asset` (oldest first), or [] while any of them is still going."""
    with instance_of(env) as instance:
        runs = [run for run in instance.get_runs() if dg.AssetKey(asset) in (run.asset_selection or ())]
    if any(run.status not in TERMINAL for run in runs):
        return []
    return list(reversed(runs))


def materialized_partitions(env: dict, asset: str, run_id: str) -> set[str]:
    with instance_of(env) as instance:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=100).records
    return {record.partition_key for record in records if record.run_id == run_id}


def evaluations(env: dict, asset: str) -> list[tuple[int, set[str], set[str]]]:
    """The daemon's recorded automation evaluations of `asset` that requested something, oldest first: (how many
    partitions it requested, the runs or backfills it started, the labels of the condition's nodes that were true)."""
    import datetime

    found = []
    with instance_of(env) as instance, dg.partition_loading_context(datetime.datetime.now(datetime.timezone.utc), instance):
        for record in reversed(instance.schedule_storage.get_auto_materialize_asset_evaluations(dg.AssetKey(asset), limit=50)):
            with_run_ids = record.get_evaluation_with_run_ids()
            if with_run_ids.evaluation.true_subset.size:
                found.append((with_run_ids.evaluation.true_subset.size, set(with_run_ids.run_ids), labels_true(with_run_ids.evaluation)))
    return found


def automation_ticked(env: dict) -> bool:
    """automation_sensor's first tick is done (it records every asset's evaluation): what happens from now on is an
    update to it (its first tick takes the state it finds as handled)."""
    with instance_of(env) as instance:
        return bool(instance.schedule_storage.get_auto_materialize_asset_evaluations(dg.AssetKey("brand_predictions"), limit=1))


def labels_true(evaluation) -> set[str]:
    """The labels (or names) of the condition's nodes that were true for some partition: why it was requested."""
    found, stack = set(), [evaluation]
    while stack:
        node = stack.pop()
        if node.true_subset.size:
            snapshot = node.condition_snapshot
            found.add(snapshot.label or snapshot.name)
        stack.extend(node.child_evaluations)
    return found


def report_promotable_model(env: dict, model_dir: Path) -> None:
    """A trained model recorded as a `model` materialization with its passed `model_quality` evaluation, as a
    retrain run records them (the model here is the session's small trained one)."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData

    version = json.loads((model_dir / "card.json").read_text())["version"]
    with instance_of(env) as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key="model", metadata={"version": version, "path": dg.MetadataValue.path(str(model_dir)), "f1": 1.0}))
        record = instance.fetch_materializations(dg.AssetKey("model"), limit=1).records[0]
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("model"), check_name="model_quality", passed=True,
            target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
                storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)))


def crawled_platform(tmp_path: Path, demo_shop_url: str, **settings: str) -> dict:
    """The environment of a platform on a temp instance with three crawled brands: DuckDB rows from the demo shop's
    catalogue, the brands as partitions, their `pieces` / `image_urls` events."""
    env = platform_env(tmp_path, demo_shop_url, **settings)
    items, _ = catalogue_items(demo_shop_url, BRANDS, per_brand=3)
    with warehouse.connect(env["FIC_DUCKDB"]) as con:
        # The brand listing URLs the crawler starts from (the demo shop's /SLUG/ pages).
        names = {row["slug"]: row["name"] for row in brand_rows(items)}
        warehouse.upsert_brands(con, [{"slug": slug, "name": names[slug], "url": f"{demo_shop_url}/{slug}/"} for slug in BRANDS])
        warehouse.upsert_items(con, items)
    with instance_of(env) as instance:
        instance.add_dynamic_partitions("brands", list(BRANDS))
        for key in ("pieces", "image_urls"):
            for slug in BRANDS:
                instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=slug))
    return env


@contextmanager
def running_daemon(env: dict, log_path: Path):
    """`dagster-daemon run` on the code location as workspace.yaml names it (location `fic`, as `dg dev` and the
    compose stack name it: the sensors' state is stored under that name). Its own session: its code server and
    the runs it launches are stopped with it. It takes up queued runs and backfills within seconds (daemon_loops.py)."""
    from fic_assets.platform.settings import REPO_ROOT

    with log_path.open("ab") as log:
        process = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", str(REPO_ROOT / "workspace.yaml")], env=quick_daemon(env),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=log_path.parent)
        try:
            yield process
        finally:
            stop_process_group(process)


@pytest.fixture
def daemon(tmp_path, demo_shop_url):
    """Three crawled brands, then `dagster-daemon run` on the code location. No Label Studio: the labelling sensors'
    ticks fail and change nothing."""
    env = crawled_platform(tmp_path, demo_shop_url, FIC_LABEL_STUDIO_URL=f"http://127.0.0.1:{free_port()}")
    log_path = tmp_path / "dagster-daemon.log"
    with running_daemon(env, log_path) as process:
        yield env, process, log_path


def test_daemon_promotes_refreshes_every_brand_in_one_run_then_one_brand_after_its_crawl(daemon, trained_model):
    env, process, log = daemon

    def wait(predicate, what, seconds=240):
        return wait_for(predicate, seconds, what, process, log)

    wait(lambda: automation_ticked(env), "automation_sensor's first tick", seconds=120)
    # A checked model: automation promotes it, then predicts every brand in one run, then rebuilds the report.
    report_promotable_model(env, trained_model)
    (promotion,) = wait(lambda: finished_runs(env, "production_model"), "the promotion")
    assert promotion.status == dg.DagsterRunStatus.SUCCESS
    (refresh,) = wait(lambda: finished_runs(env, "brand_predictions"), "the predictions of every brand")
    assert refresh.status == dg.DagsterRunStatus.SUCCESS
    assert (refresh.tags["dagster/asset_partition_range_start"], refresh.tags["dagster/asset_partition_range_end"]) == (BRANDS[0], BRANDS[-1])
    assert materialized_partitions(env, "brand_predictions", refresh.run_id) == set(BRANDS)
    wait(lambda: len(finished_runs(env, "brand_report")) == 1, "the report after the predictions")

    # A crawl of one brand (the CLI, as a person runs it): only that brand is predicted again, then the report.
    crawl = subprocess.run(dg_command("launch", "--assets", "pieces,image_urls", "--partition", "levis"),
                           env=env, capture_output=True, text=True, timeout=300)
    assert crawl.returncode == 0, crawl.stderr[-4000:]
    runs = wait(lambda: (found := finished_runs(env, "brand_predictions")) and len(found) == 2 and found,
                "the predictions of the crawled brand")
    assert runs[1].status == dg.DagsterRunStatus.SUCCESS and runs[1].tags.get("dagster/partition") == "levis"
    assert materialized_partitions(env, "brand_predictions", runs[1].run_id) == {"levis"}
    reports = wait(lambda: len(found := finished_runs(env, "brand_report")) == 2 and found, "the report after the crawl")

    with instance_of(env) as instance:
        assert len(instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))) == 0
        # Every refresh was started by the automation sensor, with the tags the UI shows as its origin.
        for run in [promotion, *runs, *reports]:
            assert run.tags["dagster/sensor_name"] == "automation_sensor", run.tags
            assert run.tags["dagster/from_automation_condition"] == "true"
        # The promotion's refresh ran as a backfill (single-run backfill policy: one run for the range).
        backfill = instance.get_backfill(refresh.tags["dagster/backfill"])
        assert backfill.tags["dagster/from_automation_condition"] == "true"

    # Why: the daemon's recorded evaluation of each refresh, with the condition that made it (the UI's Automation tab).
    (promoted, promoted_runs, promoted_why), (crawled, crawled_runs, crawled_why) = evaluations(env, "brand_predictions")
    assert (promoted, crawled) == (len(BRANDS), 1)
    assert refresh.tags["dagster/backfill"] in promoted_runs and runs[1].run_id in crawled_runs
    assert {"eager", "any_deps_updated"} <= promoted_why and {"eager", "any_deps_updated"} <= crawled_why
    ((_, _, promotion_why),) = evaluations(env, "production_model")
    assert "eager once model_quality passed" in promotion_why and "all_deps_blocking_checks_passed" in promotion_why
