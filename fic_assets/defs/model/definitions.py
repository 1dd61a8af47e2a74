import dagster as dg

from fic_assets.defs.model import assets, jobs, sensors

defs = dg.Definitions(
    assets=[assets.image_set, assets.model, assets.production_model],
    asset_checks=[assets.model_quality],
    jobs=[jobs.retrain_job],
    sensors=[sensors.relabel_sensor],
)
