"""`fic demo` hands over to the daemon: its automation ticks are recorded as `automation_sensor`'s (the UI's Automation
tab shows them with their runs, the daemon continues from their cursor), and `annotation_sensor` pulls nothing again
across a real `dagster-daemon` restart. A temp instance with the platform's dagster.yaml, the real definitions, a
real `dagster-daemon run`, a real Label Studio."""

from __future__ import annotations

import dagster as dg
import pytest

from fic_assets.platform import warehouse
from fic_assets_tests.conftest import free_port
from fic_assets_tests.test_automation import (
    BRANDS,
    crawled_platform,
    evaluations,
    instance_of,
    report_promotable_model,
    running_daemon,
    wait_for,
)

AUTOMATED = ("production_model", "brand_predictions", "analytics_snapshot", "brand_report")


@pytest.fixture
def platform_settings(monkeypatch):
    """Apply a platform env to this process too (the demo's in-process runs read it), restored afterwards."""
    def apply(env: dict) -> dict:
        for name, value in env.items():
            if name == "DAGSTER_HOME" or name.startswith("FIC_"):
                monkeypatch.setenv(name, value)
        return env
    return apply


def sensor_ticks(instance: dg.DagsterInstance, sensor_name: str):
    """The sensor's ticks, newest first, as the UI finds them: under the selector of location `fic`."""
    from fic_assets.demo.automation_ticks import sensor_origin

    origin = sensor_origin(sensor_name)
    return instance.get_ticks(origin.get_id(), origin.get_selector().get_id())


