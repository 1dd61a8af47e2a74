"""The predictions domain's asset: per-brand predictions of the production model."""

from pathlib import Path

import dagster as dg

from fic_assets.defs.model import artifact
from fic_assets.defs.shared import DUCKDB_POOL, brand_partition_keys, brand_partitions
from fic_assets.defs.dataset.cache import ImageCache
from fic_assets.defs.predictions.predict import predict_brands
from fic_assets.platform.warehouse import DuckDBResource


def production_model_dir() -> tuple[str, Path]:
    """(version, dir) of the production model, or a Failure that says how to get one."""
    try:
        pointer = artifact.require_production()
    except artifact.NoProductionModel as error:
        raise dg.Failure(description=str(error)) from error
    return pointer["version"], Path(pointer["path"])


@dg.asset(
    group_name="predictions",
    kinds={"onnx", "duckdb"},
    partitions_def=brand_partitions,
    deps=["image_urls", "production_model"],
    # A backfill over all brands is one run: one model load, one DuckDB writer at a time.
    backfill_policy=dg.BackfillPolicy.single_run(),
    # Stale when the brand's crawl (image_urls) or the production model updated after it; not while either is
    # missing or in progress (automation_sensor evaluates it). A promotion makes every crawled brand stale at once.
    automation_condition=dg.AutomationCondition.eager(),
    pool=DUCKDB_POOL,
    description=(
        "Worn / not worn for every image of the brand by the production model: DuckDB `predictions` (upsert) and "
        "`images.flag_model` (1 worn, 0 not worn, -1 unknown or error). Images already predicted by the same "
        "model version are skipped; failures are stored with their reason."
    ),
)
def brand_predictions(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    slugs = brand_partition_keys(context)
    version, model_dir = production_model_dir()
    try:
        run = predict_brands(duckdb.connect, slugs, model_dir, ImageCache.from_settings(), log=context.log.info)
    except artifact.ModelNotFoundError as error:
        raise dg.Failure(description=f"the production pointer names model {version}, but: {error}") from error
    per_brand = {slug: brand.as_metadata() for slug, brand in run.brands.items()}
    error_reasons: dict[str, int] = {}
    for brand in run.brands.values():
        for reason, count in brand.errors.items():
            error_reasons[reason] = error_reasons.get(reason, 0) + count
    context.log.info(f"{run.predicted} image(s) predicted ({run.errors} failed) at {run.images_per_second:.0f} images/s")
    return dg.MaterializeResult(
        metadata={
            "model_version": run.model_version,
            "brands": len(slugs),
            "images": sum(brand.images for brand in run.brands.values()),
            "predicted": run.predicted,
            "unchanged": sum(brand.unchanged for brand in run.brands.values()),
            "errors": run.errors,
            "error_reasons": dg.MetadataValue.json(error_reasons),
            "images_per_second": round(run.images_per_second, 1),
            "per_brand": dg.MetadataValue.json(per_brand),
        }
    )
