import dagster as dg

from fic_assets.defs.shared import max_runtime

retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.assets("image_set", "model", "production_model"),
    description="Rebuild the image set from the human labels (DVC + S3), train, check quality, promote if it passes.",
    # Downloads every labelled image, extracts features and cross-validates on 2 cores: minutes for
    # hundreds of labels, an hour or more for tens of thousands.
    tags=max_runtime(hours=6),
)
