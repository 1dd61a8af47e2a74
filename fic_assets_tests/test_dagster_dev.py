"""`dg dev` for real (webserver + daemon, temp DAGSTER_HOME): the daemon's brand_sensor turns a `brands`
materialization into partitions and a first crawl, the UI's GraphQL API lists the platform's assets, and an
"all brands" backfill launched the way the UI launches it runs as one crawl run without DuckDB lock errors.
Then a model is promoted: the daemon's automation_sensor predicts every brand in one run, and an "all brands"
backfill of `brand_predictions` from the UI is again one clean run that finds nothing left to predict."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from fic_assets.defs.model import artifact
from fic_assets.platform import warehouse
from fic_assets_tests.conftest import dg_command, free_port, platform_env, stop_process_group, wait_for
from fic_assets_tests.daemon_loops import quick_daemon

BIN = Path(sys.executable).parent


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{url}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer
    return answer["data"]


def server_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def dagster_dev(tmp_path, demo_shop_url):
    # No Label Studio in this test: the labelling sensors' ticks fail clearly and change nothing.
    env = platform_env(tmp_path, demo_shop_url, FIC_LABEL_STUDIO_URL=f"http://127.0.0.1:{free_port()}")
    # `brands` from the CLI before the daemon starts: brand_sensor's first tick then has work to do.
    subprocess.run(
        dg_command("launch", "--assets", "brands"),
        env=env, check=True, capture_output=True, timeout=300,
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "dagster_dev.log").open("wb")
    # Own session: `dg dev` ignores SIGTERM sent to its shell, so the whole group is killed afterwards.
    # Its daemon takes up queued runs and backfills within seconds (daemon_loops.py): three backfills here.
    server = subprocess.Popen(
        dg_command("dev", "-h", "127.0.0.1", "-p", str(port)),
        env=quick_daemon(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
    )
    try:
        wait_for(lambda: server.poll() is not None or server_up(url), 120, "dg dev to answer", interval=1)
        assert server.poll() is None, (tmp_path / "dagster_dev.log").read_text()[-3000:]
        yield url, env
    finally:
        stop_process_group(server)
        log.close()


ASSETS_QUERY = "{ assetNodes { assetKey { path } isPartitioned } }"
LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } ... on PythonError { message } }
}"""


def first_crawl_run(env: dict):
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"fic/trigger": "new_brands"}))
        if runs and runs[0].status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
            return runs[0], instance.get_dynamic_partitions("brands")
    return None


def launch_all_brands_backfill(url: str, assets: list[str]) -> str:
    launched = graphql(
        url, LAUNCH_BACKFILL, {"params": {"assetSelection": [{"path": [key]} for key in assets], "allPartitions": True}}
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def wait_for_backfill(url: str, backfill_id: str, env: dict, seconds: float = 240):
    """The backfill's runs once it finished successfully."""

    def finished():
        status = graphql(url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"]
        return status if status in ("COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED", "COMPLETED") else None

    assert wait_for(finished, seconds, "the backfill to finish", interval=2) in ("COMPLETED_SUCCESS", "COMPLETED")
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))


def finished_run(env: dict, tags: dict, asset: str):
    """The latest run with these tags that materializes `asset`, once it finished."""
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = [run for run in instance.get_runs(filters=dg.RunsFilter(tags=tags)) if dg.AssetKey(asset) in (run.asset_selection or ())]
        if runs and runs[0].status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
            return runs[0]
    return None


def test_sensor_first_crawl_then_ui_backfill_of_all_brands_is_one_clean_run(dagster_dev, trained_model):
    url, env = dagster_dev
    run, partitions = wait_for(lambda: first_crawl_run(env), 180, "brand_sensor's first crawl run", interval=2)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert "levis" in partitions and len(partitions) >= 10

    nodes = {tuple(node["assetKey"]["path"]): node["isPartitioned"] for node in graphql(url, ASSETS_QUERY)["assetNodes"]}
    assert {("brands",): False, ("pieces",): True, ("image_urls",): True}.items() <= nodes.items()
    assert {("label_studio_project",), ("label_tasks",), ("human_labels",)} <= nodes.keys()

    with warehouse.connect(Path(env["FIC_DATA_DIR"]) / "fic.duckdb", read_only=True) as con:
        before = warehouse.table_counts(con)

    runs = wait_for_backfill(url, launch_all_brands_backfill(url, ["pieces", "image_urls"]), env)
    assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS  # single-run backfill policy
    assert (runs[0].tags["dagster/asset_partition_range_start"], runs[0].tags["dagster/asset_partition_range_end"]) == (partitions[0], partitions[-1])

    with warehouse.connect(Path(env["FIC_DATA_DIR"]) / "fic.duckdb", read_only=True) as con:
        after = warehouse.table_counts(con)
    assert after["crawl_log"] == before["crawl_log"] + 1
    assert {k: after[k] for k in ("brands", "pieces", "images")} == {k: before[k] for k in ("brands", "pieces", "images")}

    # A retrain promotes a model (here: the pointer plus the asset event a `production_model` run records).
    version = json.loads((trained_model / "card.json").read_text())["version"]
    artifact.promote(trained_model, version, {"f1": 1.0}, root=Path(env["FIC_MODELS_DIR"]))
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="production_model"))
    predicted = wait_for(lambda: finished_run(env, {"dagster/sensor_name": "automation_sensor"}, "brand_predictions"), 240, "automation_sensor's predict run", interval=2)
    assert predicted.status == dg.DagsterRunStatus.SUCCESS
    assert (predicted.tags["dagster/asset_partition_range_start"], predicted.tags["dagster/asset_partition_range_end"]) == (partitions[0], partitions[-1])
    with warehouse.connect(Path(env["FIC_DATA_DIR"]) / "fic.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT image_url), min(model_version) FROM predictions").fetchone() == (after["images"], after["images"], version)

    runs = wait_for_backfill(url, launch_all_brands_backfill(url, ["brand_predictions"]), env)
    assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("brand_predictions"))
    metadata = event.asset_materialization.metadata
    assert metadata["brands"].value == len(partitions)
    assert metadata["unchanged"].value + metadata["predicted"].value == after["images"]
    assert metadata["predicted"].value == metadata["errors"].value  # only the failed images were tried again
