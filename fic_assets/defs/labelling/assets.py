"""Labelling assets: the Label Studio project, the tasks people label, and their labels back in DuckDB."""

import dagster as dg

from fic_assets import model_registry, storage
from fic_assets.defs.crawl.partitions import DUCKDB_POOL
from fic_assets.labelling import labels as label_sync
from fic_assets.labelling import tasks as task_choice
from fic_assets.labelling.client import LabelStudioResource, instructions, labeling_config
from fic_assets.ml.scoring import score_sources
from fic_assets.resources import DuckDBResource


@dg.asset(group_name="labelling", kinds={"labelstudio"}, description="The Label Studio project (labelling config and instructions), created or updated by title.")
def label_studio_project(label_studio: LabelStudioResource) -> dg.MaterializeResult:
    with label_studio.session() as ls:
        state = ls.ensure_project(labeling_config(), instructions())
    return dg.MaterializeResult(
        metadata={
            "project_id": state.id,
            "created": state.created,
            "updated": state.updated,
            "title": label_studio.project_title,
            "open_in_label_studio": dg.MetadataValue.url(f"{label_studio.url.rstrip('/')}/projects/{state.id}/data"),
        }
    )


class LabelTasksConfig(dg.Config):
    tasks_per_round: int = 200  # new tasks per labelling round
    batch_size: int = 100  # tasks per import request; DuckDB records each batch as soon as it exists


def batches(rows: list[dict], size: int) -> list[list[dict]]:
    return [rows[start : start + size] for start in range(0, len(rows), size)]


@dg.asset(
    group_name="labelling",
    kinds={"labelstudio", "duckdb"},
    deps=["label_studio_project", "image_urls"],
    pool=DUCKDB_POOL,
    description="A labelling round: images without a human label become Label Studio tasks (stratified over brands, with a pre-annotation). DuckDB `label_tasks`.",
)
def label_tasks(context: dg.AssetExecutionContext, config: LabelTasksConfig, label_studio: LabelStudioResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
    with label_studio.session() as ls:
        project_id = ls.project_id()
        production = model_registry.production()
        pool = config.tasks_per_round * (task_choice.MODEL_POOL_FACTOR if production else 1)
        with duckdb.connect() as con:
            adopted = task_choice.adopt_existing_tasks(con, project_id, ls.task_images(project_id))
            candidates = task_choice.candidate_images(con, pool)
        if production:
            # The production model pre-annotates, and the round keeps what it is least sure about.
            scored = score_sources(candidates["image_url"].tolist(), production["path"])
            candidates = task_choice.add_model_pre_annotations(candidates, scored.scores, production["version"], config.tasks_per_round)
            context.log.info(f"model {production['version']} scored {len(scored.scores)} of {pool} candidates; {len(scored.errors)} unreadable")
        else:
            candidates = task_choice.add_pre_annotations(candidates)
        rows = candidates.to_dict("records")
        for batch in batches(rows, config.batch_size):
            task_ids = ls.import_tasks(project_id, [task_choice.build_task(row) for row in batch])
            with duckdb.connect() as con:
                task_choice.record_tasks(con, project_id, batch, task_ids)
        open_tasks = ls.open_tasks(project_id)
    if adopted:
        context.log.warning(f"{adopted} task(s) existed in Label Studio but not in DuckDB; recorded, not imported again")
    return dg.MaterializeResult(
        metadata={
            "tasks_created": len(rows),
            "tasks_adopted": adopted,
            "brands_in_round": int(candidates["brand_slug"].nunique()) if len(candidates) else 0,
            "open_tasks": open_tasks,
            "pre_annotation": production["version"] if production else task_choice.PACKSHOT_FLAG_VERSION,
        }
    )


@dg.asset(
    group_name="labelling",
    kinds={"labelstudio", "duckdb"},
    deps=["label_tasks"],
    pool=DUCKDB_POOL,
    description="Human labels from Label Studio: DuckDB `annotations` (raw) and `labels` (one per image; edits replace, deletes remove).",
)
def human_labels(label_studio: LabelStudioResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
    with label_studio.session() as ls:
        project_id = ls.project_id()
        rows = label_sync.annotation_rows(ls.annotated_tasks(project_id), project_id, ls.annotator_names())
    annotations = label_sync.annotations_frame(rows)
    resolved = label_sync.resolve_labels(annotations)
    with duckdb.connect() as con, storage.transaction(con):
        label_sync.replace_project_annotations(con, project_id, annotations)
        changes = label_sync.write_labels(con, resolved)
    problems = annotations["problem"].dropna().value_counts().to_dict()
    return dg.MaterializeResult(
        metadata={
            **changes,
            "annotations": len(annotations),
            "by_label": dg.MetadataValue.json({str(k): int(v) for k, v in resolved["label"].value_counts().items()}),
            "trainable": int(resolved["label"].isin(["worn", "not_worn"]).sum()),
            "disputed": int((resolved["agreement"] < 1).sum()),
            "unusable_annotations": dg.MetadataValue.json({str(k): int(v) for k, v in problems.items()}),
        }
    )
