import dagster as dg

from fic_assets.defs.labelling import assets, jobs, sensors

defs = dg.Definitions(
    assets=[assets.label_studio_project, assets.label_tasks, assets.human_labels],
    jobs=[jobs.human_labels_job, jobs.labelling_round_job],
    sensors=[sensors.annotation_sensor],
)
