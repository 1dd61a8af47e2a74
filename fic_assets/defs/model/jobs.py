import dagster as dg

retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.assets("image_set", "model", "production_model"),
    description="Rebuild the image set from the human labels (DVC + S3), train, check quality, promote if it passes.",
)
