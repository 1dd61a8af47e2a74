"""The predictions domain: per-brand predictions of the production model, and the brand report people read."""

from pathlib import Path

import dagster as dg

from fic_assets import model_registry, settings
from fic_assets.defs.crawl.partitions import DUCKDB_POOL, brand_partitions
from fic_assets.defs.metadata import png_markdown
from fic_assets.imageset.cache import ImageCache
from fic_assets.ml.artifact import ModelNotFoundError
from fic_assets.predictions import predict_brands
from fic_assets.reports.brand_report import write_report
from fic_assets.resources import DuckDBResource


def production_model_dir() -> tuple[str, Path]:
    """(version, dir) of the production model, or a Failure that says how to get one."""
    try:
        pointer = model_registry.require_production()
    except model_registry.NoProductionModel as error:
        raise dg.Failure(description=str(error)) from error
    return pointer["version"], Path(pointer["path"])


@dg.asset(
    group_name="predictions",
    kinds={"onnx", "duckdb"},
    partitions_def=brand_partitions,
    deps=["image_urls", "production_model"],
    # A backfill over all brands is one run: one model load, one DuckDB writer at a time.
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
    description=(
        "Worn / not worn for every image of the brand by the production model: DuckDB `predictions` (upsert) and "
        "`images.flag_model` (1 worn, 0 not worn, -1 unknown or error). Images already predicted by the same "
        "model version are skipped; failures are stored with their reason."
    ),
)
def brand_predictions(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    version, model_dir = production_model_dir()
    slugs = list(context.partition_keys)
    try:
        run = predict_brands(duckdb.connect, slugs, model_dir, ImageCache.from_settings(), log=context.log.info)
    except ModelNotFoundError as error:
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


def reports_dir() -> Path:
    return Path(settings.get("FIC_REPORTS_DIR"))


@dg.asset(
    group_name="predictions",
    kinds={"html", "duckdb"},
    deps=["brand_predictions", "pieces"],
    description=(
        "Per brand: pieces, images, share worn, prices, colours and how often the shop's packshot flag agrees with "
        "the model. A static HTML report with PNG plots under reports/ (open reports/index.html in a browser)."
    ),
)
def brand_report(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    with duckdb.connect(read_only=True) as con:
        report = write_report(con, reports_dir())
    summary = report.summary
    top = summary.head(20)
    table = "| brand | pieces | images | worn share |\n|---|---:|---:|---:|\n" + "\n".join(
        f"| {str(row.name).replace('|', '/')} | {row.pieces} | {row.images} | "
        f"{'—' if row.predicted == 0 else f'{row.worn_share:.0%}'} |"
        for row in top.itertuples()
    )
    context.log.info(f"brand report for {report.brands} brand(s): {report.index_html}")
    return dg.MaterializeResult(
        metadata={
            "brands": report.brands,
            "report": dg.MetadataValue.path(str(report.index_html)),
            "open_in_browser": dg.MetadataValue.url(report.index_html.resolve().as_uri()),
            "top_brands": dg.MetadataValue.md(table),
            **{name: dg.MetadataValue.md(png_markdown(path, name.replace("_", " ").capitalize())) for name, path in report.plots.items()},
        }
    )
