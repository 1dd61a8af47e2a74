"""Which images go to annotators next, and the Label Studio tasks built for them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pandas as pd

from fic_assets.platform import warehouse
from fic_assets.defs.labelling.client import choice_result
from fic_assets.defs.labelling.projects import retire_tasks

# Before a model exists the shop's own packshot flag is the only hint: shown as a weak pre-annotation so the
# annotator confirms or flips it. Weak on purpose: flat lays and details are not flagged, and are not worn.
PACKSHOT_FLAG_VERSION = "packshot-flag"
PACKSHOT_SCORE = 0.7
NOT_FLAGGED_SCORE = 0.5


def candidate_images(con: duckdb.DuckDBPyConnection, limit: int) -> pd.DataFrame:
    """Images with neither a human label nor a live task, stratified over brands.

    A retired task (deleted in Label Studio, or of a project that is no longer current) does not hold its image
    back: the image is offered again unless it has a label.

    Round-robin over brands (each brand's images in a fixed pseudo-random order), so a round of N tasks covers
    every brand instead of the first brand's catalogue.
    """
    return con.execute(
        """
        WITH candidates AS (
            SELECT i.image_url, i.item_id, i.is_packshot, i.position, p.brand_slug, b.name AS brand,
                   row_number() OVER (PARTITION BY p.brand_slug ORDER BY md5(i.image_url)) AS rank_in_brand
            FROM images i
            JOIN pieces p USING (item_id)
            LEFT JOIN brands b ON b.slug = p.brand_slug
            WHERE i.image_url NOT IN (SELECT image_url FROM label_tasks WHERE retired_at IS NULL)
              AND i.image_url NOT IN (SELECT image_url FROM labels)
        )
        SELECT image_url, item_id, is_packshot, position, brand_slug, coalesce(brand, brand_slug) AS brand
        FROM candidates
        ORDER BY rank_in_brand, md5(brand_slug)
        LIMIT ?
        """,
        [limit],
    ).df()


def add_pre_annotations(candidates: pd.DataFrame) -> pd.DataFrame:
    """The hint each task shows the annotator (columns pre_label, pre_score, pre_model_version)."""
    frame = candidates.copy()
    flagged = frame["is_packshot"].astype(bool)
    frame["pre_label"] = flagged.map({True: "not_worn", False: "worn"})
    frame["pre_score"] = flagged.map({True: PACKSHOT_SCORE, False: NOT_FLAGGED_SCORE}).astype("float64")
    frame["pre_model_version"] = PACKSHOT_FLAG_VERSION
    return frame


# With a model, a round draws from a larger stratified pool and keeps the images the model is least sure about.
MODEL_POOL_FACTOR = 5


def interleave_brands(frame: pd.DataFrame, order_by: str) -> pd.DataFrame:
    """Round-robin over brands, each brand's rows in `order_by` order: stratified whatever the ranking."""
    ranked = frame.assign(_rank=frame.groupby("brand_slug")[order_by].rank(method="first"))
    return ranked.sort_values(["_rank", "brand_slug"]).drop(columns="_rank")


def model_hints(worn: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(pre_label, pre_score) for P(worn) scores: the likelier label and the model's confidence in it, so the lowest
    score is the least sure (Label Studio's uncertainty order)."""
    return worn.ge(0.5).map({True: "worn", False: "not_worn"}), worn.where(worn >= 0.5, 1 - worn)


def add_model_pre_annotations(candidates: pd.DataFrame, scores: dict[str, float], model_version: str, limit: int) -> pd.DataFrame:
    """Pre-annotate with the production model and keep the `limit` most uncertain images, brands interleaved.

    scores: image URL -> P(worn) for the images the model could read; the others (broken downloads) keep the
    packshot-flag hint and come last, where an annotator marks them unusable.
    """
    frame = add_pre_annotations(candidates)
    scored = frame["image_url"].isin(scores.keys())
    worn = frame.loc[scored, "image_url"].map(scores).astype("float64")
    frame.loc[scored, "pre_label"], frame.loc[scored, "pre_score"] = model_hints(worn)
    frame.loc[scored, "pre_model_version"] = model_version
    frame["uncertainty"] = (worn - 0.5).abs().reindex(frame.index).fillna(1.0)
    chosen = pd.concat([interleave_brands(frame[scored], "uncertainty"), frame[~scored]])
    return chosen.drop(columns="uncertainty").head(limit)


def build_prediction(row: dict) -> dict:
    """The pre-annotation of a row (pre_label, pre_score, pre_model_version) as a Label Studio prediction."""
    return {"model_version": row["pre_model_version"], "score": float(row["pre_score"]), "result": choice_result(row["pre_label"])}


def build_task(row: dict) -> dict:
    """A Label Studio task: the image plus what a person needs to judge it, and the pre-annotation."""
    return {
        "data": {
            "image": row["image_url"],
            "item_id": row["item_id"],
            "brand": row["brand"],
            "brand_slug": row["brand_slug"],
            "is_packshot": bool(row["is_packshot"]),
        },
        "predictions": [build_prediction(row)],
    }


def tasks_without_hint_of(con: duckdb.DuckDBPyConnection, project_key: int, model_version: str, task_ids: Sequence[int]) -> pd.DataFrame:
    """The live tasks among task_ids whose hint is not by model_version (columns task_id, image_url)."""
    return con.execute(
        """SELECT task_id, image_url FROM label_tasks
           WHERE project_key = ? AND retired_at IS NULL AND list_contains(?, task_id)
             AND pre_model_version IS DISTINCT FROM ?
           ORDER BY task_id""",
        [project_key, [int(task_id) for task_id in task_ids], model_version],
    ).df()


def add_task_hints(stale: pd.DataFrame, scores: dict[str, float], model_version: str) -> pd.DataFrame:
    """The model's hint for each task of `stale` whose image it could read (the others keep theirs)."""
    frame = stale[stale["image_url"].isin(scores.keys())].copy()
    frame["pre_label"], frame["pre_score"] = model_hints(frame["image_url"].map(scores).astype("float64"))
    frame["pre_model_version"] = model_version
    return frame


def record_hints(con: duckdb.DuckDBPyConnection, project_key: int, hinted: pd.DataFrame) -> None:
    """The hint a task shows now (label_tasks.pre_*), after the model's prediction was added to it."""
    frame = hinted[["task_id", "image_url", "pre_label", "pre_score", "pre_model_version"]].assign(project_key=project_key)
    frame["pre_score"] = frame["pre_score"].astype("float64")
    frame["created_at"] = warehouse.utcnow()  # kept: only a row that was never recorded takes it
    warehouse.upsert(con, "label_tasks", frame, key=["project_key", "task_id"], keep=["created_at"])


def has_hints_of(con: duckdb.DuckDBPyConnection, project_key: int, model_version: str) -> bool:
    """Does some task of the project carry a prediction by model_version (the only versions Label Studio lets
    the project's pre-labelling point at)?"""
    return bool(con.execute(
        "SELECT count(*) FROM label_tasks WHERE project_key = ? AND pre_model_version = ?", [project_key, model_version]
    ).fetchall()[0][0])


def record_tasks(con: duckdb.DuckDBPyConnection, project_key: int, project_id: int, rows: Sequence[dict], task_ids: Sequence[int]) -> None:
    """Remember which task holds which image, right after Label Studio created it (so a re-run skips it)."""
    upsert_task_rows(
        con,
        [{**row, "task_id": int(task_id), "project_key": project_key, "project_id": project_id} for row, task_id in zip(rows, task_ids, strict=True)],
    )


TASK_COLUMNS = ["project_key", "task_id", "image_url", "project_id", "item_id", "brand_slug", "pre_label", "pre_score", "pre_model_version"]


def upsert_task_rows(con: duckdb.DuckDBPyConnection, rows: Sequence[dict]) -> None:
    frame = pd.DataFrame([{column: row.get(column) for column in TASK_COLUMNS} for row in rows], columns=TASK_COLUMNS)
    frame = frame.drop_duplicates(["project_key", "task_id"])
    frame["pre_score"] = frame["pre_score"].astype("float64")
    frame["created_at"] = warehouse.utcnow()
    # insert_only: a task already recorded keeps its row (its created_at, and its retirement if it was retired).
    warehouse.upsert(con, "label_tasks", frame, key=["project_key", "task_id"], insert_only=True)


@dataclass(frozen=True)
class TaskReconciliation:
    adopted: int  # tasks Label Studio has and DuckDB did not know: recorded, never imported twice
    revived: int  # retired rows whose task Label Studio has again (back on a project that was left)
    retired: int  # live rows whose task Label Studio no longer has (deleted there): the image is eligible again
    retired_images: list[str]


DELETED_IN_LABEL_STUDIO = "deleted in Label Studio"


def reconcile_tasks(con: duckdb.DuckDBPyConnection, project_key: int, project_id: int, ls_tasks: dict[int, str | None]) -> TaskReconciliation:
    """Make DuckDB's live tasks of the project exactly the tasks Label Studio has (ls_tasks: task id -> image).

    Adopts tasks DuckDB does not know (a run that died between the import and the DuckDB write, or a lost DuckDB
    file), revives retired rows whose task is back, and retires rows whose task was deleted in Label Studio.
    """
    with warehouse.transaction(con):
        known = dict(con.execute("SELECT task_id, retired_at IS NULL FROM label_tasks WHERE project_key = ?", [project_key]).fetchall())
        gone = [task_id for task_id, live in known.items() if live and task_id not in ls_tasks]
        gone_images = [
            row[0]
            for row in con.execute(
                "SELECT image_url FROM label_tasks WHERE project_key = ? AND list_contains(?, task_id) ORDER BY image_url",
                [project_key, gone],
            ).fetchall()
        ] if gone else []
        retired = retire_tasks(con, project_key, DELETED_IN_LABEL_STUDIO, task_ids=gone)
        back = [task_id for task_id, live in known.items() if not live and task_id in ls_tasks]
        if back:
            con.execute(
                "UPDATE label_tasks SET retired_at = NULL, retired_reason = NULL WHERE project_key = ? AND list_contains(?, task_id)",
                [project_key, back],
            )
        missing = [
            {"image_url": image, "task_id": task_id, "project_key": project_key, "project_id": project_id}
            for task_id, image in ls_tasks.items()
            if task_id not in known and image
        ]
        if missing:
            upsert_task_rows(con, missing)
    return TaskReconciliation(adopted=len(missing), revived=len(back), retired=retired, retired_images=gone_images)
