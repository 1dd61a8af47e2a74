"""prediction_sensor: keep brand predictions fresh (new production model, new crawl), then refresh the report.

Staleness comes from Dagster's own event log, not from DuckDB: a brand's predictions are stale when its
latest `image_urls` materialization or the latest `production_model` materialization is newer (a higher
storage id) than its latest `brand_predictions` materialization. Ticks are cheap and never wait for DuckDB's lock.
"""

import hashlib
from collections.abc import Mapping, Sequence

import dagster as dg

from fic_assets.platform import settings
from fic_assets.defs.shared import brand_partitions, partition_range_request
from fic_assets.defs.predictions.jobs import predict_job
from fic_assets.defs.reports.jobs import report_job

IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def stale_brands(partitions: Sequence[str], crawled: Mapping[str, int], predicted: Mapping[str, int], model_id: int) -> list[str]:
    """Brands (in partition order) whose predictions are older than their crawl or than the production model.

    A brand never crawled has no images to predict and is left out.
    """
    return [slug for slug in partitions if slug in crawled and predicted.get(slug, -1) < max(crawled[slug], model_id)]


def consecutive_runs(partitions: Sequence[str], chosen: Sequence[str]) -> list[list[str]]:
    """The chosen partitions grouped into runs of neighbours in partition order (one range per group).

    After a new model every crawled brand is stale: one range, one run. After a crawl of two brands far apart:
    two small runs, and the brands between them are not touched.
    """
    wanted = set(chosen)
    groups: list[list[str]] = []
    current: list[str] = []
    for slug in partitions:
        if slug in wanted:
            current.append(slug)
        elif current:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def run_key(kind: str, parts: Sequence[object]) -> str:
    """The same stale state always gives the same key, so repeated ticks never launch the same work twice."""
    return f"{kind}:" + hashlib.sha256("|".join(map(str, parts)).encode("utf-8")).hexdigest()[:20]


def prediction_requests(partitions: Sequence[str], crawled: Mapping[str, int], predicted: Mapping[str, int], model_id: int) -> list[dg.RunRequest]:
    requests = []
    for group in consecutive_runs(partitions, stale_brands(partitions, crawled, predicted, model_id)):
        key = run_key("predict", [model_id, *(f"{slug}={crawled[slug]}" for slug in group)])
        requests.append(partition_range_request(group, run_key=key, job_name=predict_job.name,
                                                tags={"fic/trigger": "stale_predictions", "fic/brands": str(len(group))}))
    return requests


def latest_storage_id(instance: dg.DagsterInstance, key: str) -> int | None:
    records = instance.fetch_materializations(dg.AssetKey(key), limit=1).records
    return records[0].storage_id if records else None


def latest_by_partition(instance: dg.DagsterInstance, key: str) -> Mapping[str, int]:
    return instance.get_latest_storage_id_by_partition(dg.AssetKey(key), dg.DagsterEventType.ASSET_MATERIALIZATION)


@dg.sensor(
    jobs=[predict_job, report_job],
    minimum_interval_seconds=settings.sensor_interval(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Re-predicts the brands whose predictions are older than the production model or their latest crawl (one run "
        "per range of neighbouring brands), then rebuilds the brand report once predictions or pieces changed."
    ),
)
def prediction_sensor(context: dg.SensorEvaluationContext):
    instance = context.instance
    running = instance.get_runs(filters=dg.RunsFilter(job_name=predict_job.name, statuses=IN_PROGRESS), limit=1)
    if running:
        return dg.SkipReason(f"predict run {running[0].run_id} is in progress")
    model_id = latest_storage_id(instance, "production_model")
    partitions = instance.get_dynamic_partitions(brand_partitions.name)
    if model_id is not None:
        requests = prediction_requests(partitions, latest_by_partition(instance, "image_urls"),
                                       latest_by_partition(instance, "brand_predictions"), model_id)
        if requests:
            context.log.info(f"{len(requests)} predict run(s) for stale brands")
            return requests
    # Nothing to predict: rebuild the report when what it shows (predictions, pieces) is newer than it.
    newest_input = max((i for i in (latest_storage_id(instance, "brand_predictions"), latest_storage_id(instance, "pieces")) if i is not None), default=None)
    if newest_input is None:
        return dg.SkipReason("nothing crawled or predicted yet" if model_id is not None else "no production model yet, nothing crawled")
    report_id = latest_storage_id(instance, "brand_report")
    if report_id is not None and report_id > newest_input:
        return dg.SkipReason("predictions and report are up to date")
    return dg.RunRequest(run_key=run_key("report", [newest_input]), job_name=report_job.name, tags={"fic/trigger": "stale_report"})
