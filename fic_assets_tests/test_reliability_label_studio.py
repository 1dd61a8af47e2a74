"""Reliability of labelling, for real (a Label Studio, the sensor daemon's own tick on a code location): Label
Studio down during a sensor tick fails the tick, keeps the cursor and loses no annotation."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import dagster as dg

from fic_assets.platform.warehouse import DuckDBResource
from fic_assets_tests.reliability import TcpSwitch, error_chain


# --- 3. Label Studio down during a sensor tick ----------------------------------------------------------------


@dg.definitions
def annotation_sensor_location() -> dg.Definitions:
    """The labelling domain as a code location the sensor daemon loads; Label Studio configured by env, as deployed."""
    from fic_assets.definitions import domain_defs
    from fic_assets.defs.labelling.client import LabelStudioResource

    return dg.Definitions.merge(domain_defs("labelling"), dg.Definitions(resources={
        "label_studio": LabelStudioResource(url=dg.EnvVar("FIC_LABEL_STUDIO_URL"), token=dg.EnvVar("FIC_LABEL_STUDIO_TOKEN"),
                                            project_title=dg.EnvVar("FIC_TEST_PROJECT_TITLE"), timeout_seconds=10),
        "duckdb": DuckDBResource(path=dg.EnvVar("FIC_DUCKDB")),
    }))


class SensorDaemon:
    """One code location and the sensor daemon's own iteration over it (what `dagster-daemon` does every tick)."""

    def __init__(self, instance: dg.DagsterInstance):
        from dagster._core.remote_origin import InProcessCodeLocationOrigin
        from dagster._core.test_utils import create_test_daemon_workspace_context
        from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
        from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

        self.instance = instance
        origin = LoadableTargetOrigin(module_name=__name__, attribute="annotation_sensor_location",
                                      working_directory=str(Path(__file__).resolve().parents[1]))
        self._context = create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(InProcessCodeLocationOrigin(origin)), instance)
        self.workspace = self._context.__enter__()
        self.clock = time.time()

    def close(self) -> None:
        self._context.__exit__(None, None, None)

    def sensor(self, name: str):
        (entry,) = self.workspace.create_request_context().get_code_location_entries().values()
        assert entry.code_location, entry.load_error
        (repository,) = entry.code_location.get_repositories().values()
        return repository.get_sensor(name)

    def tick(self, name: str):
        """One daemon iteration, a minute after the last (past the sensor's minimum interval); the sensor's newest tick."""
        import logging

        from dagster._core.test_utils import freeze_time
        from dagster._daemon.sensor import execute_sensor_iteration

        self.clock += 60
        with freeze_time(self.clock):
            list(execute_sensor_iteration(self.workspace, logging.getLogger("sensor-daemon"), None, None))
        sensor = self.sensor(name)
        return self.instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id, limit=1)[0]

    def cursor(self, name: str) -> str | None:
        sensor = self.sensor(name)
        state = self.instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
        return state.instigator_data.cursor if state and state.instigator_data else None


def test_label_studio_down_during_a_sensor_tick_fails_the_tick_keeps_the_cursor_and_loses_no_annotation(
        label_studio, tmp_path, monkeypatch):
    """Bad input: Label Studio goes down (connections refused, open ones reset) between two annotation_sensor ticks,
    while an annotation made just before the outage is still unseen.

    Evaluated by the sensor daemon's own iteration over a code location (dagster-internal test helpers, pinned
    Dagster version), so the tick record, the stored cursor and the queued runs are Dagster's, not the test's:
    the tick fails naming the server, the cursor stays, and the first tick after Label Studio is back requests
    the run for the annotation made before the outage."""
    from dagster._core.scheduler.instigation import TickStatus

    from fic_assets.defs.labelling.client import AnnotationState, LabelStudioResource
    from fic_assets_tests.test_labelling import (
        annotate,
        project_tasks,
        seed_catalogue,
        start_round,
    )

    switch = TcpSwitch(int(label_studio.url.rsplit(":", 1)[1])).up()  # Label Studio's address, as the platform sees it
    title = f"fic reliability {uuid.uuid4().hex[:8]}"
    # The test's own hands (setting up the round, annotating) talk to Label Studio directly, never through the switch.
    resources = {"label_studio": LabelStudioResource(url=label_studio.url, token=label_studio.token, project_title=title),
                 "duckdb": DuckDBResource(path=str(tmp_path / "fic.duckdb"))}
    monkeypatch.setenv("FIC_LABEL_STUDIO_URL", switch.url)
    monkeypatch.setenv("FIC_LABEL_STUDIO_TOKEN", label_studio.token)
    monkeypatch.setenv("FIC_TEST_PROJECT_TITLE", title)
    monkeypatch.setenv("FIC_DUCKDB", resources["duckdb"].path)
    seed_catalogue(resources["duckdb"])
    queued = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}}
    with dg.instance_for_test(overrides=queued) as instance:
        daemon = SensorDaemon(instance)
        try:
            start_round(resources, instance)  # the project and its tasks
            first_task, task = sorted(project_tasks(resources), key=lambda found: found.id)[:2]
            annotate(resources, first_task.id, "not_worn")
            first = daemon.tick("annotation_sensor")
            assert first.status == TickStatus.SUCCESS and len(first.run_ids) == 1, first
            cursor = daemon.cursor("annotation_sensor")
            assert cursor

            annotate(resources, task.id, "worn")  # made before the outage, not yet seen by the sensor
            switch.down()
            down = daemon.tick("annotation_sensor")
            # A failed tick (or, as good, a skip) whose text names the server and what to do.
            assert down.status in (TickStatus.FAILURE, TickStatus.SKIPPED), down
            said = error_chain(down.error) if down.status == TickStatus.FAILURE else down.skip_reason
            assert f"Label Studio at {switch.url} is not reachable" in said, said
            assert "start it with label_studio/start or fix FIC_LABEL_STUDIO_URL" in said
            assert daemon.cursor("annotation_sensor") == cursor  # nothing skipped over
            assert len(instance.get_runs(filters=dg.RunsFilter(job_name="human_labels_job"))) == 1  # no run requested

            switch.up()
            back = daemon.tick("annotation_sensor")
            assert back.status == TickStatus.SUCCESS and len(back.run_ids) == 1, back
            before, after = AnnotationState.from_json(cursor), AnnotationState.from_json(daemon.cursor("annotation_sensor"))
            assert after.seen_at > before.seen_at and after.newest_annotated > before.newest_annotated
            (run,) = instance.get_runs(filters=dg.RunsFilter(run_ids=list(back.run_ids)))
            assert run.job_name == "human_labels_job" and run.tags["fic/annotated_tasks"] == "2"  # with the annotation of the outage
            assert run.status == dg.DagsterRunStatus.QUEUED
        finally:
            daemon.close()
            switch.down()
