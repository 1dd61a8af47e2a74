"""The reports domain's asset: the static per-brand HTML report people read and share."""

from pathlib import Path

import dagster as dg

from fic_assets.defs.reports.brand_report import top_brands_markdown, write_report
from fic_assets.defs.shared import png_markdown
from fic_assets.platform import settings
from fic_assets.platform.warehouse import DuckDBResource


# The report reads every brand: rebuild it when the pieces or predictions it shows changed, once they settled: no
# dependency updated since the previous tick or in progress. A crawl makes predictions stale in the same tick, and
# the predictions' run (partitioned) cannot share a run with the report, so the report waits a tick and then for
# that run: one report after a refresh, not one per brand. Unlike eager() it does not wait for every brand to have
# predictions: before the first model, or with a brand whose crawl failed, the report shows what there is.
REPORT_CONDITION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.newly_updated() | dg.AutomationCondition.in_progress()
    ).with_label("any_deps_updated_last_tick_or_in_progress")
    & ~dg.AutomationCondition.in_progress()
).with_label("inputs updated and settled")


def reports_dir() -> Path:
    return Path(settings.get("FIC_REPORTS_DIR"))


@dg.asset(
    group_name="predictions",
    kinds={"html", "duckdb"},
    deps=["brand_predictions", "pieces"],
    automation_condition=REPORT_CONDITION,
    description=(
        "Per brand: pieces, images, share worn, prices, colours and how often the shop's packshot flag agrees with "
        "the model. A static HTML report with PNG plots under reports/ (open reports/index.html in a browser)."
    ),
)
def brand_report(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    with duckdb.connect(read_only=True) as con:
        report = write_report(con, reports_dir())
    context.log.info(f"brand report for {report.brands} brand(s): {report.index_html}")
    return dg.MaterializeResult(
        metadata={
            "brands": report.brands,
            "report": dg.MetadataValue.path(str(report.index_html)),
            "open_in_browser": dg.MetadataValue.url(report.index_html.resolve().as_uri()),
            "top_brands": dg.MetadataValue.md(top_brands_markdown(report.summary)),
            **{name: dg.MetadataValue.md(png_markdown(path, name.replace("_", " ").capitalize())) for name, path in report.plots.items()},
        }
    )
