"""annotation_sensor: Label Studio annotations -> human_labels (relabel_sensor lives with the model: it retrains first)."""

import json

import dagster as dg

from fic_assets.platform import settings
from fic_assets.defs.labelling.jobs import human_labels_job
from fic_assets.defs.labelling.client import PULLED_STATE, AnnotationState, LabelStudioResource, latest_state


def last_pulled_state(instance: dg.DagsterInstance) -> AnnotationState | None:
    """The annotation state the latest human_labels run pulled, from the instance's event log."""
    event = instance.get_latest_materialization_event(dg.AssetKey("human_labels"))
    entry = event.asset_materialization.metadata.get(PULLED_STATE) if event and event.asset_materialization else None
    return AnnotationState.from_json(entry.value) if entry is not None else None


@dg.sensor(
    job=human_labels_job,
    minimum_interval_seconds=settings.sensor_interval(30),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Polls Label Studio (two one-task queries, no export) for annotations created, edited or deleted since "
    "the last pull or tick; requests a human_labels run. New tasks and predictions are not annotation changes.",
)
def annotation_sensor(context: dg.SensorEvaluationContext, label_studio: LabelStudioResource):
    # What was seen last: this sensor's cursor, or the state the latest human_labels run recorded, whichever is
    # newer. The second survives what the cursor does not: the demo's in-process tick (no sensor state), a
    # wiped or new daemon, a run launched by hand.
    with label_studio.session() as ls:
        project = ls.find_seen_project()
        if project is None:
            return dg.SkipReason(f"no project {label_studio.project_title!r} in Label Studio yet")
        now = ls.annotation_state(project)
    before = latest_state(AnnotationState.from_json(context.cursor) if context.cursor else None, last_pulled_state(context.instance))
    if not now.differs_from(before):
        return dg.SkipReason(f"no annotation changed since the last pull or tick ({now.annotated_tasks} annotated task(s))")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=now.run_key(), tags={"fic/annotated_tasks": str(now.annotated_tasks)})],
        cursor=json.dumps(now.as_json()),
    )

