"""The labelling loop against a real Label Studio server (session fixture) and real DuckDB files."""

from __future__ import annotations

import uuid
from datetime import timedelta

import dagster as dg
import pandas as pd
import pytest

from fic_assets.platform import warehouse
from fic_assets.defs.labelling.assets import human_labels, label_studio_project, label_tasks
from fic_assets.defs.labelling.sensors import annotation_sensor
from fic_assets.defs.model.sensors import relabel_sensor
from fic_assets.defs.labelling import labels, simulated_annotator
from fic_assets.defs.labelling.simulated_annotator import SIMULATED_ANNOTATOR
from fic_assets.defs.labelling.client import (
    LabelStudioAuthError,
    LabelStudioResource,
    LabelStudioUnavailable,
    choice_result,
    labeling_config,
)
from fic_assets.platform.warehouse import DuckDBResource
from fic_assets_tests.conftest import free_port

BRANDS = {"levis": "Levi's", "bjorn-borg": "Björn Borg", "selected-femme-homme": "Selected Femme/Homme", "quoted": 'The "Quoted" Label'}


def seed_catalogue(duckdb: DuckDBResource, images_per_brand: int = 6) -> list[str]:
    """A small crawled catalogue: 4 brands with awkward names, two products each."""
    items = []
    for slug in BRANDS:
        for product in range(2):
            item_id = f"{slug}-{product}"
            items.append(
                {
                    "item_id": item_id, "sku": None, "name": f"Piece {product}", "brand": BRANDS[slug], "brand_slug": slug,
                    "price": 29.95, "currency": "EUR", "colour": "blue", "url": f"http://shop.test/{item_id}.html",
                    "images": [
                        {"url": f"http://shop.test/img/{item_id}-{n}.jpg?imwidth=1800" + ("&filter=packshot" if n == 0 else ""), "position": n, "is_packshot": n == 0}
                        for n in range(images_per_brand // 2)
                    ],
                }
            )
    with duckdb.connect() as con:
        warehouse.upsert_brands(con, [{"slug": slug, "name": name, "url": f"http://shop.test/{slug}/"} for slug, name in BRANDS.items()])
        warehouse.upsert_items(con, items)
        return [row[0] for row in con.execute("SELECT image_url FROM images ORDER BY image_url").fetchall()]


@pytest.fixture
def platform(label_studio, tmp_path):
    """Resources on a project of its own (a fresh title) in the session's Label Studio server."""
    resources = {
        "label_studio": LabelStudioResource(url=label_studio.url, token=label_studio.token, project_title=f"fic test {uuid.uuid4().hex[:8]}"),
        "duckdb": DuckDBResource(path=str(tmp_path / "fic.duckdb")),
    }
    images = seed_catalogue(resources["duckdb"])
    with dg.instance_for_test() as instance:
        yield resources, instance, images


def materialize(asset, resources, instance, config: dict | None = None) -> dict:
    run_config = {"ops": {asset.node_def.name: {"config": config}}} if config else None
    result = dg.materialize([asset], resources=resources, instance=instance, run_config=run_config)
    assert result.success
    return {key: value.value for key, value in result.asset_materializations_for_node(asset.node_def.name)[0].metadata.items()}


def start_round(resources, instance, tasks_per_round: int = 200) -> dict:
    materialize(label_studio_project, resources, instance)
    return materialize(label_tasks, resources, instance, {"tasks_per_round": tasks_per_round})


def project_tasks(resources) -> list:
    with resources["label_studio"].session() as ls:
        return list(ls.ls.tasks.list(project=ls.project_id(), fields="all"))


def annotate(resources, task_id: int, label: str):
    with resources["label_studio"].session() as ls:
        return ls.ls.annotations.create(id=task_id, result=choice_result(label), lead_time=2.5)


def table(resources, sql: str, params=()) -> list[tuple]:
    with resources["duckdb"].connect(read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


# --- project and tasks ---------------------------------------------------------------------------------


def test_project_creation_is_idempotent_and_follows_config_changes(platform, monkeypatch):
    resources, instance, _ = platform
    first = materialize(label_studio_project, resources, instance)
    second = materialize(label_studio_project, resources, instance)
    assert (first["created"], second["created"], second["updated"]) == (True, False, False)
    assert first["project_id"] == second["project_id"]

    changed = labeling_config().replace("<View>", "<View><Header value='changed instructions'/>", 1)
    monkeypatch.setattr("fic_assets.defs.labelling.assets.labeling_config", lambda: changed)
    third = materialize(label_studio_project, resources, instance)
    assert (third["created"], third["updated"], third["project_id"]) == (False, True, first["project_id"])


def test_tasks_are_stratified_over_brands_with_a_weak_pre_annotation(platform):
    resources, instance, _ = platform
    metadata = start_round(resources, instance, tasks_per_round=8)
    tasks = project_tasks(resources)
    assert metadata["tasks_created"] == 8 == len(tasks)
    assert {task.data["brand_slug"] for task in tasks} == set(BRANDS)  # 8 tasks: two per brand, not 8 of one
    assert {task.data["brand"] for task in tasks} == set(BRANDS.values())
    for task in tasks:
        (prediction,) = task.predictions
        expected = "not_worn" if task.data["is_packshot"] else "worn"
        assert prediction.result[0]["value"]["choices"] == [expected]
        assert prediction.model_version == "packshot-flag" and 0 < prediction.score < 1


def test_rerun_imports_no_duplicate_task_even_when_duckdb_forgot(platform):
    """Bad input: DuckDB lost its record of imported tasks (a run that died after the import)."""
    resources, instance, images = platform
    first = start_round(resources, instance)
    assert first["tasks_created"] == len(images)
    second = materialize(label_tasks, resources, instance)
    assert second["tasks_created"] == 0

    with resources["duckdb"].connect() as con:
        con.execute("DELETE FROM label_tasks")
    third = materialize(label_tasks, resources, instance)
    assert (third["tasks_created"], third["tasks_adopted"]) == (0, len(images))
    urls = [task.data["image"] for task in project_tasks(resources)]
    assert len(urls) == len(set(urls)) == len(images)


# --- annotations -> labels -------------------------------------------------------------------------------


def sensor_tick(resources, instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"label_studio": resources["label_studio"]})
    return annotation_sensor(context)


def test_annotations_land_in_labels_after_a_sensor_tick_and_edits_and_deletes_follow(platform):
    resources, instance, _ = platform
    start_round(resources, instance)
    tasks = {task.data["image"]: task.id for task in project_tasks(resources)}
    urls = sorted(tasks)
    # New tasks are not an annotation change: nothing to pull yet.
    assert "no annotation changed" in sensor_tick(resources, instance).skip_message

    worn = annotate(resources, tasks[urls[0]], "worn")
    annotate(resources, tasks[urls[1]], "not_worn")
    annotate(resources, tasks[urls[2]], "unusable")
    tick = sensor_tick(resources, instance)
    assert isinstance(tick, dg.SensorResult) and len(tick.run_requests) == 1
    assert isinstance(sensor_tick(resources, instance, cursor=tick.cursor), dg.SkipReason)  # nothing new since

    metadata = materialize(human_labels, resources, instance)
    assert (metadata["labels"], metadata["new"], metadata["trainable"]) == (3, 3, 2)  # unusable is stored, not trainable
    stored = dict(table(resources, "SELECT image_url, label FROM labels"))
    assert stored == {urls[0]: "worn", urls[1]: "not_worn", urls[2]: "unusable"}
    row = table(resources, "SELECT item_id, annotator, task_id, annotation_id, lead_time, annotator_id FROM labels WHERE image_url = ?", [urls[0]])[0]
    assert row[0] and "@" in row[1] and row[2] == tasks[urls[0]] and row[3] == worn.id and row[4] == 2.5 and row[5] == worn.completed_by

    with resources["label_studio"].session() as ls:
        ls.ls.annotations.update(id=worn.id, result=choice_result("not_worn"))
    edit_tick = sensor_tick(resources, instance, cursor=tick.cursor)
    assert isinstance(edit_tick, dg.SensorResult)
    assert materialize(human_labels, resources, instance)["changed"] == 1
    assert dict(table(resources, "SELECT image_url, label FROM labels"))[urls[0]] == "not_worn"

    with resources["label_studio"].session() as ls:
        ls.ls.annotations.delete(id=worn.id)  # the task's only annotation: fewer annotated tasks
    assert isinstance(sensor_tick(resources, instance, cursor=edit_tick.cursor), dg.SensorResult)
    assert materialize(human_labels, resources, instance)["removed"] == 1
    assert urls[0] not in dict(table(resources, "SELECT image_url, label FROM labels"))


def test_unknown_choice_is_kept_with_its_problem_and_makes_no_label(platform):
    """Bad input: an annotation whose choice the labelling config does not know (e.g. made by an old config)."""
    resources, instance, _ = platform
    start_round(resources, instance)
    tasks = project_tasks(resources)
    annotate(resources, tasks[0].id, "on_a_hanger")
    annotate(resources, tasks[1].id, "worn")
    metadata = materialize(human_labels, resources, instance)
    assert metadata["labels"] == 1 and metadata["unusable_annotations"] == {"unknown choice 'on_a_hanger'": 1}
    assert table(resources, "SELECT label, problem FROM annotations WHERE task_id = ?", [tasks[0].id]) == [(None, "unknown choice 'on_a_hanger'")]


def test_task_whose_image_is_gone_still_keeps_its_label(platform):
    """Bad input: the image vanished from the shop and from DuckDB `images` after its task was created."""
    resources, instance, _ = platform
    start_round(resources, instance)
    task = project_tasks(resources)[0]
    with resources["duckdb"].connect() as con:
        con.execute("DELETE FROM images WHERE image_url = ?", [task.data["image"]])
    annotate(resources, task.id, "unusable")
    materialize(human_labels, resources, instance)
    assert table(resources, "SELECT item_id, label FROM labels WHERE image_url = ?", [task.data["image"]]) == [(task.data["item_id"], "unusable")]


def test_two_annotators_disagreeing_resolve_by_majority_then_recency(platform, label_studio):
    resources, instance, _ = platform
    start_round(resources, instance)
    tasks = project_tasks(resources)[:2]
    with resources["label_studio"].session() as ls:
        me = ls.ls.users.whoami().id
        others = [ls.ls.users.create(email=f"{name}-{uuid.uuid4().hex[:6]}@fic.test", username=f"{name}{uuid.uuid4().hex[:6]}").id for name in ("ann", "bob")]
        # Seeded through the API as a second and third person would leave them.
        for user, label in zip([me, *others], ["worn", "not_worn", "not_worn"]):
            ls.ls.annotations.create(id=tasks[0].id, result=choice_result(label), completed_by=user)
        for user, label in zip([me, others[0]], ["not_worn", "worn"]):  # a 1:1 tie: the later one wins
            ls.ls.annotations.create(id=tasks[1].id, result=choice_result(label), completed_by=user)
    metadata = materialize(human_labels, resources, instance)
    stored = {url: (label, n, round(agreement, 2)) for url, label, n, agreement in table(resources, "SELECT image_url, label, annotations, agreement FROM labels")}
    assert stored[tasks[0].data["image"]] == ("not_worn", 3, 0.67)
    assert stored[tasks[1].data["image"]] == ("worn", 2, 0.5)
    assert metadata["disputed"] == 2


def test_resolution_rule_on_frames():
    """The documented rule without a server: an annotator's edit replaces their vote; majority; tie -> newest."""
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    rows = [
        # image a: ann voted worn then changed to not_worn; bob worn; cy not_worn -> not_worn 2:1
        (1, "a", "ann", "worn", t0), (2, "a", "ann", "not_worn", t0 + timedelta(minutes=5)), (3, "a", "bob", "worn", t0), (4, "a", "cy", "not_worn", t0),
        # image b: 1:1 tie, bob's is newer -> worn
        (5, "b", "ann", "not_worn", t0), (6, "b", "bob", "worn", t0 + timedelta(minutes=1)),
        # image c: only an unusable-choice annotation -> no label
        (7, "c", "ann", None, t0),
    ]
    frame = labels.annotations_frame(
        [
            {"annotation_id": i, "project_id": 1, "task_id": ord(url), "image_url": url, "item_id": url, "annotator": who, "label": label,
             "problem": None if label else "no choice", "created_at": at.isoformat(), "updated_at": at.isoformat(), "lead_time": 1.0}
            for i, url, who, label, at in rows
        ]
    )
    resolved = labels.resolve_labels(frame).set_index("image_url")
    assert resolved.loc["a", "label"] == "not_worn" and resolved.loc["a", "annotations"] == 3 and resolved.loc["a", "annotation_id"] == 2
    assert resolved.loc["b", "label"] == "worn" and resolved.loc["b", "agreement"] == 0.5
    assert "c" not in resolved.index


# --- bad services ------------------------------------------------------------------------------------------


def test_label_studio_down_fails_the_run_naming_the_url_and_writes_nothing(platform):
    """Bad input: the Label Studio service is down."""
    resources, instance, _ = platform
    down = f"http://127.0.0.1:{free_port()}"
    broken = {**resources, "label_studio": LabelStudioResource(url=down, token="whatever", project_title="x", timeout_seconds=5)}
    with resources["duckdb"].connect(read_only=True) as con:
        before = con.execute("SELECT (SELECT count(*) FROM label_tasks), (SELECT count(*) FROM labels)").fetchone()
    for asset in (label_studio_project, label_tasks, human_labels):
        with pytest.raises(LabelStudioUnavailable, match=down):
            dg.materialize([asset], resources=broken, instance=instance)
    with pytest.raises(LabelStudioUnavailable, match=down):
        sensor_tick(broken, instance)
    with resources["duckdb"].connect(read_only=True) as con:
        assert con.execute("SELECT (SELECT count(*) FROM label_tasks), (SELECT count(*) FROM labels)").fetchone() == before


def test_wrong_token_is_a_clear_error(platform, label_studio):
    """Bad input: a token Label Studio does not know."""
    resources, instance, _ = platform
    wrong = {**resources, "label_studio": LabelStudioResource(url=label_studio.url, token="0" * 40, project_title="x")}
    with pytest.raises(LabelStudioAuthError, match="FIC_LABEL_STUDIO_TOKEN"):
        dg.materialize([label_studio_project], resources=wrong, instance=instance)


# --- relabel rounds -------------------------------------------------------------------------------------------


def test_relabel_sensor_retrains_first_then_starts_one_round(platform, monkeypatch):
    resources, instance, _ = platform
    monkeypatch.setenv("FIC_RELABEL_MIN_LABELS", "3")
    context = lambda: dg.build_sensor_context(instance=instance, resources={"duckdb": resources["duckdb"]})  # noqa: E731
    assert "no labelling round yet" in relabel_sensor(context()).skip_message

    start_round(resources, instance)
    tasks = project_tasks(resources)
    for task, label in zip(tasks[:2], ["worn", "not_worn"]):
        annotate(resources, task.id, label)
    materialize(human_labels, resources, instance)
    assert "2 new human labels" in relabel_sensor(context()).skip_message

    annotate(resources, tasks[2].id, "worn")
    materialize(human_labels, resources, instance)
    retrain = relabel_sensor(context())
    assert isinstance(retrain, dg.RunRequest) and retrain.job_name == "retrain_job" and retrain.tags["fic/new_labels"] == "3"
    assert relabel_sensor(context()).run_key == retrain.run_key  # same round: the daemon dedupes by run_key

    # The retrain run of this round, as the daemon would have launched it (it failed: no model is fine too).
    run = instance.add_run(dg.DagsterRun(job_name="retrain_job", run_id=uuid.uuid4().hex, tags=retrain.tags, status=dg.DagsterRunStatus.FAILURE))
    assert run.status == dg.DagsterRunStatus.FAILURE
    next_round = relabel_sensor(context())
    assert isinstance(next_round, dg.RunRequest) and next_round.job_name == "labelling_round_job"

    materialize(label_tasks, resources, instance)  # the round ran: counting starts again
    assert "0 new human labels" in relabel_sensor(context()).skip_message


def test_labels_table_has_no_duplicate_images_after_repeated_pulls(platform):
    resources, instance, _ = platform
    start_round(resources, instance)
    for task in project_tasks(resources)[:4]:
        annotate(resources, task.id, "worn")
    for _ in range(3):
        materialize(human_labels, resources, instance)
    assert table(resources, "SELECT count(*), count(DISTINCT image_url) FROM labels") == [(4, 4)]
    assert table(resources, "SELECT count(*) FROM annotations") == [(4,)]


# --- who labelled: the simulated annotator is a Label Studio user of its own ---------------------------------------


def test_a_simulated_label_and_a_persons_label_name_different_labellers(platform, label_studio):
    resources, instance, _ = platform
    start_round(resources, instance, tasks_per_round=4)
    tasks = sorted(project_tasks(resources), key=lambda task: task.id)
    person = annotate(resources, tasks[0].id, "worn")  # the admin, as a person logged in with the demo login
    truth = {task.data["image"]: "not_worn" for task in tasks[1:3]}  # tasks[3]: no kept truth, so it stays open
    with resources["label_studio"].session() as ls:
        report = simulated_annotator.annotate_open_tasks(ls, ls.project_id(), truth, error_rate=0.0)
        again = simulated_annotator.annotate_open_tasks(ls, ls.project_id(), truth, error_rate=0.0)  # nothing left to answer
        admin = ls.ls.users.whoami()
        simulated_users = [user for user in ls.ls.users.list() if user.email == SIMULATED_ANNOTATOR["email"]]
    assert (report.answered, report.unknown_image, again.answered) == (2, 1, 0)
    assert len(simulated_users) == 1  # made once, found the second time

    materialize(human_labels, resources, instance)
    labelled = {url: (who, user_id) for url, who, user_id in table(resources, "SELECT image_url, annotator, annotator_id FROM labels")}
    assert labelled[tasks[0].data["image"]] == (label_studio.username, admin.id) and person.completed_by == admin.id
    assert {labelled[url] for url in truth} == {(SIMULATED_ANNOTATOR["email"], simulated_users[0].id)}
    assert simulated_users[0].id != admin.id
    assert table(resources, "SELECT annotator, annotator_id, count(*) FROM annotations GROUP BY ALL ORDER BY annotator") == [
        (label_studio.username, admin.id, 1), (SIMULATED_ANNOTATOR["email"], simulated_users[0].id, 2)]


def test_a_duckdb_file_without_the_labeller_column_gets_it_and_keeps_its_labels(tmp_path):
    """Bad input: a DuckDB file of the previous release (labels and annotations without annotator_id)."""
    path = tmp_path / "fic.duckdb"
    with warehouse.connect(path) as con:
        con.execute("ALTER TABLE labels DROP COLUMN annotator_id")
        con.execute("ALTER TABLE annotations DROP COLUMN annotator_id")
        con.execute("""INSERT INTO labels (image_url, label, annotator, annotated_at, task_id, annotation_id, annotations, agreement, project_key)
                       VALUES ('http://shop.test/a.jpg', 'worn', 'ann@fic.test', now(), 1, 1, 1, 1.0, 1)""")
    for _ in range(2):  # the column is added once; opening again changes nothing
        with warehouse.connect(path) as con:
            assert "annotator_id" in warehouse.table_columns(con, "labels") and "annotator_id" in warehouse.table_columns(con, "annotations")
            assert con.execute("SELECT image_url, annotator, annotator_id FROM labels").fetchall() == [("http://shop.test/a.jpg", "ann@fic.test", None)]


# --- annotation_sensor across a restart -------------------------------------------------------------------------


def test_annotation_sensor_after_the_demo_hand_over_starts_from_the_last_pull_and_requests_nothing_without_a_change(
        platform, monkeypatch):
    """The demo ticks annotation_sensor in process (build_sensor_context: no sensor state is stored) and runs
    human_labels; the daemon started afterwards has no cursor. Its ticks start from the state the last pull
    recorded: no run over all tasks again, a new round is no annotation change, and a real change still counts.
    The daemon part is the sensor daemon's own iteration over a code location (test_reliability_label_studio)."""
    from dagster._core.scheduler.instigation import TickStatus

    from fic_assets_tests.test_reliability_label_studio import SensorDaemon

    resources, _, _ = platform
    monkeypatch.setenv("FIC_LABEL_STUDIO_URL", resources["label_studio"].url)
    monkeypatch.setenv("FIC_LABEL_STUDIO_TOKEN", resources["label_studio"].token)
    monkeypatch.setenv("FIC_TEST_PROJECT_TITLE", resources["label_studio"].project_title)
    monkeypatch.setenv("FIC_DUCKDB", resources["duckdb"].path)
    queued = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}}
    with dg.instance_for_test(overrides=queued) as instance:
        start_round(resources, instance, tasks_per_round=8)
        tasks = sorted(project_tasks(resources), key=lambda task: task.id)
        for task in tasks[:3]:
            annotate(resources, task.id, "worn")
        demo_tick = sensor_tick(resources, instance)  # what `fic demo` does, then it runs the requested pull
        assert isinstance(demo_tick, dg.SensorResult) and demo_tick.run_requests[0].tags["fic/annotated_tasks"] == "3"
        assert materialize(human_labels, resources, instance)["annotated_tasks"] == 3
        assert "no annotation changed" in sensor_tick(resources, instance).skip_message  # a fresh context: no cursor

        start_round(resources, instance, tasks_per_round=8)  # the next round: tasks imported, nothing annotated
        assert "no annotation changed" in sensor_tick(resources, instance).skip_message

        daemon = SensorDaemon(instance)
        try:
            after_restart = daemon.tick("annotation_sensor")
            assert after_restart.status == TickStatus.SKIPPED and not after_restart.run_ids, after_restart
            annotate(resources, tasks[3].id, "not_worn")
            changed = daemon.tick("annotation_sensor")
            assert changed.status == TickStatus.SUCCESS and len(changed.run_ids) == 1, changed
            quiet = daemon.tick("annotation_sensor")  # the run is still queued: the cursor says it was asked for
            assert quiet.status == TickStatus.SKIPPED and not quiet.run_ids, quiet
        finally:
            daemon.close()
        (run,) = instance.get_runs(filters=dg.RunsFilter(job_name="human_labels_job"))
        assert run.tags["fic/annotated_tasks"] == "4" and run.status == dg.DagsterRunStatus.QUEUED
