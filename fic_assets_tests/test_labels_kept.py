"""Labels are never lost by anything but a person's deletion in Label Studio (issue 12, cases 1 and 5).

Each test is a hostile action against the real Label Studio of the session (`label_studio` fixture: one server
for the whole session, so this module starts none of its own except one restored from a snapshot), a real
DuckDB file and Dagster's ephemeral instance. After every pull, `labels` must be exactly what `annotations`
resolve to.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid

import dagster as dg
import duckdb
import pandas as pd
import pytest

from fic_assets.platform import warehouse
from fic_assets.defs.labelling.assets import human_labels, label_studio_project, label_tasks
from fic_assets.defs.labelling import labels
from fic_assets.defs.labelling import server
from fic_assets.defs.labelling.client import LabelStudioResource, choice_result, instructions, labeling_config
from fic_assets.platform.warehouse import DuckDBResource
from fic_assets_tests.conftest import copy_database, free_port
from fic_assets_tests.test_labelling import seed_catalogue

IMAGES = 24  # seed_catalogue: 4 brands x 2 products x 3 images


@pytest.fixture
def platform(label_studio, tmp_path):
    resources = {
        "label_studio": LabelStudioResource(url=label_studio.url, token=label_studio.token, project_title=f"fic kept {uuid.uuid4().hex[:8]}"),
        "duckdb": DuckDBResource(path=str(tmp_path / "fic.duckdb")),
    }
    images = seed_catalogue(resources["duckdb"])
    assert len(images) == IMAGES
    with dg.instance_for_test() as instance:
        yield resources, instance


def run(asset, resources, instance, config: dict | None = None) -> tuple[dict, list[str]]:
    """Materialize one asset for real; (its metadata, the WARNING lines of the run's log)."""
    run_config = {"ops": {asset.node_def.name: {"config": config}}} if config else None
    result = dg.materialize([asset], resources=resources, instance=instance, run_config=run_config)
    assert result.success
    metadata = {key: value.value for key, value in result.asset_materializations_for_node(asset.node_def.name)[0].metadata.items()}
    warnings = [entry.user_message for entry in instance.all_logs(result.run_id) if entry.level == logging.WARNING]
    return metadata, warnings


def tasks_in_label_studio(resources) -> dict[str, int]:
    """image URL -> task id in the resource's current project."""
    with resources["label_studio"].session() as ls:
        return {image: task_id for task_id, image in ls.project_tasks(ls.project_id()).items()}


def annotate(resources, task_ids, label: str = "worn") -> None:
    with resources["label_studio"].session() as ls:
        for task_id in task_ids:
            ls.ls.annotations.create(id=task_id, result=choice_result(label), lead_time=1.5)


def query(resources, sql: str, params=()) -> list[tuple]:
    with resources["duckdb"].connect(read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def assert_labels_agree_with_annotations(resources) -> None:
    """`labels` is exactly the resolution of every stored annotation: same images, labels, annotations, projects."""
    with resources["duckdb"].connect(read_only=True) as con:
        expected = labels.resolve_labels(labels.stored_annotations(con))
        stored = con.execute("SELECT image_url, label, annotation_id, project_key FROM labels ORDER BY image_url").fetchall()
    resolved = sorted(
        (url, label, int(annotation), int(key))
        for url, label, annotation, key in zip(expected["image_url"], expected["label"], expected["annotation_id"], expected["project_key"])
    )
    assert stored == resolved


def labelled_round(resources, instance, labelled: int) -> list[str]:
    """A round over the whole catalogue, `labelled` tasks annotated and pulled; the labelled image URLs."""
    run(label_studio_project, resources, instance)
    assert run(label_tasks, resources, instance)[0]["tasks_created"] == IMAGES
    tasks = tasks_in_label_studio(resources)
    chosen = sorted(tasks)[:labelled]
    annotate(resources, [tasks[url] for url in chosen])
    metadata, _ = run(human_labels, resources, instance)
    assert (metadata["labels"], metadata["new"], metadata["removed"]) == (labelled, labelled, 0)
    return chosen


def at_url(resource: LabelStudioResource, url: str) -> LabelStudioResource:
    return LabelStudioResource(url=url, token=resource.token, project_title=resource.project_title)


def delete_project(resources) -> int:
    with resources["label_studio"].session() as ls:
        project_id = ls.project_id()
        ls.ls.projects.delete(id=project_id)
    return project_id


# --- case 1: the project is deleted, re-created, or replaced by a fresh server --------------------------------


def test_deleting_the_project_in_label_studio_keeps_every_label_and_starts_a_new_project(platform):
    """Hostile action: delete the Label Studio project (API), then `label_studio_project` and `human_labels`.
    Before: the run succeeded with `removed: 9`, `labels` went to 0, and the old tasks kept 24 images out of
    every round."""
    resources, instance = platform
    labelled = labelled_round(resources, instance, labelled=9)
    old_id = delete_project(resources)

    project, warnings = run(label_studio_project, resources, instance)
    assert project["created"] and project["new_project"] and project["project_id"] != old_id
    (left,) = project["left_projects"]
    assert left["project_id"] == old_id and "deleted from Label Studio" in left["reason"]
    assert (left["labels_kept"], left["annotations_kept"], left["tasks_retired"]) == (9, 9, IMAGES)
    assert any("Kept in DuckDB: its 9 label(s)" in line for line in warnings), warnings

    pulled, warnings = run(human_labels, resources, instance)
    assert (pulled["labels"], pulled["removed"], pulled["annotations"], pulled["labels_from_other_projects"]) == (9, 0, 0, 9)
    assert not any("removed" in line for line in warnings)
    assert sorted(url for (url,) in query(resources, "SELECT image_url FROM labels")) == labelled
    assert query(resources, "SELECT count(*) FROM annotations") == [(9,)]
    assert_labels_agree_with_annotations(resources)

    # The old project's tasks no longer hold images back: every unlabelled image is offered in the new project.
    new_round, _ = run(label_tasks, resources, instance)
    assert new_round["tasks_created"] == IMAGES - 9
    assert set(tasks_in_label_studio(resources)).isdisjoint(labelled)
    assert query(resources, "SELECT count(*) FROM label_tasks WHERE retired_at IS NULL") == [(IMAGES - 9,)]

    # Labelling goes on in the new project; the old labels stay beside the new ones.
    annotate(resources, list(tasks_in_label_studio(resources).values())[:2], "not_worn")
    pulled, _ = run(human_labels, resources, instance)
    assert (pulled["labels"], pulled["new"], pulled["removed"]) == (11, 2, 0)
    assert_labels_agree_with_annotations(resources)
    assert query(resources, "SELECT count(*), count(*) FILTER (WHERE is_current) FROM label_projects") == [(2, 1)]


def test_deleting_the_project_then_pulling_without_recreating_it_fails_and_keeps_the_labels(platform):
    """Hostile action: delete the project, then run `human_labels` straight away (the sensor or a schedule
    does not wait for `label_studio_project`)."""
    resources, instance = platform
    labelled_round(resources, instance, labelled=3)
    delete_project(resources)
    result = dg.materialize([human_labels], resources=resources, instance=instance, raise_on_error=False)
    assert not result.success
    assert "materialize `label_studio_project` first" in result.failure_data_for_node("human_labels").error.to_string()
    assert query(resources, "SELECT count(*) FROM labels") == [(3,)]
    assert_labels_agree_with_annotations(resources)


def test_a_project_recreated_by_hand_is_seen_by_the_pull_itself_and_keeps_the_labels(platform):
    """Hostile action: a person deletes the project and creates one with the same title in Label Studio's UI;
    the next `human_labels` (the sensor's run, no `label_studio_project` in between) meets the new project."""
    resources, instance = platform
    labelled = labelled_round(resources, instance, labelled=3)
    old_id = delete_project(resources)
    with resources["label_studio"].session() as ls:
        ls.ls.projects.create(title=resources["label_studio"].project_title, label_config=labeling_config())

    pulled, warnings = run(human_labels, resources, instance)
    assert (pulled["new_project"], pulled["labels"], pulled["removed"], pulled["labels_kept_from_left_projects"]) == (True, 3, 0, 3)
    (left,) = pulled["left_projects"]
    assert left["project_id"] == old_id and "deleted from Label Studio" in left["reason"]
    assert any("Kept in DuckDB: its 3 label(s)" in line for line in warnings), warnings
    assert sorted(url for (url,) in query(resources, "SELECT image_url FROM labels")) == labelled
    assert_labels_agree_with_annotations(resources)


def test_a_fresh_label_studio_that_gives_the_new_project_the_old_id_keeps_every_label(platform, label_studio, tmp_path):
    """Hostile action: FIC_LABEL_STUDIO_URL moves to another Label Studio whose database is older than the
    project (a fresh server, or a backup restored): `label_studio_project` creates the project there under the
    SAME id the old one had. Project ids alone cannot tell them apart; their creation times do."""
    resources, instance = platform
    copy_database(label_studio.data_dir, tmp_path / "restored")  # before the project exists
    labelled = labelled_round(resources, instance, labelled=3)
    old_id = query(resources, "SELECT project_id FROM label_projects")[0][0]

    restored = dataclasses.replace(label_studio, url=server.local_url(free_port()), data_dir=tmp_path / "restored")
    server.start_configured(restored)
    try:
        moved = {**resources, "label_studio": at_url(resources["label_studio"], restored.url)}
        project, warnings = run(label_studio_project, moved, instance)
        assert project["created"] and project["project_id"] == old_id and project["new_project"]
        (left,) = project["left_projects"]
        assert left["url"] == label_studio.url and left["labels_kept"] == 3 and left["tasks_retired"] == IMAGES
        assert any(f"was at {label_studio.url}" in line for line in warnings), warnings

        pulled, _ = run(human_labels, moved, instance)
        assert (pulled["labels"], pulled["removed"], pulled["labels_from_other_projects"]) == (3, 0, 3)
        assert sorted(url for (url,) in query(resources, "SELECT image_url FROM labels")) == labelled
        assert_labels_agree_with_annotations(resources)
        assert run(label_tasks, moved, instance)[0]["tasks_created"] == IMAGES - 3
    finally:
        server.stop(restored.data_dir)


def test_the_same_project_reached_at_another_url_is_not_a_new_project(platform, label_studio):
    """Hostile action: FIC_LABEL_STUDIO_URL changes from 127.0.0.1 to localhost (same server, same project).
    It must not look like a new project: nothing retired, nothing imported twice, no annotation duplicated."""
    resources, instance = platform
    labelled_round(resources, instance, labelled=2)
    alias = label_studio.url.replace("127.0.0.1", "localhost")
    moved = {**resources, "label_studio": at_url(resources["label_studio"], alias)}
    project, warnings = run(label_studio_project, moved, instance)
    assert (project["created"], project["new_project"], project["left_projects"]) == (False, False, [])
    assert not warnings
    tasks, _ = run(label_tasks, moved, instance)
    assert (tasks["tasks_created"], tasks["tasks_adopted"], tasks["tasks_deleted_in_label_studio"]) == (0, 0, 0)
    pulled, _ = run(human_labels, moved, instance)
    assert (pulled["labels"], pulled["removed"], pulled["annotations"]) == (2, 0, 2)
    assert query(resources, "SELECT count(*) FROM annotations") == [(2,)]
    assert query(resources, "SELECT ls_url FROM label_projects") == [(alias,)]


def test_an_empty_pull_of_another_project_removes_no_label(tmp_path):
    """Bad input, without a server: a pull that finds no annotation in project 2 while project 1 gave labels.
    Before, `write_labels` deleted every label the pull lacked, whatever its project."""
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    rows = [
        {"project_key": 1, "annotation_id": n, "project_id": 7, "task_id": n, "image_url": f"http://shop.test/{n}.jpg", "item_id": str(n),
         "annotator": "ann", "label": "worn", "problem": None, "created_at": t0.isoformat(), "updated_at": t0.isoformat(), "lead_time": 1.0}
        for n in range(1, 4)
    ]
    with warehouse.connect(tmp_path / "fic.duckdb") as con, warehouse.transaction(con):
        first, _ = labels.sync_project(con, 1, labels.annotations_frame(rows))
        second, _ = labels.sync_project(con, 2, labels.annotations_frame([]))
        stored = con.execute("SELECT count(*), min(project_key), max(project_key) FROM labels").fetchone()
        others = (labels.labels_of_other_projects(con, 1), labels.labels_of_other_projects(con, 2))
    assert (first["new"], second["removed"], second["labels"]) == (3, 0, 3)
    assert stored == (3, 1, 1)
    assert others == (0, 3)  # what a pull of project 2 keeps without seeing it


def test_a_wiped_label_studio_at_the_same_url_reusing_the_id_is_a_new_project(tmp_path):
    """Hostile action, without a server: Label Studio's data dir wiped and the server restarted at the SAME URL,
    so the re-created project has the old id and the old URL; only its creation time differs."""
    from fic_assets.defs.labelling.projects import SeenProject, register_project

    url, created = "http://127.0.0.1:8080", pd.Timestamp("2026-01-01 09:00", tz="UTC").to_pydatetime()
    wiped = SeenProject(1, created + pd.Timedelta(days=30), "fic", url)
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        first = register_project(con, SeenProject(1, created, "fic", url), dict)
        con.execute("""INSERT INTO label_tasks (project_key, task_id, image_url, project_id, created_at)
                       VALUES (?, 1, 'http://shop.test/a.jpg', 1, now())""", [first.key])
        again = register_project(con, SeenProject(1, created, "fic", url), dict)
        second = register_project(con, wiped, lambda: {1: wiped.created_at})
        third = register_project(con, wiped, lambda: {1: wiped.created_at})
        retired = con.execute("SELECT retired_reason FROM label_tasks").fetchall()
    assert (first.new, again.new, again.key, again.left) == (True, False, first.key, [])
    assert second.new and second.key != first.key
    (left,) = second.left
    assert left.reason == f"was deleted from Label Studio at {url} (id 1 is now another project)" and left.tasks_retired == 1
    assert retired == [(f"its project {left.reason}",)]
    assert (third.new, third.left) == (False, [])  # said once, not on every run


# --- case 5: a task deleted in Label Studio --------------------------------------------------------------------


def test_a_task_deleted_in_label_studio_is_retired_and_its_image_offered_again(platform):
    """Hostile action: delete two tasks in Label Studio, one labelled and one still open. Before, their
    `label_tasks` rows stayed and the images were never offered again (and the label was gone)."""
    resources, instance = platform
    run(label_studio_project, resources, instance)
    assert run(label_tasks, resources, instance, {"tasks_per_round": 4})[0]["tasks_created"] == 4
    tasks = tasks_in_label_studio(resources)
    labelled_url, open_url = sorted(tasks)[:2]
    annotate(resources, [tasks[labelled_url]])
    assert run(human_labels, resources, instance)[0]["labels"] == 1

    with resources["label_studio"].session() as ls:
        for url in (labelled_url, open_url):
            ls.ls.tasks.delete(id=str(tasks[url]))

    # The person deleted the labelled task with its annotation: that label goes, and annotations agree.
    pulled, warnings = run(human_labels, resources, instance)
    assert (pulled["labels"], pulled["removed"]) == (0, 1)
    assert any("1 label(s) removed" in line for line in warnings), warnings
    assert_labels_agree_with_annotations(resources)

    next_round, warnings = run(label_tasks, resources, instance)
    assert next_round["tasks_deleted_in_label_studio"] == 2
    assert any("2 task(s) were deleted in Label Studio" in line for line in warnings), warnings
    retired = query(resources, "SELECT image_url, retired_reason FROM label_tasks WHERE retired_at IS NOT NULL ORDER BY image_url")
    assert retired == [(labelled_url, "deleted in Label Studio"), (open_url, "deleted in Label Studio")]
    # Both images are candidates again: the round (200 wide) gives each a new task.
    assert next_round["tasks_created"] == IMAGES - 2
    again = tasks_in_label_studio(resources)
    assert {labelled_url, open_url} <= set(again) and again[labelled_url] != tasks[labelled_url]
    live = query(resources, "SELECT count(*), count(DISTINCT image_url) FROM label_tasks WHERE retired_at IS NULL")
    assert live == [(IMAGES, IMAGES)]
    # Nothing more to reconcile on a re-run.
    assert run(label_tasks, resources, instance)[0]["tasks_deleted_in_label_studio"] == 0


# --- an existing DuckDB file from before label_projects ----------------------------------------------------------

# The labelling tables as the platform created them before project keys (git history of fic_assets/platform/warehouse.py).
OLD_LABELLING_SCHEMA = (
    """CREATE TABLE label_tasks (image_url TEXT PRIMARY KEY, task_id BIGINT NOT NULL, project_id INTEGER NOT NULL,
        item_id TEXT, brand_slug TEXT, pre_label TEXT, pre_score DOUBLE, pre_model_version TEXT, created_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE annotations (annotation_id BIGINT PRIMARY KEY, project_id INTEGER NOT NULL, task_id BIGINT NOT NULL,
        image_url TEXT NOT NULL, item_id TEXT, annotator TEXT, label TEXT, problem TEXT, created_at TIMESTAMPTZ,
        updated_at TIMESTAMPTZ NOT NULL, lead_time DOUBLE)""",
    """CREATE TABLE labels (image_url TEXT PRIMARY KEY, item_id TEXT, label TEXT NOT NULL, annotator TEXT,
        annotated_at TIMESTAMPTZ NOT NULL, task_id BIGINT NOT NULL, annotation_id BIGINT NOT NULL, lead_time DOUBLE,
        annotations INTEGER NOT NULL, agreement DOUBLE NOT NULL)""",
)


def test_a_duckdb_file_from_before_project_keys_is_migrated_and_keeps_its_project(label_studio, tmp_path):
    """Bad input: a DuckDB file written by the previous release (label_tasks keyed by image, annotations by
    annotation id), its project alive in Label Studio. It opens, keeps every row, and the first run matches the
    old rows to that project: no retired task, no duplicate annotation, no task imported twice."""
    path = tmp_path / "old.duckdb"
    resource = LabelStudioResource(url=label_studio.url, token=label_studio.token, project_title=f"fic old {uuid.uuid4().hex[:8]}")
    duckdb_resource = DuckDBResource(path=str(path))
    images = seed_catalogue(duckdb_resource)[:3]

    # What the previous release left behind: a project with 3 tasks, 2 annotated, pulled into the old tables.
    with resource.session() as ls:
        project_id = ls.ensure_project(labeling_config(), instructions()).id
        task_ids = ls.import_tasks(project_id, [{"data": {"image": url}} for url in images])
        for task_id in task_ids[:2]:
            ls.ls.annotations.create(id=task_id, result=choice_result("worn"))
        rows = labels.annotation_rows(ls.annotated_tasks(project_id), project_id, ls.annotator_names())
    with duckdb.connect(str(path)) as con:
        for table in ("label_tasks", "annotations", "labels", "label_projects"):
            con.execute(f"DROP TABLE {table}")
        for statement in OLD_LABELLING_SCHEMA:
            con.execute(statement)
        for url, task_id in zip(images, task_ids):
            con.execute("INSERT INTO label_tasks VALUES (?, ?, ?, NULL, NULL, NULL, NULL, NULL, now())", [url, task_id, project_id])
        for row in rows:
            con.execute("INSERT INTO annotations VALUES (?, ?, ?, ?, NULL, ?, ?, NULL, ?, ?, ?)",
                        [row["annotation_id"], project_id, row["task_id"], row["image_url"], row["annotator"], row["label"],
                         row["created_at"], row["updated_at"], row["lead_time"]])
            con.execute("INSERT INTO labels VALUES (?, NULL, ?, ?, ?, ?, ?, ?, 1, 1.0)",
                        [row["image_url"], row["label"], row["annotator"], row["updated_at"], row["task_id"], row["annotation_id"], row["lead_time"]])

    with warehouse.connect(path) as con:  # the migration, twice: idempotent
        pass
    with warehouse.connect(path) as con:
        assert con.execute("SELECT project_key, project_id, created_at FROM label_projects").fetchall() == [(1, project_id, None)]
        assert con.execute("SELECT count(*), min(project_key) FROM label_tasks").fetchone() == (3, 1)
        assert con.execute("SELECT count(*), min(project_key) FROM annotations").fetchone() == (2, 1)
        assert con.execute("SELECT count(*), min(project_key) FROM labels").fetchone() == (2, 1)

    resources = {"label_studio": resource, "duckdb": duckdb_resource}
    with dg.instance_for_test() as instance:
        project, warnings = run(label_studio_project, resources, instance)
        assert (project["new_project"], project["project_key"], project["left_projects"]) == (False, 1, [])
        assert not warnings
        pulled, _ = run(human_labels, resources, instance)
        assert (pulled["labels"], pulled["new"], pulled["removed"], pulled["annotations"]) == (2, 0, 0, 2)
        tasks, _ = run(label_tasks, resources, instance)
        assert (tasks["tasks_adopted"], tasks["tasks_deleted_in_label_studio"], tasks["tasks_created"]) == (0, 0, IMAGES - 3)
    assert query(resources, "SELECT count(*) FROM annotations") == [(2,)]
    assert query(resources, "SELECT created_at IS NOT NULL, ls_url FROM label_projects") == [(True, label_studio.url)]
    assert_labels_agree_with_annotations(resources)


def test_labelled_image_urls_lists_every_label_unusable_included(tmp_path):
    """Bad input: an unusable label next to worn ones, and a URL with a quote, a slash and unicode."""
    from fic_assets.defs.labelling.labels import LABEL_COLUMNS, labelled_image_urls, write_labels

    urls = ["http://shop.test/levis-'501'.jpg", "http://shop.test/\"501\"/ève.jpg", "http://shop.test/blurred.jpg"]
    resolved = pd.DataFrame({
        "image_url": urls, "item_id": "LE1", "label": ["worn", "not_worn", "unusable"], "annotator": "ann",
        "annotated_at": pd.Timestamp("2026-01-01", tz="UTC"), "task_id": [1, 2, 3], "annotation_id": [1, 2, 3],
        "lead_time": 1.0, "annotations": 1, "agreement": 1.0, "project_key": 1,
    }, columns=LABEL_COLUMNS)
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        for _ in range(2):  # written again: no second row
            write_labels(con, resolved, project_key=1)
        assert sorted(labelled_image_urls(con)) == sorted(urls)
