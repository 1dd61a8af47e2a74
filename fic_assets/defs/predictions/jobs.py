import dagster as dg

from fic_assets.defs.shared import max_runtime

predict_job = dg.define_asset_job(
    "predict_job",
    selection=dg.AssetSelection.assets("brand_predictions"),
    description="Predict worn / not worn for the images of one brand partition, or of a range of them in one run.",
    # After a promotion one run scores every image of every brand, paced per image host (4 in
    # flight, 0.1 s apart): hours for the real shop's catalogue. A day ends a run no deadline stopped.
    tags=max_runtime(hours=24),
)
