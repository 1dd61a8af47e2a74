"""relabel_sensor: enough new human labels -> retrain (image set, model, promotion) -> the next labelling round."""

from datetime import datetime, timezone

import dagster as dg

from fic_assets.platform import settings
from fic_assets.platform import warehouse
from fic_assets.defs.shared import SENSOR_LOCK_WAIT_SECONDS
from fic_assets.defs.labelling.jobs import labelling_round_job
from fic_assets.defs.model.jobs import retrain_job
from fic_assets.defs.labelling.labels import labels_since
from fic_assets.platform.warehouse import DuckDBResource

ROUND_TAG = "fic/round"
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def round_step(new_labels: int, threshold: int, round_id: str, retrain_status: dg.DagsterRunStatus | None):
    """What the loop does next for the round that started at `round_id` (a label_tasks materialization).

    Retrain first, then refresh the tasks with the new model's pre-annotations and uncertainty order. A failed
    retrain (e.g. the model did not pass `model_quality`) still refreshes the tasks, with the old model.
    """
    if new_labels < threshold:
        return dg.SkipReason(f"{new_labels} new human labels since the last labelling round; the next round starts at {threshold}")
    tags = {ROUND_TAG: round_id, "fic/new_labels": str(new_labels)}
    if retrain_status is None:
        return dg.RunRequest(run_key=f"retrain:{round_id}", job_name=retrain_job.name, tags=tags)
    if retrain_status not in FINISHED:
        return dg.SkipReason(f"waiting for the retrain run of round {round_id} ({retrain_status.value})")
    return dg.RunRequest(run_key=f"round-after:{round_id}", job_name=labelling_round_job.name, tags=tags)


@dg.sensor(
    jobs=[retrain_job, labelling_round_job],
    minimum_interval_seconds=settings.sensor_interval(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Once FIC_RELABEL_MIN_LABELS new human labels exist since the last round: retrain, then start the next labelling round.",
)
def relabel_sensor(context: dg.SensorEvaluationContext, duckdb: DuckDBResource):
    records = context.instance.fetch_materializations(dg.AssetKey("label_tasks"), limit=1).records
    if not records:
        return dg.SkipReason("no labelling round yet: materialize `label_tasks` to start the first one")
    last_round = records[0]
    since = datetime.fromtimestamp(last_round.timestamp, tz=timezone.utc)
    try:
        with duckdb.connect(read_only=True, wait_seconds=SENSOR_LOCK_WAIT_SECONDS) as con:
            new_labels = labels_since(con, since)
    except warehouse.DuckDBBusyError as error:
        return dg.SkipReason(f"DuckDB busy, will retry next tick: {error}")
    round_id = str(last_round.storage_id)
    retrains = context.instance.get_runs(filters=dg.RunsFilter(job_name=retrain_job.name, tags={ROUND_TAG: round_id}), limit=1)
    # run_keys make each step happen once per round, however many ticks see the threshold passed.
    return round_step(new_labels, int(settings.get("FIC_RELABEL_MIN_LABELS")), round_id, retrains[0].status if retrains else None)
