import dagster as dg

from fic_assets.defs.shared import max_runtime

human_labels_job = dg.define_asset_job(
    "human_labels_job",
    selection=dg.AssetSelection.assets("human_labels"),
    description="Pull annotations from Label Studio into DuckDB `labels`.",
    # One filtered query and an upsert: minutes at most.
    tags=max_runtime(hours=1),
)

labelling_round_job = dg.define_asset_job(
    "labelling_round_job",
    # The project first: cheap, idempotent, and a round then always runs on the current labelling config.
    selection=dg.AssetSelection.assets("label_studio_project", "label_tasks"),
    description="The next labelling round: new Label Studio tasks for images without a human label.",
    # A round imports at most a few thousand tasks, pre-annotated by the production model.
    tags=max_runtime(hours=2),
)
