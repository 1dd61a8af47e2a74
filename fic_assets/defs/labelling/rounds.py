"""The labelling round: which images become Label Studio tasks next, with which hint, imported and recorded.

One round (`run_round`, what the `label_tasks` asset runs):
1. DuckDB's tasks of the project are made Label Studio's (tasks.reconcile_tasks): tasks DuckDB does not know are
   adopted, tasks deleted there are retired so their images can be offered again;
2. candidates are drawn stratified over brands (tasks.candidate_images): images with neither a label nor a live
   task. Without a model, `tasks_per_round` of them get the shop's packshot flag as a weak hint; with a
   production model, a pool MODEL_POOL_FACTOR times larger is scored and the round keeps what the model is least
   sure about, its score as the hint (`pre_annotate`);
3. the tasks are imported in batches, each batch recorded in DuckDB right after Label Studio created it, so a
   run that dies half-way is adopted by the next one, never imported twice;
4. with a production model, the open tasks of earlier rounds (nobody answered them yet) whose hint is by another
   model or the packshot flag get the production model's prediction too (`rehint_open_tasks`, before the
   import, so a failed import leaves them up to date), and after the import the project's
   pre-labelling ("Use predictions from", Label Studio's `model_version`) points at the version that gave the
   hints: a person sees its choice pre-selected and its score, and "Label All Tasks" serves the least sure first.

DuckDB is opened briefly (reconcile and draw, then one write per batch), never while images are scored or
Label Studio is called, so readers and other writers are not locked out for the length of a round.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import duckdb
import pandas as pd

from fic_assets.defs.labelling import tasks
from fic_assets.defs.labelling.client import LabelStudioSession
from fic_assets.defs.labelling.projects import ProjectRecord, SeenProject, register_project
from fic_assets.defs.model.scoring import score_sources


@dataclass(frozen=True)
class LabellingRound:
    seen: SeenProject  # the Label Studio project the round went to
    record: ProjectRecord  # its DuckDB record (project_key, projects left)
    reconciled: tasks.TaskReconciliation
    created: int  # tasks imported this round
    brands: int  # brands among them
    open_tasks: int  # tasks of the project without an annotation, after the import
    pre_annotation: str  # the model version that gave the hints, or tasks.PACKSHOT_FLAG_VERSION
    rehinted: int = 0  # open tasks of earlier rounds that got the production model's prediction
    project_model_version: str | None = None  # what the project's pre-labelling uses after the round

    def warnings(self) -> list[str]:
        """What a person should know about tasks Label Studio and DuckDB disagreed on."""
        reconciled = self.reconciled
        messages = []
        if reconciled.adopted:
            messages.append(f"{reconciled.adopted} task(s) existed in Label Studio but not in DuckDB; recorded, not imported again")
        if reconciled.retired:
            shown = ", ".join(reconciled.retired_images[:5]) + (" ..." if len(reconciled.retired_images) > 5 else "")
            messages.append(
                f"{reconciled.retired} task(s) were deleted in Label Studio: retired in DuckDB, their images can be offered again ({shown})"
            )
        return messages


def batches(rows: list[dict], size: int) -> list[list[dict]]:
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def candidate_pool(tasks_per_round: int, production: dict | None) -> int:
    """How many candidates a round draws: a model ranks a larger pool, the packshot flag cannot rank."""
    return tasks_per_round * (tasks.MODEL_POOL_FACTOR if production else 1)


def pre_annotate(candidates: pd.DataFrame, production: dict | None, tasks_per_round: int,
                 log: Callable[[str], None] = lambda message: None) -> pd.DataFrame:
    """The candidates a round keeps, each with its hint (pre_label, pre_score, pre_model_version).

    production: the production pointer ({"version", "path"}, fic_assets.defs.model.artifact.production()) or None.
    """
    if not production:
        return tasks.add_pre_annotations(candidates)
    # The production model pre-annotates, and the round keeps what it is least sure about.
    scored = score_sources(candidates["image_url"].tolist(), production["path"])
    log(f"model {production['version']} scored {len(scored.scores)} of {candidate_pool(tasks_per_round, production)} candidates; "
        f"{len(scored.errors)} unreadable")
    return tasks.add_model_pre_annotations(candidates, scored.scores, production["version"], tasks_per_round)


def rehint_open_tasks(
    connect: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]],
    ls: LabelStudioSession,
    project_key: int,
    project_id: int,
    production: dict,
    log: Callable[[str], None] = lambda message: None,
) -> int:
    """Give the open tasks whose hint is not by the production model its prediction; returns how many got one.

    The predictions are added in bulk (tasks keep their updated_at, so annotation_sensor sees no change) and
    label_tasks records the new hint. Images the model cannot read keep their old hint."""
    open_tasks = ls.open_tasks_by_id(project_id)
    with connect() as con:
        stale = tasks.tasks_without_hint_of(con, project_key, production["version"], list(open_tasks))
    if stale.empty:
        return 0
    scored = score_sources(stale["image_url"].tolist(), production["path"])
    hinted = tasks.add_task_hints(stale, scored.scores, production["version"])
    predictions = [{**tasks.build_prediction(row), "task": int(row["task_id"])} for row in hinted.to_dict("records")]
    ls.import_predictions(project_id, predictions)
    with connect() as con:
        tasks.record_hints(con, project_key, hinted)
    log(f"model {production['version']} re-hinted {len(hinted)} of {len(stale)} open task(s) of earlier rounds; "
        f"{len(stale) - len(hinted)} unreadable kept their hint")
    return len(hinted)


def run_round(
    connect: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]],
    ls: LabelStudioSession,
    production: dict | None,
    tasks_per_round: int = 200,
    batch_size: int = 100,
    log: Callable[[str], None] = lambda message: None,
) -> LabellingRound:
    """One labelling round on the session's project; connect() opens a DuckDB write connection (a context manager)."""
    seen = ls.project()
    project_id = seen.id
    ls_tasks = ls.project_tasks(project_id)
    with connect() as con:
        record = register_project(con, seen, ls.server_projects)
        reconciled = tasks.reconcile_tasks(con, record.key, project_id, ls_tasks)
        candidates = tasks.candidate_images(con, candidate_pool(tasks_per_round, production))
    candidates = pre_annotate(candidates, production, tasks_per_round, log)
    rehinted = rehint_open_tasks(connect, ls, record.key, project_id, production, log) if production else 0
    rows = candidates.to_dict("records")
    for batch in batches(rows, batch_size):
        task_ids = ls.import_tasks(project_id, [tasks.build_task(row) for row in batch])
        with connect() as con:
            tasks.record_tasks(con, record.key, project_id, batch, task_ids)
    version = production["version"] if production else tasks.PACKSHOT_FLAG_VERSION
    with connect() as con:
        hinted_by_version = tasks.has_hints_of(con, record.key, version)
    if hinted_by_version:
        ls.set_model_version(project_id, version)
    return LabellingRound(
        seen=seen,
        record=record,
        reconciled=reconciled,
        created=len(rows),
        brands=int(candidates["brand_slug"].nunique()) if len(candidates) else 0,
        open_tasks=ls.open_tasks(project_id),
        pre_annotation=version,
        rehinted=rehinted,
        project_model_version=ls.model_version(project_id),
    )
