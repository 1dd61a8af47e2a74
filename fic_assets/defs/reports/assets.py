"""The reports domain's asset: the static per-brand HTML report people read and share."""

from pathlib import Path

import dagster as dg

from fic_assets.defs.analytics.snapshot import SnapshotNotFound, analytics_dir, open_snapshot
from fic_assets.defs.reports.brand_report import top_brands_markdown, write_report
from fic_assets.defs.shared import png_markdown
from fic_assets.platform import settings


def reports_dir() -> Path:
    return Path(settings.get("FIC_REPORTS_DIR"))


@dg.asset(
    group_name="predictions",
    kinds={"html", "parquet"},
    deps=["analytics_snapshot"],
    # Follows each new snapshot; requested in the same tick as the snapshot, so both run in one run.
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Per brand: pieces, images, worn share corrected for the model's error (with its interval), prices, colours "
        "and how often the shop's packshot flag agrees with the model, with a caveat on the model's quality. A static "
        "HTML report with PNG plots under reports/ (open reports/index.html), from the analytics snapshot."
    ),
)
def brand_report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    try:
        snapshot = open_snapshot(analytics_dir())
    except SnapshotNotFound as error:
        raise dg.Failure(description=str(error)) from None
    with snapshot:
        report = write_report(snapshot, reports_dir())
    context.log.info(f"brand report for {report.brands} brand(s) from snapshot {report.snapshot_version}: {report.index_html}")
    return dg.MaterializeResult(
        metadata={
            "brands": report.brands,
            "snapshot": report.snapshot_version,
            "report": dg.MetadataValue.path(str(report.index_html)),
            "open_in_browser": dg.MetadataValue.url(report.index_html.resolve().as_uri()),
            "top_brands": dg.MetadataValue.md(top_brands_markdown(report.summary)),
            **{name: dg.MetadataValue.md(png_markdown(path, name.replace("_", " ").capitalize())) for name, path in report.plots.items()},
        }
    )
