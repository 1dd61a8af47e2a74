"""Label Studio annotations -> DuckDB `annotations` (raw) -> `labels` (one resolved label per image).

Conflict rule, when several annotators labelled the same image:
1. each annotator counts once, with their most recently updated annotation (editing replaces your own vote);
2. annotations without a usable choice (cancelled/skipped, no choice, a choice the config does not know) are
   kept in `annotations` with the problem, and do not vote;
3. the label chosen by most annotators wins; a tie goes to the most recently updated of the tied annotations.
`labels.agreement` records the winning share, so disagreements can be sent back to people.
`unusable` is a label like the others (stored, resolved, shown), but training reads only worn / not_worn.

Nothing but a person's deletion in Label Studio removes a label. A pull replaces the `annotations` of its own
project only (it is complete for that project, so what it lacks was deleted there), then `labels` is resolved
again from the annotations of every project: a new, re-created or replaced project leaves the labels of the old
one as they are, and `labels` always equals what `annotations` resolve to. Each label names its project.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import duckdb
import pandas as pd

from fic_assets.defs.labelling.client import CHOICES, FROM_NAME
from fic_assets.platform import warehouse

ANNOTATION_COLUMNS = [
    "project_key", "annotation_id", "project_id", "task_id", "image_url", "item_id", "annotator",
    "label", "problem", "created_at", "updated_at", "lead_time", "annotator_id",
]


def _field(obj, name: str, default=None):
    """SDK objects are pydantic models or dicts depending on the endpoint: read both."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def choice_of(annotation) -> tuple[str | None, str | None]:
    """(label, problem) of one annotation."""
    if _field(annotation, "was_cancelled"):
        return None, "skipped by the annotator"
    choices = [
        choice
        for region in _field(annotation, "result") or []
        if _field(region, "from_name") == FROM_NAME and _field(region, "type") == "choices"
        for choice in (_field(_field(region, "value"), "choices") or [])
    ]
    if not choices:
        return None, "no choice"
    if len(set(choices)) > 1:
        return None, f"several choices {sorted(set(choices))}"
    if choices[0] not in CHOICES:
        return None, f"unknown choice {choices[0]!r}"
    return choices[0], None


def annotation_rows(tasks: Iterable, project_id: int, annotators: dict[int, str], project_key: int | None = None) -> list[dict]:
    rows = []
    for task in tasks:
        data = _field(task, "data") or {}
        for annotation in _field(task, "annotations") or []:
            label, problem = choice_of(annotation)
            completed_by = _field(annotation, "completed_by")
            if isinstance(completed_by, dict):  # some endpoints inline the user
                completed_by = completed_by.get("id")
            rows.append(
                {
                    "project_key": project_key,
                    "annotation_id": int(_field(annotation, "id")),
                    "project_id": project_id,
                    "task_id": int(_field(task, "id")),
                    "image_url": data.get("image"),
                    "item_id": data.get("item_id"),
                    "annotator": annotators.get(completed_by, str(completed_by)),
                    "label": label,
                    "problem": problem,
                    "created_at": _field(annotation, "created_at"),
                    "updated_at": _field(annotation, "updated_at") or _field(annotation, "created_at"),
                    "lead_time": _field(annotation, "lead_time"),
                    "annotator_id": int(completed_by) if completed_by is not None else None,
                }
            )
    return rows


