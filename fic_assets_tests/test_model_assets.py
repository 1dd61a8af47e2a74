"""image_set -> model -> model_quality -> production_model on real components: the demo shop's images over
HTTP, DVC pushing to a real S3 API (moto_server), real training, a temp Dagster instance."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest
import yaml

from fic_assets.defs.model import artifact
from fic_assets.defs.dataset.assets import image_set
from fic_assets.defs.model.assets import model, model_quality, production_model
from fic_assets.defs.model.jobs import retrain_job
from fic_assets.demo.shop.catalogue import build_catalogue, image_url
from fic_assets.defs.dataset.dvc import DvcError
from fic_assets.defs.labelling import labels
from fic_assets.defs.model.evaluate import cv_rows
from fic_assets.defs.model.gate import Comparison, judge_candidate, quality_verdict
from fic_assets.defs.model.params import merged
from fic_assets.defs.model.train import EVAL_DIR, train_candidate
from fic_assets.demo.sample import write_demo_image_set
from fic_assets.platform.warehouse import DuckDBResource
from fic_assets.defs.dataset.dvc import ImageSetStore
from fic_assets_tests.conftest import free_port
from fic_assets_tests.test_model import FAST_PARAMS as ML_TEST_PARAMS

# Small images, one CV repeat: these tests are about the platform around training, test_model.py about training itself.
FAST_PARAMS = ML_TEST_PARAMS


def labelled_demo_images(base_url: str, n: int = 48, skip: int = 0) -> list[tuple[str, str]]:
    """n healthy demo images (balanced by truth, after the first `skip` of each class) plus three broken ones
    labelled as if a person had not looked."""
    images = [image for product in build_catalogue(42).products for image in product.images]
    healthy = [i for i in images if i.defect is None]
    worn = [i for i in healthy if i.truth == "worn"][skip: skip + n // 2]
    not_worn = [i for i in healthy if i.truth == "not_worn"][skip: skip + n // 2]
    broken = [i for i in images if i.defect in ("truncated", "empty", "html")]
    return [(image_url(base_url, i), i.truth) for i in worn + not_worn + broken]


def seed_labels(duckdb: DuckDBResource, labelled: list[tuple[str, str]]) -> None:
    now = pd.Timestamp.now(tz="UTC")
    frame = pd.DataFrame(
        [{"image_url": url, "item_id": None, "label": label, "annotator": "tester", "annotated_at": now, "task_id": n,
          "annotation_id": n, "lead_time": 1.0, "annotations": 1, "agreement": 1.0} for n, (url, label) in enumerate(labelled, 1)]
    )
    with duckdb.connect() as con:
        labels.write_labels(con, frame)


def store(tmp_path, s3, endpoint: str | None = None, secret: str | None = None) -> ImageSetStore:
    project = tmp_path / "project"
    return ImageSetStore(
        dvc_root=str(project), image_set_dir=str(project / "datasets" / "images"), endpoint_url=endpoint or s3.endpoint_url,
        bucket=s3.bucket, prefix=f"test-{tmp_path.name}", access_key_id=s3.access_key_id, secret_access_key=secret or s3.secret_access_key,
    )


GATE = {"min_f1": 0.6, "min_compare_images": 10}


@pytest.fixture
def platform(tmp_path, demo_shop_url, s3, monkeypatch):
    monkeypatch.setenv("FIC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FIC_MODELS_DIR", str(tmp_path / "models"))
    duckdb = DuckDBResource(path=str(tmp_path / "fic.duckdb"))
    seed_labels(duckdb, labelled_demo_images(demo_shop_url))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**FAST_PARAMS, "evaluate": GATE}))
    resources = {"duckdb": duckdb, "image_store": store(tmp_path, s3)}
    defs = dg.Definitions(assets=[image_set, model, production_model], asset_checks=[model_quality], jobs=[retrain_job], resources=resources)
    with dg.instance_for_test() as instance:
        yield defs, instance, params, tmp_path


def retrain(defs, instance, params_file):
    return defs.resolve_job_def("retrain_job").execute_in_process(
        instance=instance, run_config={"ops": {"model": {"config": {"params_file": str(params_file)}}}}, raise_on_error=False
    )


def check_metadata(result) -> dict:
    (evaluation,) = result.get_asset_check_evaluations()
    return {key: value.value for key, value in evaluation.metadata.items()}


def test_retrain_versions_the_image_set_gates_and_promotes(platform, demo_shop_url):
    defs, instance, params, tmp_path = platform
    first = retrain(defs, instance, params)
    assert first.success

    (image_event,) = first.asset_materializations_for_node("image_set")
    digest = image_event.metadata["dvc_hash"].value
    assert digest.endswith(".dir") and image_event.metadata["rejects"].value  # the three broken images
    assert {reason.split(":")[0] for reason in image_event.metadata["rejects"].value.values()} == {"truncated", "empty", "not_an_image"}
    assert [c.passed for c in first.get_asset_check_evaluations()] == [True]
    checked = check_metadata(first)
    # Cross-validated on every usable labelled image, with its spread; no production model to compare with yet.
    assert checked["cv_images"] == 48 and checked["cv_folds"] == 4 and "48 labelled images" in checked["evaluated_on"]
    assert 0.0 <= checked["candidate_f1_std"] <= 0.5
    assert "production_f1" not in checked and "production_version" not in checked

    pointer = artifact.production()
    (model_event,) = first.asset_materializations_for_node("model")
    assert pointer["version"] == model_event.metadata["version"].value
    card = json.loads((tmp_path / "models" / pointer["version"] / "card.json").read_text())
    assert card["image_set_hash"] == digest and card["n_train"] == 48  # the final model is fitted on all of them
    assert "data:image/png;base64," in model_event.metadata["confusion_matrix"].value

    # A stricter gate: the next model fails model_quality, so production stays on the first one.
    params.write_text(yaml.safe_dump({**FAST_PARAMS, "evaluate": {**GATE, "min_f1": 1.01}}))
    second = retrain(defs, instance, params)
    assert not second.success
    assert [c.passed for c in second.get_asset_check_evaluations()] == [False]
    assert not second.asset_materializations_for_node("production_model")
    assert artifact.production()["version"] == pointer["version"]
    # Same labels, same set: the image set's data version did not move.
    assert second.asset_materializations_for_node("image_set")[0].metadata["dvc_hash"].value == digest
    # Nor can the failed candidate be promoted by selecting production_model on its own (the UI, the CLI).
    alone = dg.materialize([production_model], instance=instance, raise_on_error=False)
    assert not alone.success and artifact.production()["version"] == pointer["version"]
    failure = next(event for event in alone.all_events if event.event_type_value == "STEP_FAILURE")
    assert "failed model_quality" in str(failure.event_specific_data.error)

    # 24 more labels: the candidate's out-of-fold scores and production's scores on the same 24 images
    # production never saw are compared.
    seed_labels(defs.resources["duckdb"], labelled_demo_images(demo_shop_url) + labelled_demo_images(demo_shop_url, 24, skip=24))
    params.write_text(yaml.safe_dump({**FAST_PARAMS, "evaluate": GATE}))
    third = retrain(defs, instance, params)
    assert third.success
    compared = check_metadata(third)
    assert compared["cv_images"] == 72 and compared["compared_images"] == 24
    assert compared["production_version"] == pointer["version"] and 0.0 <= compared["production_f1"] <= 1.0
    assert artifact.production()["version"] != pointer["version"]


def test_s3_down_fails_clearly_keeps_the_local_set_and_the_next_run_pushes(platform, s3):
    """Bad input: the S3 endpoint (MinIO) is down during `dvc push`."""
    defs, instance, params, tmp_path = platform
    down = {**defs.resources, "image_store": store(tmp_path, s3, endpoint=f"http://127.0.0.1:{free_port()}")}
    with pytest.raises(DvcError, match="not reachable"):
        dg.materialize([image_set], resources=down, instance=instance)
    images = tmp_path / "project" / "datasets" / "images"
    assert len(list(images.glob("*/*.jpg"))) == 48  # built before the push, untouched by its failure
    result = dg.materialize([image_set], resources=defs.resources, instance=instance)
    assert result.success


def test_quality_verdict_rule():
    compared = Comparison(images=[f"worn/{n}.jpg" for n in range(30)], candidate_f1=0.945, production_f1=0.95)
    assert quality_verdict(0.95, 0.9, None, 0.01)[0]
    assert not quality_verdict(0.85, 0.9, None, 0.01)[0]
    assert quality_verdict(0.96, 0.9, compared, 0.01)[0]  # within 0.01 of production on the same images
    worse = Comparison(images=compared.images, candidate_f1=0.93, production_f1=0.95)
    passed, message = quality_verdict(0.96, 0.9, worse, 0.01)
    assert not passed and "on 30 images" in message
    # Not enough images to compare on: the CV threshold alone decides, and the message says why.
    passed, message = quality_verdict(0.96, 0.9, Comparison(note="only 3 labelled image(s)"), 0.01)
    assert passed and "only 3 labelled image(s)" in message


def test_missing_production_model_says_how_to_train(tmp_path):
    with pytest.raises(artifact.NoProductionModel, match="retrain_job"):
        artifact.require_production(tmp_path)


def test_publish_moves_the_whole_dir_and_promote_points_at_it(tmp_path):
    root = tmp_path / "models"
    for content in ("first", "second"):  # the same version trained again replaces the dir, whole
        scratch = tmp_path / "scratch" / content
        scratch.mkdir(parents=True)
        (scratch / artifact.CARD_FILE).write_text(content)
        (scratch / content).write_text(content)
        published = artifact.publish(scratch, "v1", root)
        assert published == root / "v1" and not scratch.exists()
    assert sorted(path.name for path in published.iterdir()) == [artifact.CARD_FILE, "second"]

    assert artifact.production(root) is None
    pointer = artifact.promote(published, "v1", {"f1": 0.9}, root=root)
    assert artifact.require_production(root) == pointer == json.loads((root / artifact.POINTER).read_text())
    assert (pointer["version"], pointer["path"], pointer["metrics"]) == ("v1", str(published.resolve()), {"f1": 0.9})
    assert sorted(path.name for path in root.iterdir()) == [artifact.POINTER, "v1"]  # no temp file left behind


def test_train_candidate_publishes_a_self_contained_model_and_the_gate_judges_it_without_dagster(tmp_path, trained_model):
    images = tmp_path / "images"
    write_demo_image_set(images, 40, seed=5, width=240)
    root = tmp_path / "models"
    version_dir, card, metrics = train_candidate(images, merged(FAST_PARAMS), root, "run-1", "0123.dir")
    assert version_dir == root / card["version"] and artifact.model_card(version_dir) == card
    assert (card["image_set_hash"], card["n_train"], metrics["cv_folds"]) == ("0123.dir", 40, 4)
    assert (version_dir / "folds.json").is_file() and (version_dir / EVAL_DIR / "confusion_matrix.png").is_file()
    assert list((root / "runs").iterdir()) == []  # the scratch dir of the run is gone

    alone = judge_candidate(version_dir, None, images, 10, min_f1=0.0, max_drop=0.01)
    assert alone.passed and alone.comparison is None and "no production model yet" in alone.message
    assert alone.card == card
    itself = artifact.promote(version_dir, card["version"], metrics, root=root)
    assert judge_candidate(version_dir, itself, images, 10, min_f1=0.0, max_drop=0.01).comparison is None
    strict = judge_candidate(version_dir, None, images, 10, min_f1=1.01, max_drop=0.01)
    assert not strict.passed and "below the threshold" in strict.message

    # Another model in production: compared on the candidate's images that model was not trained on.
    trained = {image["digest"] for image in artifact.training_images(trained_model)}
    unseen = sorted(row["path"] for row in cv_rows(version_dir) if row["digest"] not in trained)
    other = judge_candidate(version_dir, {"version": "other", "path": str(trained_model)}, images, 1, min_f1=0.0, max_drop=1.0)
    assert other.passed and other.comparison.images == unseen and 0.0 <= other.comparison.production_f1 <= 1.0
    assert f"on {len(unseen)} images neither was trained on" in other.message
