"""The labelling round as plain functions (fic_assets.defs.labelling.rounds), without Dagster: a real Label Studio
(session fixture), real DuckDB files and, for the model's hints, a real trained model scoring real files."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from fic_assets.defs.labelling import rounds, tasks
from fic_assets.defs.labelling.client import LabelStudioResource, choice_result, instructions, labeling_config
from fic_assets.platform import warehouse
from fic_assets.defs.model.scoring import score_sources
from fic_assets.platform.warehouse import DuckDBResource
from fic_assets_tests.test_labelling import BRANDS, seed_catalogue


@pytest.fixture
def project(label_studio, tmp_path):
    """A fresh Label Studio project and a DuckDB file holding a crawled catalogue of 24 images."""
    resource = LabelStudioResource(url=label_studio.url, token=label_studio.token, project_title=f"fic rounds {uuid.uuid4().hex[:8]}")
    duckdb = DuckDBResource(path=str(tmp_path / "fic.duckdb"))
    images = seed_catalogue(duckdb)
    with resource.session() as ls:
        ls.ensure_project(labeling_config(), instructions())
        yield ls, duckdb, images


def recorded_tasks(duckdb: DuckDBResource) -> dict[int, str]:
    with duckdb.connect(read_only=True) as con:
        return dict(con.execute("SELECT task_id, image_url FROM label_tasks WHERE retired_at IS NULL").fetchall())


def test_a_round_imports_in_batches_records_every_task_and_the_next_round_offers_only_the_rest(project):
    ls, duckdb, images = project
    first = rounds.run_round(duckdb.connect, ls, None, tasks_per_round=10, batch_size=4)
    assert (first.created, first.brands, first.open_tasks, first.pre_annotation) == (10, len(BRANDS), 10, tasks.PACKSHOT_FLAG_VERSION)
    assert first.record.key is not None and first.warnings() == []
    # Every task Label Studio created (three import requests) is recorded in DuckDB under its id.
    in_label_studio = ls.project_tasks(first.seen.id)
    assert recorded_tasks(duckdb) == in_label_studio

    second = rounds.run_round(duckdb.connect, ls, None, tasks_per_round=100, batch_size=100)
    assert (second.created, second.open_tasks, second.record.key) == (len(images) - 10, len(images), first.record.key)
    assert sorted(recorded_tasks(duckdb).values()) == sorted(images)
    assert rounds.run_round(duckdb.connect, ls, None).created == 0


def test_a_task_deleted_in_label_studio_is_retired_reported_and_its_image_offered_again(project):
    ls, duckdb, images = project
    rounds.run_round(duckdb.connect, ls, None, tasks_per_round=len(images))
    task_id, image = sorted(recorded_tasks(duckdb).items())[0]
    ls.ls.tasks.delete(id=str(task_id))

    again = rounds.run_round(duckdb.connect, ls, None)
    assert (again.reconciled.retired, again.reconciled.retired_images, again.created) == (1, [image], 1)
    (warning,) = again.warnings()
    assert "1 task(s) were deleted in Label Studio" in warning and image in warning
    assert image in recorded_tasks(duckdb).values() and task_id not in recorded_tasks(duckdb)


def test_a_task_duckdb_forgot_is_adopted_and_reported_not_imported_again(project):
    ls, duckdb, images = project
    rounds.run_round(duckdb.connect, ls, None, tasks_per_round=5)
    with duckdb.connect() as con:
        con.execute("DELETE FROM label_tasks")
    again = rounds.run_round(duckdb.connect, ls, None, tasks_per_round=0)
    assert (again.reconciled.adopted, again.created, again.open_tasks) == (5, 0, 5)
    assert again.warnings() == ["5 task(s) existed in Label Studio but not in DuckDB; recorded, not imported again"]


def candidates_from(files: list[Path]) -> pd.DataFrame:
    """Candidate rows (tasks.candidate_images' columns) for image files, all of one brand."""
    return pd.DataFrame([
        {"image_url": str(path), "item_id": path.stem, "is_packshot": n % 2 == 0, "position": 0, "brand_slug": "levis", "brand": "Levi's"}
        for n, path in enumerate(files)
    ])


def test_without_a_model_every_candidate_gets_the_packshot_flag_as_its_hint(tmp_path):
    candidates = candidates_from([tmp_path / f"{n}.jpg" for n in range(4)])
    hinted = rounds.pre_annotate(candidates, None, tasks_per_round=4)
    assert hinted["pre_model_version"].tolist() == [tasks.PACKSHOT_FLAG_VERSION] * 4
    assert hinted["pre_label"].tolist() == ["not_worn", "worn", "not_worn", "worn"]
    assert rounds.candidate_pool(4, None) == 4 and rounds.candidate_pool(4, {"version": "v"}) == 4 * tasks.MODEL_POOL_FACTOR


def test_with_a_model_the_round_keeps_the_images_it_is_least_sure_about_and_unreadable_ones_last(trained_model, tmp_path):
    files = sorted((trained_model.parent / "images").glob("*/*.jpg"))[::8][:9]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    candidates = candidates_from([broken, *files])
    production = {"version": "rounds-v1", "path": str(trained_model)}
    said: list[str] = []

    kept = rounds.pre_annotate(candidates, production, tasks_per_round=5, log=said.append)
    scores = score_sources([str(path) for path in files], trained_model).scores
    least_sure = sorted(scores, key=lambda source: abs(scores[source] - 0.5))[:5]
    assert kept["image_url"].tolist() == least_sure  # one brand: ordered by uncertainty, the broken file left out
    assert set(kept["pre_model_version"]) == {"rounds-v1"}
    for source, label, score in zip(kept["image_url"], kept["pre_label"], kept["pre_score"]):
        assert label == ("worn" if scores[source] >= 0.5 else "not_worn") and score == pytest.approx(max(scores[source], 1 - scores[source]))
    assert said == [f"model rounds-v1 scored 9 of {5 * tasks.MODEL_POOL_FACTOR} candidates; 1 unreadable"]

    everything = rounds.pre_annotate(candidates, production, tasks_per_round=10)
    assert everything["image_url"].tolist()[-1] == str(broken)
    assert everything["pre_model_version"].tolist()[-1] == tasks.PACKSHOT_FLAG_VERSION


def seed_local_images(duckdb: DuckDBResource, files: list[Path]) -> list[str]:
    """A crawled catalogue whose image URLs are local files the model can read: one brand, one piece per image."""
    items = [
        {"item_id": f"item-{n}", "sku": None, "name": f"Piece {n}", "brand": "Levi's", "brand_slug": "levis", "price": 29.95,
         "currency": "EUR", "colour": "blue", "url": f"http://shop.test/item-{n}.html",
         "images": [{"url": str(path), "position": 0, "is_packshot": n % 2 == 0}]}
        for n, path in enumerate(files)
    ]
    with duckdb.connect() as con:
        warehouse.upsert_brands(con, [{"slug": "levis", "name": "Levi's", "url": "http://shop.test/levis/"}])
        warehouse.upsert_items(con, items)
    return [str(path) for path in files]


def test_after_a_promotion_open_tasks_get_the_production_models_prediction_and_the_project_uses_its_version(
        trained_model, label_studio, tmp_path, monkeypatch):
    """Round 1 before any model (packshot-flag hints), one of its tasks answered; then a model is promoted (the
    production pointer, artifact.promote) and the next round runs: the open tasks of round 1 carry the production
    model's prediction as their latest, with its score, and the project's pre-labelling uses its version."""
    from fic_assets.defs.labelling.assets import label_studio_project, label_tasks
    from fic_assets.defs.model import artifact
    from fic_assets_tests.test_labelling import materialize

    monkeypatch.setenv("FIC_MODELS_DIR", str(tmp_path / "models"))
    files = sorted((trained_model.parent / "images").glob("*/*.jpg"))[::5][:10]
    duckdb = DuckDBResource(path=str(tmp_path / "fic.duckdb"))
    seed_local_images(duckdb, files)
    resources = {"label_studio": LabelStudioResource(url=label_studio.url, token=label_studio.token, project_title=f"fic promoted {uuid.uuid4().hex[:8]}"),
                 "duckdb": duckdb}
    with dg.instance_for_test() as instance:
        materialize(label_studio_project, resources, instance)
        first = materialize(label_tasks, resources, instance, {"tasks_per_round": 6})
        assert (first["project_model_version"], first["open_tasks_rehinted"]) == (tasks.PACKSHOT_FLAG_VERSION, 0)
        with resources["label_studio"].session() as ls:
            project_id = ls.project_id()
            round_one = ls.project_tasks(project_id)
            answered = min(round_one)
            ls.ls.annotations.create(id=answered, result=choice_result("worn"))

        pointer = artifact.promote(trained_model, "promoted-v2", {"f1": 1.0})
        second = materialize(label_tasks, resources, instance, {"tasks_per_round": 2})
        assert (second["tasks_created"], second["open_tasks_rehinted"]) == (2, 5)
        assert second["pre_annotation"] == second["project_model_version"] == pointer["version"] == artifact.production()["version"]
        assert materialize(label_tasks, resources, instance, {"tasks_per_round": 0})["open_tasks_rehinted"] == 0  # done once

    scores = score_sources(list(round_one.values()), trained_model).scores
    with resources["label_studio"].session() as ls:
        assert ls.ls.projects.get(id=project_id).model_version == "promoted-v2"
        for task_id, image in round_one.items():
            predictions = sorted(ls.ls.tasks.get(id=task_id).predictions, key=lambda prediction: prediction.id)
            if task_id == answered:  # answered before the promotion: left as it was
                assert [prediction.model_version for prediction in predictions] == [tasks.PACKSHOT_FLAG_VERSION]
                continue
            latest, worn = predictions[-1], scores[image]
            assert [prediction.model_version for prediction in predictions] == [tasks.PACKSHOT_FLAG_VERSION, "promoted-v2"]
            assert latest.score == pytest.approx(max(worn, 1 - worn))
            assert latest.result[0]["value"]["choices"] == ["worn" if worn >= 0.5 else "not_worn"]
    with duckdb.connect(read_only=True) as con:
        hints = dict(con.execute("SELECT task_id, pre_model_version FROM label_tasks").fetchall())
    assert hints[answered] == tasks.PACKSHOT_FLAG_VERSION and set(hints.values()) == {tasks.PACKSHOT_FLAG_VERSION, "promoted-v2"}
    assert sum(version == "promoted-v2" for version in hints.values()) == 5 + 2
