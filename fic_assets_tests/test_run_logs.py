"""Python logs reach the run's log: the platform's dagster.yaml (`python_logs`) hands the `fic_assets` loggers to
Dagster, so what training and the image downloads log shows in the run's log in the UI.

Real runs of the real assets (`model`, `brand_predictions`) on an instance loaded from the platform's own
dagster.yaml in a temp DAGSTER_HOME, real training on demo images, a real misbehaving image host.
"""

from __future__ import annotations

import shutil

import dagster as dg
import pytest
import yaml

from fic_assets.defs.dataset.dvc import ImageSetStore
from fic_assets.defs.model import artifact
from fic_assets.defs.model.assets import model
from fic_assets.demo.sample import write_demo_image_set
from fic_assets.platform import warehouse
from fic_assets.platform.instance import TEMPLATE
from fic_assets.platform.warehouse import DuckDBResource
from fic_assets_tests.hostile_host import HostileHost
from fic_assets_tests.test_model import FAST_PARAMS


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(TEMPLATE, home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def run_log(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The run's log lines that are not Dagster's own events: what Python loggers wrote."""
    return [entry.user_message for entry in instance.all_logs(run_id) if entry.dagster_event is None]


def test_training_progress_is_in_the_run_log(instance, tmp_path, monkeypatch):
    monkeypatch.setenv("FIC_MODELS_DIR", str(tmp_path / "models"))
    images = tmp_path / "images"
    write_demo_image_set(images, 40, seed=3, width=240)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(FAST_PARAMS))
    store = ImageSetStore(dvc_root=str(tmp_path), image_set_dir=str(images), endpoint_url="http://127.0.0.1:9",
                          bucket="unused", access_key_id="unused", secret_access_key="unused")  # training reads the dir only
    result = dg.materialize([model], instance=instance, resources={"image_store": store},
                            run_config={"ops": {"model": {"config": {"params_file": str(params)}}}})
    assert result.success
    lines = run_log(instance, result.run_id)
    assert any(line.startswith("features of 40 images") for line in lines), lines
    (folds,) = [line for line in lines if line.startswith("cross-validation 1 of 1: F1 per fold ")]
    assert len(folds.rsplit("fold ", 1)[1].split(", ")) == FAST_PARAMS["prepare"]["folds"]
    assert any(line.startswith("final probe fitted on all 40 images") for line in lines), lines
    assert any(line.startswith("trained ") and "cross-validated F1" in line for line in lines), lines


def test_image_download_retry_is_in_the_run_log(instance, tmp_path, monkeypatch, trained_model):
    """Bad input: an image host that answers 503 (Retry-After: 0) once before it serves the image."""
    from fic_assets.definitions import domain_defs

    monkeypatch.setenv("FIC_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("FIC_IMAGE_CACHE_DIR", str(tmp_path / "cache"))
    artifact.promote(trained_model, "v1", {"f1": 1.0})
    with HostileHost() as host:
        flaky = f"{host.url}/flaky/a?fail=1"
        duckdb = tmp_path / "fic.duckdb"
        with warehouse.connect(duckdb) as con:
            warehouse.upsert_brands(con, [{"slug": "levis", "name": "Levi's", "url": f"{host.url}/levis/"}])
            warehouse.upsert_items(con, [{
                "item_id": "LE1", "sku": "LE1", "name": "Jeans", "brand": "Levi's", "brand_slug": "levis", "price": 89.95,
                "currency": "EUR", "colour": "blue", "url": f"{host.url}/levis/jeans.html",
                "images": [{"url": flaky, "position": 0, "is_packshot": False}],
            }])
        instance.add_dynamic_partitions("brands", ["levis"])
        defs = dg.Definitions.merge(domain_defs("predictions"), dg.Definitions(resources={"duckdb": DuckDBResource(path=str(duckdb))}))
        result = defs.resolve_job_def("predict_job").execute_in_process(instance=instance, partition_key="levis")
        assert result.success and host.hits["/flaky/a"] == 2
    retries = [line for line in run_log(instance, result.run_id) if line.startswith("image download retry ")]
    assert len(retries) == 1 and retries[0].startswith("image download retry 1 of ")
    assert retries[0].endswith(f" in 0.0 s: {flaky}: HTTP 503"), retries