def graphql(instance: dg.DagsterInstance, query: str, variables: dict) -> dict:
    """What the UI's webserver answers: Dagster's GraphQL schema over a workspace with the code location `fic`."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    origin = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="fic_assets.definitions"), location_name="fic")
    # Entered, as the webserver enters each request's context (it loads the dynamic partitions).
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context, \
            context.create_request_context() as request_context:
        result = execute_dagster_graphql(request_context, query, variables)
    assert not result.errors, result.errors
    return result.data


AUTOMATION_TAB = """
query ($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) { ... on AssetNode { currentAutoMaterializeEvaluationId } }
  assetConditionEvaluationRecordsOrError(assetKey: $assetKey, limit: 10) {
    ... on AssetConditionEvaluationRecords { records { evaluationId numRequested runIds } }
  }
}"""

SENSOR_TICKS = """
query ($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { ticks(limit: 20) { tickId status runIds } } }
  }
}"""


def test_the_demo_records_under_the_location_name_the_ui_and_the_daemon_load():
    """Bad input: a workspace, compose or `dg dev` config naming the location otherwise (the demo's records would
    sit under another selector, unseen by the UI and the daemon)."""
    import tomllib

    import yaml

    from fic_assets.demo.automation_ticks import CODE_LOCATION_NAME
    from fic_assets.platform.settings import REPO_ROOT

    for workspace in ("workspace.yaml", "deploy/workspace.yaml"):
        (entry,) = yaml.safe_load((REPO_ROOT / workspace).read_text())["load_from"]
        (target,) = entry.values()
        assert target["location_name"] == CODE_LOCATION_NAME, workspace
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["dg"]["project"]["code_location_name"] == CODE_LOCATION_NAME


def test_demo_automation_ticks_show_in_the_ui_and_the_daemon_continues_from_their_cursor(
        tmp_path, demo_shop_url, trained_model, platform_settings):
    """`fic demo`'s automation ticks (demo/run.py automation_tick, refresh) after its first: a promotion, every
    brand's predictions in one run, then the report, tagged as automation_sensor's runs. They leave what the daemon's
    leave: each asset's evaluation with the run it started (storage and the UI's GraphQL), the sensor's ticks with
    their runs, the cursor. A crawl of one brand after the demo, then a real daemon: its first tick requests that
    brand only, which a daemon starting from scratch would not (its first tick takes everything as handled)."""
    from fic_assets.definitions import defs as load_defs
    from fic_assets.demo import run as demo

    env = platform_settings(crawled_platform(tmp_path, demo_shop_url, FIC_LABEL_STUDIO_URL=f"http://127.0.0.1:{free_port()}",
                                             FIC_IMAGE_CACHE_DIR=str(tmp_path / "cache")))
    defs = load_defs()
    with instance_of(env) as instance:
        assert demo.automation_tick(defs, instance) == 0  # the demo's first tick: what it finds is handled
        report_promotable_model(env, trained_model)
        demo.refresh(defs, instance)
        runs = {key: [run for run in instance.get_runs() if dg.AssetKey(key) in (run.asset_selection or ())] for key in AUTOMATED}
        demo_ticks = sensor_ticks(instance, "automation_sensor")
    assert {key: len(found) for key, found in runs.items()} == dict.fromkeys(AUTOMATED, 1)
    assert all(found[0].status == dg.DagsterRunStatus.SUCCESS for found in runs.values())
    # Requested in the same tick, the snapshot and the report it is built from share one run, as the daemon runs them.
    assert runs["analytics_snapshot"][0].run_id == runs["brand_report"][0].run_id

    # Storage: one evaluation per asset that requested something, naming its run; the runs name the evaluation.
    for key in AUTOMATED:
        ((requested, run_ids, _),) = evaluations(env, key)
        (run,) = runs[key]
        assert run_ids == {run.run_id}, key
        assert run.tags["dagster/sensor_name"] == "automation_sensor" and run.tags["dagster/from_automation_condition"] == "true"
        assert any(tick.tick_id == int(run.tags["dagster/tick"]) and run.run_id in tick.run_ids for tick in demo_ticks), key
    # Every brand in one run (the single-run backfill policy's range), every image predicted.
    assert evaluations(env, "brand_predictions")[0][0] == len(BRANDS)
    predicted = runs["brand_predictions"][0]
    assert (predicted.tags["dagster/asset_partition_range_start"], predicted.tags["dagster/asset_partition_range_end"]) == (BRANDS[0], BRANDS[-1])
    with warehouse.connect(env["FIC_DUCKDB"], read_only=True) as con:
        assert con.execute("SELECT count(*) FROM images").fetchone() == con.execute("SELECT count(*) FROM predictions").fetchone() > (0,)
    # The ticks are the daemon's kind: the first and the settled ones skipped, the others successful with their runs.
    statuses = [tick.status.value for tick in reversed(demo_ticks)]
    assert statuses[0] == "SKIPPED" and statuses.count("SUCCESS") == 3 and statuses[-2:] == ["SKIPPED", "SKIPPED"], statuses
    last_demo_tick = demo_ticks[0].tick_id

    # What the UI reads: the asset's Automation tab (its evaluations with their runs, the sensor's current evaluation
    # = the demo's cursor) and the sensor's tick list.
    with instance_of(env) as instance:
        tab = graphql(instance, AUTOMATION_TAB, {"assetKey": {"path": ["brand_predictions"]}})
        ticks = graphql(instance, SENSOR_TICKS, {"selector": {"repositoryLocationName": "fic", "repositoryName": "__repository__",
                                                              "sensorName": "automation_sensor"}})
    assert tab["assetNodeOrError"]["currentAutoMaterializeEvaluationId"] == str(last_demo_tick)
    records = tab["assetConditionEvaluationRecordsOrError"]["records"]
    requesting = [record for record in records if record["numRequested"]]
    assert [(record["numRequested"], record["runIds"]) for record in requesting] == [(len(BRANDS), [runs["brand_predictions"][0].run_id])]
    assert requesting[0]["evaluationId"] == runs["brand_predictions"][0].tags["dagster/asset_evaluation_id"]
    ui_ticks = ticks["sensorOrError"]["sensorState"]["ticks"]
    assert [tick["tickId"] for tick in ui_ticks] == [str(tick.tick_id) for tick in demo_ticks]
    assert sorted(run_id for tick in ui_ticks for run_id in tick["runIds"]) == sorted({found[0].run_id for found in runs.values()})

    # A crawl of levis after the demo, then the daemon.
    with instance_of(env) as instance:
        for key in ("pieces", "image_urls"):
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition="levis"))
    log = tmp_path / "dagster-daemon.log"
    with running_daemon(env, log) as daemon:
        def daemon_tick():
            with instance_of(env) as instance:
                ticks = [tick for tick in sensor_ticks(instance, "automation_sensor") if tick.tick_id > last_demo_tick]
            return ticks and ticks[-1].status.value != "STARTED" and ticks[-1]

        first = wait_for(daemon_tick, 90, "the daemon's first automation_sensor tick", daemon, log, interval=0.5)
    assert first.automation_condition_evaluation_id == first.tick_id > last_demo_tick  # no evaluation id reused
    (_, crawled) = [entry for entry in evaluations(env, "brand_predictions")]
    assert crawled[0] == 1 and len(crawled[1]) == 1 and set(first.run_ids) == crawled[1]
    with instance_of(env) as instance:
        (request_run,) = instance.get_runs(filters=dg.RunsFilter(run_ids=first.run_ids))
    assert request_run.tags["dagster/partition"] == "levis"
    # The demo's records are still there as they were.
    for key in AUTOMATED:
        assert evaluations(env, key)[0][1] == {runs[key][0].run_id}, key


def annotate(label_studio, task_id: int, label: str) -> None:
    from fic_assets.defs.labelling.client import choice_result

    with label_studio.session() as ls:
        ls.ls.annotations.create(id=task_id, result=choice_result(label), lead_time=2.5)


def test_annotation_sensor_pulls_nothing_again_across_a_real_daemon_restart(
        tmp_path, demo_shop_url, second_label_studio, platform_settings):
    """The demo's pull (an in-process annotation_sensor tick, which stores no cursor, and its human_labels run), then
    a real `dagster-daemon run`: its tick is skipped. A person's annotation: the daemon requests one pull (its
    cursor). Then the daemon is stopped and started again: its tick after the restart is skipped and requests no
    run (no pull of every task again). The daemon runs the whole code location; its sensors tick every 5 s
    (FIC_SENSOR_INTERVAL_SECONDS), and the test does not wait for the pull itself (a run process starts in ~15 s)."""
    from fic_assets.definitions import defs as load_defs
    from fic_assets.demo import run as demo

    # Beside, not in, tmp_path/data: the copy of Label Studio's data (second_label_studio).
    env = platform_settings(crawled_platform(
        tmp_path / "platform", demo_shop_url, FIC_LABEL_STUDIO_URL=second_label_studio.url, FIC_LABEL_STUDIO_TOKEN=second_label_studio.token,
        FIC_IMAGE_CACHE_DIR=str(tmp_path / "cache")))
    defs = load_defs()
    with dg.build_resources({"label_studio": defs.resources["label_studio"]}) as resources:
        label_studio = resources.label_studio
    with label_studio.session() as ls:  # this server is a copy of the session's: no project of another test's
        for project in ls.ls.projects.list():
            if project.title == label_studio.project_title:
                ls.ls.projects.delete(id=project.id)
    with instance_of(env) as instance:
        demo.execute(defs, instance, "labelling_round_job", dg.RunRequest())
        with label_studio.session() as ls:
            tasks = sorted(ls.ls.tasks.list(project=ls.project_id()), key=lambda task: task.id)
        for task in tasks[:3]:
            annotate(label_studio, task.id, "worn")
        assert demo.tick(defs, instance, "annotation_sensor") == 1  # the demo's pull: human_labels over 3 annotated tasks

    def pulls() -> list[dg.DagsterRun]:
        with instance_of(env) as instance:
            return list(reversed(instance.get_runs(filters=dg.RunsFilter(job_name="human_labels_job"))))

    def next_tick(after: int, daemon, log):
        """The first finished annotation_sensor tick after tick id `after`."""
        def finished():
            with instance_of(env) as instance:
                ticks = [tick for tick in sensor_ticks(instance, "annotation_sensor") if tick.tick_id > after]
            return ticks and ticks[-1].status.value != "STARTED" and ticks[-1]
        return wait_for(finished, 60, "an annotation_sensor tick", daemon, log, interval=0.5)

    log = tmp_path / "dagster-daemon.log"
    with running_daemon(env, log) as daemon:
        handed_over = next_tick(0, daemon, log)
        assert handed_over.status.value == "SKIPPED" and not handed_over.run_ids, handed_over
        annotate(label_studio, tasks[3].id, "not_worn")  # a person labels one more
        changed = next_tick(handed_over.tick_id, daemon, log)
        if changed.status.value == "SKIPPED":  # that tick had asked Label Studio before the annotation
            changed = next_tick(changed.tick_id, daemon, log)
        assert changed.status.value == "SUCCESS" and len(changed.run_ids) == 1, changed
        # Stopped at once: the requested pull may still be queued or running; the cursor says it was asked for.
    with running_daemon(env, log) as daemon:  # the same instance, a new daemon process
        after_restart = next_tick(changed.tick_id, daemon, log)
    assert after_restart.status.value == "SKIPPED" and not after_restart.run_ids, after_restart
    assert "no annotation changed since the last pull or tick (4 annotated task(s))" in after_restart.skip_reason
    assert [run.tags["fic/annotated_tasks"] for run in pulls()] == ["3", "4"]  # the demo's, the daemon's: no other
