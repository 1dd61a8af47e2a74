import dagster as dg

from fic_assets.defs.shared import max_runtime

report_job = dg.define_asset_job(
    "report_job",
    selection=dg.AssetSelection.assets("brand_report"),
    description="Rebuild the static brand report (reports/index.html) and its plots from DuckDB.",
    # Reads DuckDB and draws three plots: minutes.
    tags=max_runtime(hours=1),
)
