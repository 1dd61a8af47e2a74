import dagster as dg

from fic_assets.defs.predictions import assets, jobs, sensors

defs = dg.Definitions(
    assets=[assets.brand_predictions, assets.brand_report],
    jobs=[jobs.predict_job, jobs.report_job],
    sensors=[sensors.prediction_sensor],
)
