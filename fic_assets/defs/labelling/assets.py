"""Labelling assets: the Label Studio project, the tasks people label, and their labels back in DuckDB."""

import dagster as dg

from fic_assets.defs.model import artifact
from fic_assets.platform import warehouse
from fic_assets.defs.shared import DUCKDB_POOL
from fic_assets.defs.labelling import labels
from fic_assets.defs.labelling import tasks
from fic_assets.defs.labelling.client import LabelStudioResource, instructions, labeling_config
from fic_assets.defs.labelling.projects import ProjectRecord, SeenProject, register_project
from fic_assets.defs.model.scoring import score_sources
from fic_assets.platform.warehouse import DuckDBResource


def project_metadata(record: ProjectRecord) -> dict:
    metadata = record.metadata()
    metadata["left_projects"] = dg.MetadataValue.json(metadata["left_projects"])
    return metadata


def log_project_change(context: dg.AssetExecutionContext, record: ProjectRecord, seen: SeenProject) -> None:
    for message in record.messages(seen):
        context.log.warning(message)
    if record.claimed:
        context.log.info(f"project {seen.id} at {seen.url} matched the rows DuckDB recorded before label_projects existed (project_key {record.key})")


@dg.asset(
    group_name="labelling",
    kinds={"labelstudio", "duckdb"},
    pool=DUCKDB_POOL,
    description="The Label Studio project (labelling config and instructions), created or updated by title, and recorded in DuckDB `label_projects`: a new or re-created project starts a new project_key and leaves the labels of the old one untouched.",
)
def label_studio_project(context: dg.AssetExecutionContext, label_studio: LabelStudioResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
    with label_studio.session() as ls:
        state = ls.ensure_project(labeling_config(), instructions())
        seen = ls.seen(state)
        on_server = ls.server_projects()
    with duckdb.connect() as con:
        record = register_project(con, seen, lambda: on_server)
    log_project_change(context, record, seen)
    return dg.MaterializeResult(
        metadata={
            "project_id": state.id,
            "created": state.created,
            "updated": state.updated,
            "title": label_studio.project_title,
            **project_metadata(record),
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
        seen = ls.project()
        project_id = seen.id
        production = artifact.production()
        pool = config.tasks_per_round * (tasks.MODEL_POOL_FACTOR if production else 1)
        ls_tasks = ls.project_tasks(project_id)
        with duckdb.connect() as con:
            record = register_project(con, seen, ls.server_projects)
            reconciled = tasks.reconcile_tasks(con, record.key, project_id, ls_tasks)
            candidates = tasks.candidate_images(con, pool)
        if production:
            # The production model pre-annotates, and the round keeps what it is least sure about.
            scored = score_sources(candidates["image_url"].tolist(), production["path"])
            candidates = tasks.add_model_pre_annotations(candidates, scored.scores, production["version"], config.tasks_per_round)
            context.log.info(f"model {production['version']} scored {len(scored.scores)} of {pool} candidates; {len(scored.errors)} unreadable")
        else:
            candidates = tasks.add_pre_annotations(candidates)
        rows = candidates.to_dict("records")
        for batch in batches(rows, config.batch_size):
            task_ids = ls.import_tasks(project_id, [tasks.build_task(row) for row in batch])
            with duckdb.connect() as con:
                tasks.record_tasks(con, record.key, project_id, batch, task_ids)
        open_tasks = ls.open_tasks(project_id)
    log_project_change(context, record, seen)
    if reconciled.adopted:
        context.log.warning(f"{reconciled.adopted} task(s) existed in Label Studio but not in DuckDB; recorded, not imported again")
    if reconciled.retired:
        shown = ", ".join(reconciled.retired_images[:5]) + (" ..." if len(reconciled.retired_images) > 5 else "")
        context.log.warning(
            f"{reconciled.retired} task(s) were deleted in Label Studio: retired in DuckDB, their images can be offered again ({shown})"
        )
    return dg.MaterializeResult(
        metadata={
            "tasks_created": len(rows),
            "tasks_adopted": reconciled.adopted,
            "tasks_deleted_in_label_studio": reconciled.retired,
            "tasks_revived": reconciled.revived,
            **project_metadata(record),
            "brands_in_round": int(candidates["brand_slug"].nunique()) if len(candidates) else 0,
            "open_tasks": open_tasks,
            "pre_annotation": production["version"] if production else tasks.PACKSHOT_FLAG_VERSION,
        }
    )


@dg.asset(
    group_name="labelling",
    kinds={"labelstudio", "duckdb"},
    deps=["label_tasks"],
    pool=DUCKDB_POOL,
    description="Human labels from Label Studio: DuckDB `annotations` (raw, per project) and `labels` (one per image, resolved from the annotations of every project; edits replace, a person's deletion removes, a new project keeps the old labels).",
)
def human_labels(context: dg.AssetExecutionContext, label_studio: LabelStudioResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
    with label_studio.session() as ls:
        seen = ls.project()
        on_server = ls.server_projects()
        rows = labels.annotation_rows(ls.annotated_tasks(seen.id), seen.id, ls.annotator_names())
    annotations = labels.annotations_frame(rows)
    with duckdb.connect() as con, warehouse.transaction(con):
        # All or nothing: the project record, its annotations and the labels resolved from them.
        record = register_project(con, seen, lambda: on_server)
        changes, resolved = labels.sync_project(con, record.key, annotations)
        other_projects = con.execute("SELECT count(*) FROM labels WHERE project_key IS DISTINCT FROM ?", [record.key]).fetchall()[0][0]
    log_project_change(context, record, seen)
    if changes["removed"]:
        context.log.warning(f"{changes['removed']} label(s) removed: their annotations were deleted in Label Studio project {seen.id}")
    problems = annotations["problem"].dropna().value_counts().to_dict()
    return dg.MaterializeResult(
        metadata={
            **changes,
            **project_metadata(record),
            "labels_from_other_projects": int(other_projects),
            "annotations": len(annotations),
            "by_label": dg.MetadataValue.json({str(k): int(v) for k, v in resolved["label"].value_counts().items()}),
            "trainable": int(resolved["label"].isin(["worn", "not_worn"]).sum()),
            "disputed": int((resolved["agreement"] < 1).sum()),
            "unusable_annotations": dg.MetadataValue.json({str(k): int(v) for k, v in problems.items()}),
        }
    )