def annotations_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)
    for column in ("created_at", "updated_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    frame["lead_time"] = pd.to_numeric(frame["lead_time"], errors="coerce").astype("float64")
    frame["annotation_id"] = frame["annotation_id"].astype("int64")
    frame["task_id"] = frame["task_id"].astype("int64")
    frame["project_key"] = frame["project_key"].astype("Int64")
    frame["annotator_id"] = frame["annotator_id"].astype("Int64")
    return frame.drop_duplicates(["project_key", "annotation_id"])


LABEL_COLUMNS = ["image_url", "item_id", "label", "annotator", "annotated_at", "task_id", "annotation_id", "lead_time", "annotations", "agreement",
                 "project_key", "annotator_id"]


def resolve_labels(annotations: pd.DataFrame) -> pd.DataFrame:
    """One label per image by the module's conflict rule."""
    usable = annotations[annotations["label"].notna() & annotations["image_url"].notna()]
    for column in ("project_key", "annotator_id"):
        if column not in usable.columns:
            usable = usable.assign(**{column: pd.NA})
    columns = LABEL_COLUMNS
    if usable.empty:
        return pd.DataFrame(columns=columns)
    # 1. one vote per annotator: their latest annotation of the image
    votes = usable.sort_values(["updated_at", "annotation_id"]).groupby(["image_url", "annotator"], as_index=False).tail(1)
    # 3. majority, tie -> most recent: rank labels by (count, newest update) within each image
    tally = votes.groupby(["image_url", "label"]).agg(count=("annotation_id", "size"), newest=("updated_at", "max")).reset_index()
    tally = tally.sort_values(["image_url", "count", "newest"], ascending=[True, False, False])
    winners = tally.groupby("image_url", as_index=False).head(1)
    totals = votes.groupby("image_url").size().rename("annotations")
    # The annotation standing for the label: the newest vote for the winning label.
    chosen = votes.merge(winners[["image_url", "label", "count"]], on=["image_url", "label"])
    chosen = chosen.sort_values(["updated_at", "annotation_id"]).groupby("image_url", as_index=False).tail(1)
    chosen = chosen.join(totals, on="image_url")
    chosen["agreement"] = chosen["count"] / chosen["annotations"]
    chosen = chosen.rename(columns={"updated_at": "annotated_at"})
    return chosen[columns].reset_index(drop=True)


def replace_project_annotations(con: duckdb.DuckDBPyConnection, project_key: int, annotations: pd.DataFrame) -> None:
    """The pull is complete for the project, so what it lacks was deleted in Label Studio. Other projects'
    annotations are not touched."""
    con.register("pulled_annotations", annotations)
    try:
        con.execute("DELETE FROM annotations WHERE project_key = ?", [project_key])
        con.execute(
            """INSERT INTO annotations (project_key, annotation_id, project_id, task_id, image_url, item_id, annotator, label,
                   problem, created_at, updated_at, lead_time, annotator_id)
               SELECT ?, annotation_id, project_id, task_id, image_url, item_id, annotator, label, problem,
                   created_at, updated_at, lead_time, annotator_id FROM pulled_annotations""",
            [project_key],
        )
    finally:
        con.unregister("pulled_annotations")


def stored_annotations(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every annotation DuckDB holds, of every project: what `labels` is resolved from."""
    rows = con.execute(f"SELECT {', '.join(ANNOTATION_COLUMNS)} FROM annotations").fetchall()
    frame = pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)
    for column in ("created_at", "updated_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["lead_time"] = pd.to_numeric(frame["lead_time"], errors="coerce").astype("float64")
    frame["project_key"] = frame["project_key"].astype("Int64")
    frame["annotator_id"] = frame["annotator_id"].astype("Int64")
    return frame


def write_labels(con: duckdb.DuckDBPyConnection, resolved: pd.DataFrame, project_key: int | None = None) -> dict[str, int]:
    """Upsert the resolved labels; drop the labels of `project_key` whose images lost all their usable annotations.

    A label of another project is never dropped here: only a pull of its own project (a person's deletion in
    Label Studio) can take its annotations away. project_key None: labels written without a project (tests,
    benchmarks)."""
    resolved = resolved.reindex(columns=LABEL_COLUMNS)
    resolved["project_key"] = resolved["project_key"].astype("Int64")
    resolved["annotator_id"] = resolved["annotator_id"].astype("Int64")
    before = dict(con.execute("SELECT image_url, label FROM labels").fetchall())
    con.register("resolved_labels", resolved)
    try:
        removed = con.execute(
            """DELETE FROM labels WHERE project_key IS NOT DISTINCT FROM ?
                   AND image_url NOT IN (SELECT image_url FROM resolved_labels)""",
            [project_key],
        ).fetchone()[0]
    finally:
        con.unregister("resolved_labels")
    warehouse.upsert(con, "labels", resolved, key=["image_url"])  # resolve_labels gives one row per image
    after = dict(zip(resolved["image_url"], resolved["label"]))
    total = con.execute("SELECT count(*) FROM labels").fetchall()[0][0]  # fetchall: a half-read result blocks register()
    return {
        "labels": int(total),
        "new": sum(1 for url in after if url not in before),
        "changed": sum(1 for url, label in after.items() if url in before and before[url] != label),
        "removed": int(removed),
    }


def sync_project(con: duckdb.DuckDBPyConnection, project_key: int, annotations: pd.DataFrame) -> tuple[dict[str, int], pd.DataFrame]:
    """One complete pull of a project: replace its annotations, resolve labels from all annotations, write them.
    Returns (changes, resolved labels). Run it inside a transaction."""
    replace_project_annotations(con, project_key, annotations)
    resolved = resolve_labels(stored_annotations(con))
    return write_labels(con, resolved, project_key), resolved


def labels_of_other_projects(con: duckdb.DuckDBPyConnection, project_key: int) -> int:
    """Labels that stand for annotations of another project than project_key (or of none: labels written
    without a project): what a pull of project_key keeps without seeing them."""
    # fetchall: a half-read result blocks register() on the same connection.
    return int(con.execute("SELECT count(*) FROM labels WHERE project_key IS DISTINCT FROM ?", [project_key]).fetchall()[0][0])


def labels_since(con: duckdb.DuckDBPyConnection, since: datetime | None) -> int:
    """Human labels whose annotation was made or changed after `since` (all of them when None)."""
    if since is None:
        return con.execute("SELECT count(*) FROM labels").fetchone()[0]
    return con.execute("SELECT count(*) FROM labels WHERE annotated_at > ?", [since]).fetchone()[0]


def labelled_image_urls(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The image URL of every human label, whatever its label (unusable ones too)."""
    return [row[0] for row in con.execute("SELECT image_url FROM labels").fetchall()]
