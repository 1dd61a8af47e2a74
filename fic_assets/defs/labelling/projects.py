"""Which Label Studio project the platform works with, and what happens to the others.

A project's identity is Label Studio's project id AND its creation time: ids are unique on one server only (a
fresh or restored server numbers its projects from 1 again), and a deleted project's title comes back on a new
id when `label_studio_project` re-creates it. The URL is where the project was last seen, not part of its
identity, so the same server reached at another address (localhost / 127.0.0.1, a new port) is the same project.

One project is current: rounds import into it and pulls read from it. When another one becomes current (the
project was deleted and re-created, or FIC_LABEL_STUDIO_URL points at another server), the old one is `left`:
its annotations and the labels they gave stay as they are, its live tasks are retired so their images can be
offered again, and the run says so in its metadata and log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from fic_assets.platform import warehouse


@dataclass(frozen=True)
class SeenProject:
    """A project as Label Studio describes it now."""

    id: int
    created_at: datetime | None
    title: str
    url: str


@dataclass(frozen=True)
class LeftProject:
    """A project that stopped being current in this run, with what DuckDB keeps of it."""

    project_key: int
    project_id: int
    ls_url: str | None
    reason: str
    labels_kept: int
    annotations_kept: int
    tasks_retired: int

    def as_metadata(self) -> dict:
        return {
            "project_key": self.project_key, "project_id": self.project_id, "url": self.ls_url, "reason": self.reason,
            "labels_kept": self.labels_kept, "annotations_kept": self.annotations_kept, "tasks_retired": self.tasks_retired,
        }


@dataclass
class ProjectRecord:
    """The DuckDB side of the current project after register_project."""

    key: int
    new: bool  # DuckDB had never seen this project
    claimed: bool = False  # a row migrated from before label_projects was matched to it
    left: list[LeftProject] = field(default_factory=list)

    def metadata(self) -> dict:
        """Run metadata: the project key, and what happened to the projects this run left."""
        return {
            "project_key": self.key,
            "new_project": self.new,
            "left_projects": [left.as_metadata() for left in self.left],
            "labels_kept_from_left_projects": sum(left.labels_kept for left in self.left),
        }

    def messages(self, seen: SeenProject) -> list[str]:
        """Warnings for the run's log: a project change never passes silently."""
        lines = []
        for left in self.left:
            lines.append(
                f"Label Studio project {seen.title!r} is now project {seen.id} at {seen.url} (project_key {self.key}); "
                f"the previous one (project {left.project_id} at {left.ls_url or 'an unrecorded URL'}, project_key "
                f"{left.project_key}) {left.reason}. Kept in DuckDB: its {left.labels_kept} label(s) and "
                f"{left.annotations_kept} annotation(s); {left.tasks_retired} task(s) retired, their images can be "
                "labelled again in the new project"
            )
        return lines


