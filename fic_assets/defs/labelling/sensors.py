"""annotation_sensor: Label Studio annotations -> human_labels (relabel_sensor lives with the model: it retrains first)."""

from datetime import datetime

import dagster as dg

from fic_assets.platform import settings
from fic_assets.defs.labelling.jobs import human_labels_job
from fic_assets.defs.labelling.client import LabelStudioResource


@dg.sensor(
    job=human_labels_job,
    minimum_interval_seconds=settings.sensor_interval(30),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Polls Label Studio for tasks whose annotations changed since the cursor; requests a human_labels run.",
)
def annotation_sensor(context: dg.SensorEvaluationContext, label_studio: LabelStudioResource):
    # The cursor is the newest task update seen. Creating, editing and deleting an annotation all move a task's
    # updated_at, so one small filtered query per tick replaces a full export.
    cursor = datetime.fromisoformat(context.cursor) if context.cursor else None
    with label_studio.session() as ls:
        project_id = ls.find_project()
        if project_id is None:
            return dg.SkipReason(f"no project {label_studio.project_title!r} in Label Studio yet")
        changed, newest = ls.changed_since(project_id, cursor)
    if not changed or newest is None:
        return dg.SkipReason("no annotation changes since the last tick")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"annotations:{project_id}:{newest.isoformat()}", tags={"fic/changed_tasks": str(changed)})],
        cursor=newest.isoformat(),
    )
