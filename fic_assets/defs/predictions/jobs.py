import dagster as dg

predict_job = dg.define_asset_job(
    "predict_job",
    selection=dg.AssetSelection.assets("brand_predictions"),
    description="Predict worn / not worn for the images of one brand partition, or of a range of them in one run.",
)
