"""The platform driven the way a person drives it: `fic demo` and the `dagster` CLI on a temp DAGSTER_HOME."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from fic_assets import storage
from fic_assets_tests.conftest import platform_env

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, demo_shop_url):
    return platform_env(tmp_path_factory.mktemp("cli"), demo_shop_url)


def run(command: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, f"{command} exited {completed.returncode}\n{completed.stdout[-3000:]}\n{completed.stderr[-5000:]}"
    return completed


def counts(env: dict) -> dict[str, int]:
    with storage.connect(env["FIC_DUCKDB"], read_only=True) as con:
        return storage.table_counts(con)


def instance_state(env: dict) -> tuple[list[str], int]:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return instance.get_dynamic_partitions("brands"), len(instance.get_run_records())


def test_definitions_load_and_validate(cli_env):
    completed = run([str(BIN / "dagster"), "definitions", "validate", "-m", "fic_assets.definitions"], cli_env)
    assert "success" in (completed.stdout + completed.stderr).lower()


def test_demo_then_cli_materializations_are_idempotent(cli_env):
    demo = run([sys.executable, "-m", "fic_assets.cli", "demo", "--crawl-only"], cli_env)
    assert "pieces=" in demo.stdout
    partitions, runs = instance_state(cli_env)
    assert "levis" in partitions and len(partitions) >= 10
    assert runs == 2  # discover_brands_job, then one crawl run for all new brands
    after_demo = counts(cli_env)
    assert after_demo["pieces"] > 0 and after_demo["images"] > after_demo["pieces"]

    run([str(BIN / "dagster"), "asset", "materialize", "-m", "fic_assets.definitions", "--select", "pieces,image_urls", "--partition", "levis"], cli_env)
    run(
        [str(BIN / "dagster"), "job", "execute", "-m", "fic_assets.definitions", "-j", "crawl_job", "--tags", json.dumps({"dagster/partition": "levis"})],
        cli_env,
    )
    run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "fic_assets.definitions", "--select", "pieces,image_urls", "--partition-range", f"{partitions[0]}...{partitions[1]}"],
        cli_env,
    )
    second_demo = run([sys.executable, "-m", "fic_assets.cli", "demo", "--crawl-only"], cli_env)
    assert "pieces=" in second_demo.stdout

    final = counts(cli_env)
    for table in ("brands", "pieces", "images", "price_history"):
        assert final[table] == after_demo[table], table
    assert final["crawl_log"] == after_demo["crawl_log"] + 5  # 3 CLI crawls + the second demo's brands and crawl runs
    assert instance_state(cli_env) == (partitions, 2 + 3 + 2)


# The whole loop of README command 1 (crawl -> Label Studio -> retrain -> predictions -> report) is
# test_demo_photos.py::test_demo_runs_the_whole_loop_on_real_photos: the same run, on real shop photos.
