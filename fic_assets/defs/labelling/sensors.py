"""Sensors of the labelling loop: annotations -> human_labels, enough new labels -> next round."""

from datetime import datetime, timezone

import dagster as dg

from fic_assets import settings
from fic_assets.defs.labelling.jobs import human_labels_job, labelling_round_job
from fic_assets.labelling.labels import labels_since
from fic_assets.labelling.client import LabelStudioResource
from fic_assets.resources import DuckDBResource
from fic_assets import storage


@dg.sensor(
    job=human_labels_job,
    minimum_interval_seconds=30,
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


def relabel_request(new_labels: int, threshold: int, round_storage_id: int) -> dg.RunRequest | dg.SkipReason:
    if new_labels < threshold:
        return dg.SkipReason(f"{new_labels} new human labels since the last labelling round; the next round starts at {threshold}")
    return dg.RunRequest(run_key=f"round-after:{round_storage_id}", tags={"fic/new_labels": str(new_labels)})


@dg.sensor(
    job=labelling_round_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts the next labelling round once FIC_RELABEL_MIN_LABELS new human labels exist since the last one.",
)
def relabel_sensor(context: dg.SensorEvaluationContext, duckdb: DuckDBResource):
    records = context.instance.fetch_materializations(dg.AssetKey("label_tasks"), limit=1).records
    if not records:
        return dg.SkipReason("no labelling round yet: materialize `label_tasks` to start the first one")
    last_round = records[0]
    since = datetime.fromtimestamp(last_round.timestamp, tz=timezone.utc)
    try:
        with duckdb.connect(read_only=True) as con:
            new_labels = labels_since(con, since)
    except storage.DuckDBBusyError as error:
        return dg.SkipReason(f"DuckDB busy, will retry next tick: {error}")
    # run_key per round: the same round never starts twice, however many ticks see the threshold passed.
    return relabel_request(new_labels, int(settings.get("FIC_RELABEL_MIN_LABELS")), last_round.storage_id)
