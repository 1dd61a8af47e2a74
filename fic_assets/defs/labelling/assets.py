"""Labelling assets: the Label Studio project, the tasks people label, and their labels back in DuckDB."""

import dagster as dg

from fic_assets.defs.model import artifact
from fic_assets.platform import warehouse
from fic_assets.defs.shared import DUCKDB_POOL
from fic_assets.defs.labelling import labels
from fic_assets.defs.labelling.client import PULLED_STATE, LabelStudioResource, instructions, labeling_config
from fic_assets.defs.labelling.projects import ProjectRecord, SeenProject, register_project
from fic_assets.defs.labelling.rounds import run_round
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
    description="The Label Studio project (labelling config and instructions, uncertainty sampling, and a first Data Manager tab 'Most uncertain first' ordered by the model's score), created or updated by title, and recorded in DuckDB `label_projects`: a new or re-created project starts a new project_key and leaves the labels of the old one untouched.",
)
def label_studio_project(context: dg.AssetExecutionContext, label_studio: LabelStudioResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
    with label_studio.session() as ls:
        state = ls.ensure_project(labeling_config(), instructions())
        view_id = ls.ensure_uncertain_view(state.id)
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
            "open_in_label_studio": dg.MetadataValue.url(f"{label_studio.url.rstrip('/')}/projects/{state.id}/data?tab={view_id}"),
        }
    )


class LabelTasksConfig(dg.Config):
    tasks_per_round: int = 200  # new tasks per labelling round
    batch_size: int = 100  # tasks per import request; DuckDB records each batch as soon as it exists


@dg.asset(
    group_name="labelling",
    kinds={"labelstudio", "duckdb"},
    deps=["label_studio_project", "image_urls"],
    pool=DUCKDB_POOL,
    description="A labelling round: images without a human label become Label Studio tasks (stratified over brands, with a pre-annotation); with a production model, open tasks of earlier rounds get its prediction too and the project's pre-labelling uses its version. DuckDB `label_tasks`.",
)
def label_tasks(context: dg.AssetExecutionContext, config: LabelTasksConfig, label_studio: LabelStudioResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
    with label_studio.session() as ls:
        labelling_round = run_round(duckdb.connect, ls, artifact.production(), config.tasks_per_round, config.batch_size, log=context.log.info)
    log_project_change(context, labelling_round.record, labelling_round.seen)
    for message in labelling_round.warnings():
        context.log.warning(message)
    return dg.MaterializeResult(
        metadata={
            "tasks_created": labelling_round.created,
            "tasks_adopted": labelling_round.reconciled.adopted,
            "tasks_deleted_in_label_studio": labelling_round.reconciled.retired,
            "tasks_revived": labelling_round.reconciled.revived,
            **project_metadata(labelling_round.record),
            "brands_in_round": labelling_round.brands,
            "open_tasks": labelling_round.open_tasks,
            "pre_annotation": labelling_round.pre_annotation,
            "open_tasks_rehinted": labelling_round.rehinted,
            "project_model_version": labelling_round.project_model_version or "",
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
        # Before the export: a change made while it runs is newer than this, so annotation_sensor asks again.
        pulled_state = ls.annotation_state(seen)
        rows = labels.annotation_rows(ls.annotated_tasks(seen.id), seen.id, ls.annotator_names())
    annotations = labels.annotations_frame(rows)
    with duckdb.connect() as con, warehouse.transaction(con):
        # All or nothing: the project record, its annotations and the labels resolved from them.
        record = register_project(con, seen, lambda: on_server)
        changes, resolved = labels.sync_project(con, record.key, annotations)
        other_projects = labels.labels_of_other_projects(con, record.key)
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
            "by_annotator": dg.MetadataValue.json({str(k): int(v) for k, v in resolved["annotator"].value_counts().items()}),
            "annotated_tasks": pulled_state.annotated_tasks,
            PULLED_STATE: dg.MetadataValue.json(pulled_state.as_json()),  # where annotation_sensor starts from
        }
    )
