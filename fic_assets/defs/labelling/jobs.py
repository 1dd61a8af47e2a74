import dagster as dg

human_labels_job = dg.define_asset_job(
    "human_labels_job",
    selection=dg.AssetSelection.assets("human_labels"),
    description="Pull annotations from Label Studio into DuckDB `labels`.",
)

labelling_round_job = dg.define_asset_job(
    "labelling_round_job",
    # The project first: cheap, idempotent, and a round then always runs on the current labelling config.
    selection=dg.AssetSelection.assets("label_studio_project", "label_tasks"),
    description="The next labelling round: new Label Studio tasks for images without a human label.",
)
