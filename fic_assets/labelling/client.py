"""Label Studio through label-studio-sdk: the resource and the few calls the platform makes.

Every call goes through `calls_to(url)`, which turns "server down" and "token refused" into errors that name
the server and the setting to fix, instead of an httpx traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from fic_assets.labelling.errors import LabelStudioAuthError, LabelStudioError, LabelStudioUnavailable

LABEL_STUDIO_DIR = Path(__file__).resolve().parents[2] / "label_studio"
CHOICES = ("worn", "not_worn", "unusable")
TRAINABLE = ("worn", "not_worn")
# Names in labeling_config.xml the pre-annotations and the simulated annotator must use.
FROM_NAME, TO_NAME = "label", "image"
PAGE_SIZE = 500


@contextmanager
def calls_to(url: str) -> Iterator[None]:
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError) as error:
        raise LabelStudioUnavailable(f"Label Studio at {url} is not reachable ({error}); start it with label_studio/start or fix FIC_LABEL_STUDIO_URL") from error
    except ApiError as error:
        if error.status_code in (401, 403):
            raise LabelStudioAuthError(f"Label Studio at {url} refused the API token (HTTP {error.status_code}); check FIC_LABEL_STUDIO_TOKEN") from error
        raise LabelStudioError(f"Label Studio at {url} answered HTTP {error.status_code}: {error.body}") from error


def labeling_config() -> str:
    return (LABEL_STUDIO_DIR / "labeling_config.xml").read_text(encoding="utf-8")


def instructions() -> str:
    return (LABEL_STUDIO_DIR / "instructions.html").read_text(encoding="utf-8")


def choice_result(label: str) -> list[dict]:
    """An annotation/prediction `result` choosing one label in the fic labelling config."""
    return [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [label]}}]


class LabelStudioResource(dg.ConfigurableResource):
    """The labelling server. URL and token come from FIC_LABEL_STUDIO_URL / FIC_LABEL_STUDIO_TOKEN."""

    url: str
    token: str
    project_title: str = "fic: is the garment worn?"
    timeout_seconds: float = 60.0

    def client(self) -> LabelStudio:
        return LabelStudio(base_url=self.url, api_key=self.token, timeout=self.timeout_seconds)

    @contextmanager
    def session(self) -> Iterator["LabelStudioSession"]:
        with calls_to(self.url):
            yield LabelStudioSession(self.client(), self.url, self.project_title)


@dataclass
class ProjectState:
    id: int
    created: bool
    updated: bool


@dataclass
class LabelStudioSession:
    """Calls for one project, identified by its title (the platform never stores Label Studio ids as truth)."""

    ls: LabelStudio
    url: str
    title: str

    def find_project(self) -> int | None:
        # The API's title filter matches substrings: compare exactly here.
        for project in self.ls.projects.list(title=self.title):
            if project.title == self.title:
                return project.id
        return None

    def project_id(self) -> int:
        project_id = self.find_project()
        if project_id is None:
            raise LabelStudioError(f"Label Studio at {self.url} has no project {self.title!r}: materialize `label_studio_project` first")
        return project_id

    def ensure_project(self, label_config: str, expert_instruction: str) -> ProjectState:
        """Create the project, or bring its config and instructions up to date; idempotent."""
        project_id = self.find_project()
        if project_id is None:
            project = self.ls.projects.create(
                title=self.title, label_config=label_config, expert_instruction=expert_instruction, show_instruction=True
            )
            return ProjectState(project.id, created=True, updated=False)
        project = self.ls.projects.get(id=project_id)
        if project.label_config.strip() == label_config.strip() and (project.expert_instruction or "") == expert_instruction:
            return ProjectState(project_id, created=False, updated=False)
        self.ls.projects.update(id=project_id, label_config=label_config, expert_instruction=expert_instruction, show_instruction=True)
        return ProjectState(project_id, created=False, updated=True)

    def import_tasks(self, project_id: int, tasks: Sequence[dict]) -> list[int]:
        """Import tasks (with their predictions) in one request; returns the new task ids in order."""
        if not tasks:
            return []
        response = self.ls.projects.import_tasks(id=project_id, request=list(tasks), return_task_ids=True)
        task_ids = list(response.task_ids or [])
        if len(task_ids) != len(tasks):
            raise LabelStudioError(f"Label Studio at {self.url} created {len(task_ids)} of {len(tasks)} tasks")
        return task_ids

    def task_images(self, project_id: int) -> dict[str, int]:
        """image URL -> task id for every task of the project (reconciles DuckDB with what Label Studio has)."""
        found: dict[str, int] = {}
        for task in self.ls.tasks.list(project=project_id, fields="task_only", page_size=PAGE_SIZE):
            image = (task.data or {}).get("image")
            if image:
                found.setdefault(image, task.id)
        return found

    def annotated_tasks(self, project_id: int) -> list[dict]:
        """Every task with at least one annotation, annotations included, in one export request.

        The export endpoint is ~2.5x faster than paging through /api/tasks with fields=all (10,000 annotations:
        11 s instead of 28 s); the sensor never calls it, only a human_labels run does."""
        body = b"".join(self.ls.projects.exports.download_sync(id=project_id, export_type="JSON", download_all_tasks=False))
        return json.loads(body)

    def changed_since(self, project_id: int, cursor: datetime | None) -> tuple[int, datetime | None]:
        """How many tasks changed after cursor, and the newest change. Creating, editing or deleting an
        annotation moves the task's updated_at, so this sees all three without exporting anything."""
        items = []
        if cursor is not None:
            # The Data Manager parses exactly this format (UTC, microseconds, "Z"); "+00:00" is a server error.
            value = cursor.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            items.append({"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": value})
        query = {"filters": {"conjunction": "and", "items": items}, "ordering": ["-tasks:updated_at"]}
        pager = self.ls.tasks.list(project=project_id, fields="task_only", page_size=1, query=json.dumps(query))
        page = next(iter(pager.iter_pages()))
        newest = page.items[0].updated_at if page.items else None
        return int(page.response.total or 0), newest

    def annotator_names(self) -> dict[int, str]:
        """user id -> email: annotations name their annotator by id."""
        return {user.id: user.email or user.username or str(user.id) for user in self.ls.users.list()}

    def open_tasks(self, project_id: int) -> int:
        project = self.ls.projects.get(id=project_id)
        return int((project.task_number or 0) - (project.num_tasks_with_annotations or 0))
