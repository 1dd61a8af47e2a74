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


def test_demo_runs_the_whole_loop(tmp_path, demo_shop_url, label_studio, s3):
    """README command 1's job, on a fresh instance: crawl, a labelling round, the SIMULATED annotator, labels,
    a retrain (DVC push to S3, training, quality gate, promotion) and the next round pre-annotated by the new
    model. With a perfect annotator the labels equal the kept truth."""
    import yaml

    from fic_assets_tests.test_model_assets import FAST_PARAMS

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**FAST_PARAMS, "evaluate": {"min_f1": 0.5}}))
    from fic_assets.demo_shop.catalogue import build_catalogue, truth_rows
    from fic_assets.labelling.simulated_annotator import truth_by_url

    env = platform_env(
        tmp_path,
        demo_shop_url,
        FIC_LABEL_STUDIO_URL=label_studio.url,
        FIC_LABEL_STUDIO_TOKEN=label_studio.token,
        FIC_LABEL_STUDIO_DATA_DIR=str(label_studio.data_dir),
        FIC_S3_ENDPOINT=s3.endpoint_url,
        FIC_S3_BUCKET=s3.bucket,
        FIC_S3_PREFIX=f"demo-{tmp_path.name}",
        FIC_S3_ACCESS_KEY=s3.access_key_id,
        FIC_S3_SECRET_KEY=s3.secret_access_key,
        FIC_DVC_ROOT=str(tmp_path / "project"),
        FIC_IMAGE_SET_DIR=str(tmp_path / "project" / "datasets" / "images"),
        FIC_MODELS_DIR=str(tmp_path / "models"),
        FIC_PARAMS_FILE=str(params),
    )
    home = env["DAGSTER_HOME"]
    demo = run([sys.executable, "-m", "fic_assets.cli", "demo", "--error-rate", "0"], env, timeout=600)
    assert "SIMULATED annotator answered 200 tasks" in demo.stdout

    with storage.connect(env["FIC_DUCKDB"], read_only=True) as con:
        labels = dict(con.execute("SELECT image_url, label FROM labels").fetchall())
        tasks = con.execute("SELECT count(*), count(DISTINCT image_url) FROM label_tasks").fetchone()
    truth = truth_by_url(truth_rows(build_catalogue(seed=42), demo_shop_url))
    assert len(labels) == 200 and all(truth[url] == label for url, label in labels.items())
    assert tasks == (400, 400)  # round 1, then round 2 from relabel_sensor (200 new labels >= 50)
    with dg.DagsterInstance.from_config(home) as instance:
        jobs = sorted(run.job_name for run in instance.get_runs())
    assert jobs == ["crawl_job", "discover_brands_job", "human_labels_job", "labelling_round_job", "labelling_round_job",
                    "predict_job", "report_job", "retrain_job"]
    production = json.loads((tmp_path / "models" / "production.json").read_text())
    with storage.connect(env["FIC_DUCKDB"], read_only=True) as con:
        hinted = con.execute("SELECT count(*) FROM label_tasks WHERE pre_model_version = ?", [production["version"]]).fetchone()[0]
    assert hinted > 150  # round 2 was pre-annotated by the promoted model (broken images keep the packshot hint)

    # Step 4: every image predicted by the production model, flags mirrored, and the report written.
    with storage.connect(env["FIC_DUCKDB"], read_only=True) as con:
        predicted = con.execute(
            """SELECT count(*), count(*) FILTER (WHERE r.model_version = ?),
                      count(*) FILTER (WHERE i.flag_model = CASE r.label WHEN 'worn' THEN 1 WHEN 'not_worn' THEN 0 ELSE -1 END)
               FROM images i JOIN predictions r USING (image_url)""", [production["version"]]).fetchone()
        images = con.execute("SELECT count(*) FROM images").fetchone()[0]
    assert predicted == (images, images, images)
    report = (tmp_path / "reports" / "index.html").read_text(encoding="utf-8")
    assert "Levi&#39;s" in report and "Björn Borg" in report
