"""The labelling round: which images become Label Studio tasks next, with which hint, imported and recorded.

One round (`run_round`, what the `label_tasks` asset runs):
1. DuckDB's tasks of the project are made Label Studio's (tasks.reconcile_tasks): tasks DuckDB does not know are
   adopted, tasks deleted there are retired so their images can be offered again;
2. candidates are drawn stratified over brands (tasks.candidate_images): images with neither a label nor a live
   task. Without a model, `tasks_per_round` of them get the shop's packshot flag as a weak hint; with a
   production model, a pool MODEL_POOL_FACTOR times larger is scored and the round keeps what the model is least
   sure about, its score as the hint (`pre_annotate`);
3. the tasks are imported in batches, each batch recorded in DuckDB right after Label Studio created it, so a
   run that dies half-way is adopted by the next one, never imported twice.

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
    rows = candidates.to_dict("records")
    for batch in batches(rows, batch_size):
        task_ids = ls.import_tasks(project_id, [tasks.build_task(row) for row in batch])
        with connect() as con:
            tasks.record_tasks(con, record.key, project_id, batch, task_ids)
    return LabellingRound(
        seen=seen,
        record=record,
        reconciled=reconciled,
        created=len(rows),
        brands=int(candidates["brand_slug"].nunique()) if len(candidates) else 0,
        open_tasks=ls.open_tasks(project_id),
        pre_annotation=production["version"] if production else tasks.PACKSHOT_FLAG_VERSION,
    )