def _same_instant(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and b is not None and a == b


def find_key(con: duckdb.DuckDBPyConnection, seen: SeenProject) -> tuple[int | None, bool]:
    """(project_key, claimed) of the project Label Studio describes; (None, False) when DuckDB never saw it."""
    rows = con.execute(
        "SELECT project_key, created_at, ls_url, first_seen FROM label_projects WHERE project_id = ? ORDER BY project_key",
        [seen.id],
    ).fetchall()
    for key, created_at, url, _ in rows:
        if _same_instant(created_at, seen.created_at):
            return key, False
        if seen.created_at is None and created_at is None and url == seen.url:
            return key, False  # a server that does not say when its projects were made: the URL must do
    for key, created_at, url, first_seen in rows:
        # Recorded before label_projects existed: the project that held those tasks was created before them.
        if created_at is None and url is None and (seen.created_at is None or seen.created_at <= first_seen):
            return key, True
    return None, False


def register_project(
    con: duckdb.DuckDBPyConnection, seen: SeenProject, server_projects: Callable[[], dict[int, datetime | None]]
) -> ProjectRecord:
    """Record the project the platform is about to use and make it current; leave the others. Idempotent.

    server_projects: id -> created_at of every project on the server (called only when a project is left, to
    tell "deleted from Label Studio" from "replaced by a project elsewhere").
    """
    now = warehouse.utcnow()
    with warehouse.transaction(con):
        key, claimed = find_key(con, seen)
        new = key is None
        if new:
            key = con.execute("SELECT coalesce(max(project_key), 0) + 1 FROM label_projects").fetchall()[0][0]
            con.execute(
                """INSERT INTO label_projects (project_key, project_id, created_at, title, ls_url, first_seen, last_seen, is_current)
                   VALUES (?, ?, ?, ?, ?, ?, ?, true)""",
                [key, seen.id, seen.created_at, seen.title, seen.url, now, now],
            )
        else:
            con.execute(
                """UPDATE label_projects SET created_at = coalesce(created_at, ?), title = ?, ls_url = ?, last_seen = ?,
                       is_current = true, left_at = NULL, left_reason = NULL
                   WHERE project_key = ?""",
                [seen.created_at, seen.title, seen.url, now, key],
            )
        # Left: the other projects that were current, or that hold live tasks (rows migrated from before
        # label_projects, a project left by a run that failed later).
        leaving = con.execute(
            """SELECT project_key, project_id, created_at, ls_url, first_seen FROM label_projects p
               WHERE project_key != ? AND (is_current OR EXISTS (
                   SELECT 1 FROM label_tasks t WHERE t.project_key = p.project_key AND t.retired_at IS NULL))
               ORDER BY project_key""",
            [key],
        ).fetchall()
        left = []
        on_server = server_projects() if leaving else {}
        for left_key, project_id, created_at, url, first_seen in leaving:
            reason = leave_reason(seen, key, project_id, created_at, url, first_seen, on_server)
            con.execute(
                "UPDATE label_projects SET is_current = false, left_at = coalesce(left_at, ?), left_reason = ? WHERE project_key = ?",
                [now, reason, left_key],
            )
            retired = retire_tasks(con, left_key, f"its project {reason}", now)
            labels, annotations = con.execute(
                "SELECT (SELECT count(*) FROM labels WHERE project_key = ?), (SELECT count(*) FROM annotations WHERE project_key = ?)",
                [left_key, left_key],
            ).fetchall()[0]  # fetchall, not fetchone: DuckDB refuses register() while a result is half read
            left.append(LeftProject(left_key, project_id, url, reason, labels, annotations, retired))
    return ProjectRecord(key=key, new=new, claimed=claimed, left=left)


def leave_reason(seen: SeenProject, key: int, project_id: int, created_at: datetime | None, url: str | None,
                 first_seen: datetime, on_server: dict[int, datetime | None]) -> str:
    """Why a project stops being current, in words for the run's log and label_projects.left_reason."""
    if url is not None and url != seen.url:
        return f"was at {url}; replaced by project_key {key} at {seen.url}"
    if project_id not in on_server:
        return f"was deleted from Label Studio at {seen.url}"
    now_created = on_server[project_id]
    same = _same_instant(now_created, created_at) if created_at is not None else (now_created is None or now_created <= first_seen)
    if not same:
        return f"was deleted from Label Studio at {seen.url} (id {project_id} is now another project)"
    return f"still exists in Label Studio at {seen.url}; replaced by project_key {key} ({seen.title!r})"


def retire_tasks(con: duckdb.DuckDBPyConnection, project_key: int, reason: str, at: datetime | None = None,
                 task_ids: list[int] | None = None) -> int:
    """Retire the live tasks of a project (all of them, or task_ids): their images become candidates again."""
    at = at or warehouse.utcnow()
    if task_ids is None:
        return con.execute(
            "UPDATE label_tasks SET retired_at = ?, retired_reason = ? WHERE project_key = ? AND retired_at IS NULL",
            [at, reason, project_key],
        ).fetchone()[0]
    if not task_ids:
        return 0
    return con.execute(
        """UPDATE label_tasks SET retired_at = ?, retired_reason = ?
           WHERE project_key = ? AND retired_at IS NULL AND list_contains(?, task_id)""",
        [at, reason, project_key, [int(task_id) for task_id in task_ids]],
    ).fetchone()[0]
