"""The demo's automation ticks, recorded in the instance as Dagster's daemon records `automation_sensor`'s own.

`fic demo` runs without a daemon, so it evaluates the automation conditions itself. For the Dagster UI and for the
daemon that takes over afterwards (`scripts/ui`), such a tick must leave what a daemon tick leaves: a tick of the
sensor (Overview -> Automation, with its runs), the evaluation of each asset whose result changed, with the runs it
started (the asset's Automation tab), and the sensor's cursor in its instigator state, which the daemon's next tick
continues from (instead of starting over: a first tick takes everything it finds as handled).

Dagster (1.13.27) has no public API for this: `dg.evaluate_automation_conditions` is its unit-test helper (its
evaluation ids are its own counter, not the tick the daemon's retry logic compares with the cursor) and records
nothing. So this module does what `dagster/_daemon/asset_daemon.py` (`_async_process_auto_materialize_tick`,
`_evaluate_auto_materialize_tick`) does, with the same private pieces, all in `record_tick` below:
AutomationTickEvaluationContext (the daemon's evaluation, evaluation id = the tick's id), the cursor
(de)serialisation of the daemon, and the schedule storage's ticks, instigator state and
`add_auto_materialize_asset_evaluations`. fic_assets_tests/test_demo_automation.py fails if any of that changes: it
reads the records through the UI's GraphQL and hands the cursor to a real `dagster-daemon`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import dagster as dg

# The code location's name wherever the UI and the daemon load it (workspace.yaml, deploy/workspace.yaml, `dg dev`
# through pyproject's [tool.dg.project]): the sensor's state and ticks are stored under a selector built from it.
CODE_LOCATION_NAME = "fic"


@dataclass
class RecordedTick:
    """One automation tick being recorded: what it requests, and the runs started for it."""

    instance: dg.DagsterInstance
    evaluation_id: int
    run_requests: Sequence[dg.RunRequest]
    run_tags: dict[str, str]  # the tags the daemon gives the runs of this tick
    _tick: object
    _evaluations: dict = field(default_factory=dict)  # entity key -> AutomationConditionEvaluationWithRunIds

    def start_run(self, run_id: str, asset_keys: Sequence[dg.AssetKey]) -> None:
        """Record run_id (about to run) on the tick and on the evaluations of asset_keys, as the daemon does once
        it submitted a run: the UI shows it from here on."""
        self._tick = self._tick.with_run_info(run_id=run_id)
        self.instance.update_tick(self._tick)
        updated = []
        for key in asset_keys:
            if key in self._evaluations:
                evaluation = self._evaluations[key]
                self._evaluations[key] = updated_evaluation = replace(evaluation, run_ids=evaluation.run_ids | {run_id})
                updated.append(updated_evaluation)
        if updated:
            add_evaluations(self.instance, self.evaluation_id, updated)


def add_evaluations(instance: dg.DagsterInstance, evaluation_id: int, evaluations: list) -> None:
    """Store evaluations (counting a dynamically partitioned subset needs the partitions: the loading context)."""
    import datetime

    with dg.partition_loading_context(datetime.datetime.now(datetime.timezone.utc), instance):
        instance.schedule_storage.add_auto_materialize_asset_evaluations(evaluation_id, evaluations)


def sensor_origin(sensor_name: str):
    """The sensor's origin as this process loads the code location (in process), under the location's real name."""
    from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
    from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name="fic_assets.definitions"),
        location_name=CODE_LOCATION_NAME,
    )
    return RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME).get_instigator_origin(sensor_name)


def evaluate_tick(instance: dg.DagsterInstance, asset_graph, sensor: dg.AutomationConditionSensorDefinition, cursor,
                  evaluation_id: int, run_tags: dict[str, str]):
    """Evaluate sensor's automation conditions from cursor (an AssetDaemonCursor) as the daemon's tick does, with its
    evaluator: returns (run requests, the new cursor, the evaluations that changed). benchmarks/scale.py times this
    call: it is the daemon's cost of one automation_sensor tick."""
    from dagster._core.definitions.automation_tick_evaluation_context import AutomationTickEvaluationContext

    return AutomationTickEvaluationContext(
        evaluation_id=evaluation_id, instance=instance, asset_graph=asset_graph, cursor=cursor,
        materialize_run_tags=run_tags, observe_run_tags={}, auto_observe_asset_keys=set(),
        asset_selection=sensor.asset_selection, asset_job_keys=sensor.asset_job_keys,
        emit_backfills=sensor.emit_backfills, default_condition=sensor.default_condition,
        logger=logging.getLogger("fic.demo.automation"),
    ).evaluate()


