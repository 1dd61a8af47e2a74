import dagster as dg

from fic_assets.defs.shared import max_runtime

report_job = dg.define_asset_job(
    "report_job",
    selection=dg.AssetSelection.assets("analytics_snapshot", "brand_report"),
    description="Write a new analytics snapshot from DuckDB, then rebuild the static brand report (reports/index.html) from it.",
    # Copies DuckDB to Parquet and draws three plots: minutes.
    tags=max_runtime(hours=1),
)
