import dagster as dg

report_job = dg.define_asset_job(
    "report_job",
    selection=dg.AssetSelection.assets("brand_report"),
    description="Rebuild the static brand report (reports/index.html) and its plots from DuckDB.",
)