@contextmanager
def record_tick(defs: dg.Definitions, instance: dg.DagsterInstance,
                sensor: dg.AutomationConditionSensorDefinition) -> Iterator[RecordedTick]:
    """Evaluate sensor's automation conditions once, as its daemon tick would, and record the tick: yields a
    RecordedTick whose run_requests the caller executes (calling start_run for each run).

    In the daemon's order: the tick (STARTED), the evaluation from the stored cursor with the tick's id as evaluation
    id, the evaluations that changed, the new cursor, then the runs; the tick ends SUCCESS (runs started), SKIPPED
    (none) or FAILURE (an error here or in the caller, re-raised). The tick stores no run requests, so a daemon
    retrying a failed demo tick never launches the demo's runs again."""
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        SensorInstigatorData,
        TickData,
        TickStatus,
    )
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster._core.storage.tags import ASSET_EVALUATION_ID_TAG, AUTO_MATERIALIZE_TAG, AUTOMATION_CONDITION_TAG
    from dagster._daemon.asset_daemon import (
        asset_daemon_cursor_from_instigator_serialized_cursor,
        asset_daemon_cursor_to_instigator_serialized_cursor,
    )
    from dagster._utils.error import serializable_error_info_from_exc_info

    origin = sensor_origin(sensor.name)
    selector_id = origin.get_selector().get_id()
    state = instance.get_instigator_state(origin.get_id(), selector_id)
    data = state.instigator_data if state is not None else None
    asset_graph = defs.resolve_asset_graph()
    cursor = asset_daemon_cursor_from_instigator_serialized_cursor(data.cursor if data else None, asset_graph)
    tick = instance.create_tick(TickData(
        instigator_origin_id=origin.get_id(), instigator_name=sensor.name, instigator_type=InstigatorType.SENSOR,
        status=TickStatus.STARTED, timestamp=time.time(), selector_id=selector_id))
    recorded = None
    try:
        evaluation_id = tick.automation_condition_evaluation_id
        # The daemon's tags of an automation run: the UI's "Launched by" and the run's link to the tick and evaluation.
        materialize_run_tags = {**instance.auto_materialize_run_tags, **DagsterRun.tags_for_tick_id(str(tick.tick_id)),
                                "dagster/sensor_name": sensor.name, **sensor.run_tags}
        run_requests, new_cursor, evaluations = evaluate_tick(instance, asset_graph, sensor, cursor, evaluation_id,
                                                              materialize_run_tags)
        with_run_ids = {evaluation.key: evaluation.with_run_ids(set()) for evaluation in evaluations}
        add_evaluations(instance, evaluation_id, list(with_run_ids.values()))
        sensor_data = SensorInstigatorData(
            last_tick_timestamp=tick.timestamp, min_interval=sensor.minimum_interval_seconds,
            cursor=asset_daemon_cursor_to_instigator_serialized_cursor(new_cursor), sensor_type=sensor.sensor_type,
            last_sensor_start_timestamp=data.last_sensor_start_timestamp if data else tick.timestamp)
        if state is None:  # what the daemon's first tick of a sensor running by default stores
            instance.add_instigator_state(InstigatorState(origin, InstigatorType.SENSOR,
                                                          InstigatorStatus.DECLARED_IN_CODE, sensor_data))
        else:
            instance.update_instigator_state(state.with_data(sensor_data))
        run_tags = {**materialize_run_tags, AUTO_MATERIALIZE_TAG: "true", AUTOMATION_CONDITION_TAG: "true",
                    ASSET_EVALUATION_ID_TAG: str(evaluation_id)}
        recorded = RecordedTick(instance, evaluation_id, run_requests, run_tags, tick, with_run_ids)
        yield recorded
    except BaseException:
        failed = recorded._tick if recorded is not None else tick
        instance.update_tick(failed.with_status(TickStatus.FAILURE, error=serializable_error_info_from_exc_info(
            sys.exc_info()), failure_count=failed.failure_count + 1))
        raise
    done = recorded._tick
    instance.update_tick(done.with_status(TickStatus.SUCCESS if done.tick_data.run_ids else TickStatus.SKIPPED))
