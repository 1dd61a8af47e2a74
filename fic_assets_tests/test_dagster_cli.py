"""The platform driven the way a person drives it: `fic demo` and the `dg` CLI (the README's commands) on a temp
DAGSTER_HOME."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import dagster as dg
import pytest

from fic_assets.platform import warehouse
from fic_assets.defs.shared import brand_keys_in_range
from fic_assets_tests.conftest import dg_command, platform_env


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, demo_shop_url):
    return platform_env(tmp_path_factory.mktemp("cli"), demo_shop_url)


def run(command: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, f"{command} exited {completed.returncode}\n{completed.stdout[-3000:]}\n{completed.stderr[-5000:]}"
    # The commands a user follows print no "superseded" / deprecation warning (Dagster 1.13 warns on the old CLI).
    for warning in ("SupersessionWarning", "DeprecationWarning", "is superseded"):
        assert warning not in completed.stderr, f"{command} warned:\n{completed.stderr[-3000:]}"
    return completed


def counts(env: dict) -> dict[str, int]:
    with warehouse.connect(env["FIC_DUCKDB"], read_only=True) as con:
        return warehouse.table_counts(con)


def instance_state(env: dict) -> tuple[list[str], int]:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return instance.get_dynamic_partitions("brands"), len(instance.get_run_records())


def test_dg_finds_the_project_checks_and_lists_its_definitions(cli_env):
    """`dg` (pyproject's [tool.dg]) from the repository root: `dg check defs` loads the code location, and
    `dg list defs --json` lists the platform's assets, jobs and sensors."""
    checked = run(dg_command("check", "defs"), cli_env)
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    listed = run(dg_command("list", "defs", "--json"), cli_env)
    defs = json.loads(listed.stdout)
    assets = {asset["asset_key"] for asset in defs["assets"]}
    assert {"brands", "pieces", "image_urls", "label_tasks", "human_labels", "image_set", "model", "production_model",
            "brand_predictions", "brand_report"} <= assets
    assert {"retrain_job", "predict_job", "crawl_job"} <= {job["name"] for job in defs["jobs"]}
    assert {"brand_sensor", "relabel_sensor", "automation_sensor"} <= {sensor["name"] for sensor in defs["sensors"]}
    # The UI renders descriptions as markdown: a bare <word> would vanish as an HTML tag (`models//.` for the model).
    described = {(kind, entry.get("key") or entry.get("name") or entry.get("asset_key")): entry.get("description") or ""
                 for kind, entries in defs.items() for entry in entries}
    assert "`models/<version>/`" in described[("assets", "model")]
    eaten = {name: text for name, text in described.items() if re.search(r"<[^>\s]+>", re.sub(r"`[^`]*`", "", text))}
    assert not eaten, eaten


def test_demo_then_cli_materializations_are_idempotent(cli_env):
    demo = run([sys.executable, "-m", "fic_assets.cli", "demo", "--crawl-only"], cli_env)
    assert "pieces=" in demo.stdout
    partitions, runs = instance_state(cli_env)
    assert "levis" in partitions and len(partitions) >= 10
    assert runs == 2  # discover_brands_job, then one crawl run for all new brands
    after_demo = counts(cli_env)
    assert after_demo["pieces"] > 0 and after_demo["images"] > after_demo["pieces"]

    run(dg_command("launch", "--assets", "pieces,image_urls", "--partition", "levis"), cli_env)
    run(dg_command("launch", "--job", "crawl_job", "--partition", "levis"), cli_env)
    run(dg_command("launch", "--assets", "pieces,image_urls", "--partition-range", f"{partitions[0]}...{partitions[1]}"), cli_env)
    second_demo = run([sys.executable, "-m", "fic_assets.cli", "demo", "--crawl-only"], cli_env)
    assert "pieces=" in second_demo.stdout

    final = counts(cli_env)
    for table in ("brands", "pieces", "images", "price_history"):
        assert final[table] == after_demo[table], table
    assert final["crawl_log"] == after_demo["crawl_log"] + 5  # 3 CLI crawls + the second demo's brands and crawl runs
    assert instance_state(cli_env) == (partitions, 2 + 3 + 2)


# The whole loop of README command 1 (crawl -> Label Studio -> retrain -> predictions -> report) is
# test_demo_photos.py::test_demo_runs_the_whole_loop_on_real_photos: the same run, on real shop photos.


def test_a_reversed_or_unknown_partition_range_is_a_clear_error(tmp_path, demo_shop_url):
    """Bad input: `dg launch --partition-range 'levis...jack-jones'` (reversed: the partitions run jack-jones, levis,
    vero-moda, as brand_sensor adds them, sorted) and 'jack-jones...nope' (no such brand partition)."""
    env = platform_env(tmp_path, demo_shop_url)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.add_dynamic_partitions("brands", ["jack-jones", "levis", "vero-moda"])

    def launch(*args: str) -> str:
        completed = subprocess.run(dg_command("launch", *args), env=env, capture_output=True, text=True, timeout=300)
        assert completed.returncode != 0, completed.stdout[-2000:]
        return completed.stdout + completed.stderr

    reversed_crawl = launch("--assets", "pieces,image_urls", "--partition-range", "levis...jack-jones")
    assert ("partition range 'levis...jack-jones' is reversed" in reversed_crawl
            and "did you mean 'jack-jones...levis'? The order: jack-jones, levis, vero-moda" in reversed_crawl), reversed_crawl[-3000:]
    assert "no brands to crawl" not in reversed_crawl
    # An unknown brand: Dagster's CLI checks the range's keys before any run starts, and names the missing one.
    unknown = launch("--assets", "brand_predictions", "--partition-range", "jack-jones...nope")
    assert "Could not find a partition with key `nope`" in unknown, unknown[-3000:]


def test_range_check_names_unknown_brands_and_keeps_long_orders_short():
    """Bad input: ranges naming brands that are no partition (as a run request or the Python API may pass them)."""
    known = [f"brand-{n:02d}" for n in range(30)]
    assert brand_keys_in_range("brand-03", "brand-05", known) == ["brand-03", "brand-04", "brand-05"]
    assert brand_keys_in_range("brand-07", "brand-07", known) == ["brand-07"]
    with pytest.raises(ValueError, match=r"no brand partition 'nope' or 'gone'; the brand partitions, in order: "
                                         r"brand-00, .*brand-09, \.\.\. \(15 more\), brand-25, .*brand-29 \("):
        brand_keys_in_range("nope", "gone", known)
    with pytest.raises(ValueError, match=r"'brand-09\.\.\.brand-02' is reversed.*did you mean 'brand-02\.\.\.brand-09'"):
        brand_keys_in_range("brand-09", "brand-02", known)
