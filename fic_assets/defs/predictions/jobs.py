import dagster as dg

predict_job = dg.define_asset_job(
    "predict_job",
    selection=dg.AssetSelection.assets("brand_predictions"),
    description="Predict worn / not worn for the images of one brand partition, or of a range of them in one run.",
)

report_job = dg.define_asset_job(
    "report_job",
    selection=dg.AssetSelection.assets("brand_report"),
    description="Rebuild the static brand report (reports/index.html) and its plots from DuckDB.",
)
