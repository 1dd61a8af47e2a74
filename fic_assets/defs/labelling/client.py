"""Label Studio through label-studio-sdk: the resource and the few calls the platform makes.

Every call goes through `calls_to(url)`, which turns "server down" and "token refused" into errors that name
the server and the setting to fix, instead of an httpx traceback, and any other HTTP error into one short line
(status, method, path, the first line of the body): a server error's 46 KB HTML page never reaches the run.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import dagster as dg
import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from fic_assets.defs.labelling.errors import LabelStudioAuthError, LabelStudioError, LabelStudioUnavailable
from fic_assets.defs.labelling.projects import SeenProject
from fic_assets.platform.settings import REPO_ROOT

LABEL_STUDIO_DIR = REPO_ROOT / "label_studio"
CHOICES = ("worn", "not_worn", "unusable")
TRAINABLE = ("worn", "not_worn")
# Names in labeling_config.xml the pre-annotations and the simulated annotator must use.
FROM_NAME, TO_NAME = "label", "image"
PAGE_SIZE = 500
# The Data Manager tab the project opens on, and how "Label All Tasks" picks the next task: the tasks the
# model is least sure about first (the lowest score of the project's model version; none last).
UNCERTAIN_VIEW_TITLE = "Most uncertain first"
UNCERTAIN_ORDERING = ["tasks:predictions_score"]
# Its columns when it is made (a person may change them later): the image, brand, score and who annotated stay;
# Label Studio's bookkeeping columns go (hidden columns are not even computed).
_BOOKKEEPING = ["inner_id", "annotations_results", "annotations_ids", "predictions_results", "file_upload", "storage_filename",
                "created_at", "updated_at", "updated_by", "avg_lead_time", "draft_exists", "allow_skip", "data.item_id", "data.brand_slug"]
_LABELLING_LIST = ["completed_at", "total_annotations", "cancelled_annotations", "total_predictions", "annotators",
                   "predictions_model_versions", "data.brand", "data.is_packshot"]
UNCERTAIN_VIEW_COLUMNS = {"hiddenColumns": {"explore": [f"tasks:{name}" for name in _BOOKKEEPING],
                                            "labeling": [f"tasks:{name}" for name in _BOOKKEEPING + _LABELLING_LIST]}}
SAMPLING = "Uncertainty sampling"


def _number_filter(field: str, operator: str, value: int) -> dict:
    return {"filter": f"filter:tasks:{field}", "operator": operator, "type": "Number", "value": value}


# Tasks nobody answered yet (a skipped task counts as answered: it has a cancelled annotation).
OPEN_TASKS_QUERY = json.dumps({"filters": {"conjunction": "and", "items": [
    _number_filter("total_annotations", "equal", 0), _number_filter("cancelled_annotations", "equal", 0)]}})
# Tasks with at least one annotation, skipped ones included, newest change first: what human_labels pulls.
ANNOTATED_TASKS_QUERY = json.dumps({"filters": {"conjunction": "or", "items": [
    _number_filter("total_annotations", "greater", 0), _number_filter("cancelled_annotations", "greater", 0)]},
    "ordering": ["-tasks:updated_at"]})
ALL_TASKS_QUERY = json.dumps({"filters": {"conjunction": "and", "items": []}, "ordering": ["-tasks:updated_at"]})


ERROR_LINE_CHARS = 200


def _trimmed(text: str, limit: int = ERROR_LINE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def body_summary(body) -> str:
    """One short line for an error body: JSON compacted, an HTML page's title (or h1), else its first line."""
    if body is None or body == "":
        return "(empty body)"
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, dict):
        # Label Studio's API errors: {"id", "status_code", "version", "detail", "exc_info", "validation_errors"?}
        parts = [str(body[key]) for key in ("detail", "message", "error") if body.get(key)]
        if body.get("validation_errors"):
            parts.append(json.dumps(body["validation_errors"], ensure_ascii=False, default=str))
        line = _trimmed(" ".join(parts) if parts else json.dumps(body, ensure_ascii=False, default=str))
        return f"{line} (Label Studio error id {body['id']})" if parts and body.get("id") else line
    if not isinstance(body, str):
        return _trimmed(json.dumps(body, ensure_ascii=False, default=str))
    head = body.lstrip()[:512].lower()
    if head.startswith("<") and ("<html" in head or "<!doctype" in head or "<head" in head or "<body" in head):
        found = re.search(r"<title[^>]*>(.*?)</title>", body, re.S | re.I) or re.search(r"<h1[^>]*>(.*?)</h1>", body, re.S | re.I)
        first = html.unescape(re.sub(r"<[^>]+>", " ", found.group(1))) if found else ""
        size = f"{len(body.encode()) / 1024:.0f} KB" if len(body) >= 1024 else f"{len(body.encode())} bytes"
        return f"{_trimmed(first) or 'an HTML page'} ({size} HTML page, not shown)"
    lines = [line for line in body.splitlines() if line.strip()]
    more = " (…)" if len(lines) > 1 else ""
    return _trimmed(lines[0]) + more if lines else "(blank body)"


class FailedRequests:
    """httpx response hook: remembers the last request Label Studio answered with an error (the SDK's ApiError
    carries the status and body, not which request it was)."""

    def __init__(self) -> None:
        self.last: tuple[str, str] | None = None

    def __call__(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            url = response.request.url  # the path only: a query string can be long (Data Manager filters)
            self.last = (response.request.method, url.path + ("?…" if url.query else ""))


@contextmanager
def calls_to(url: str, failed: FailedRequests | None = None) -> Iterator[None]:
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError) as error:
        raise LabelStudioUnavailable(f"Label Studio at {url} is not reachable ({error}); start it with label_studio/start or fix FIC_LABEL_STUDIO_URL") from error
    except ApiError as error:
        if error.status_code in (401, 403):
            raise LabelStudioAuthError(f"Label Studio at {url} refused the API token (HTTP {error.status_code}); check FIC_LABEL_STUDIO_TOKEN") from None
        request = f" to {failed.last[0]} {_trimmed(failed.last[1], 300)}" if failed and failed.last else ""
        # `from None`: the ApiError holds the whole body, which Dagster would show again as the cause.
        raise LabelStudioError(f"Label Studio at {url} answered HTTP {error.status_code}{request}: {body_summary(error.body)}") from None


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

    def client(self, http: httpx.Client | None = None) -> LabelStudio:
        return LabelStudio(base_url=self.url, api_key=self.token, timeout=self.timeout_seconds, httpx_client=http)

    @contextmanager
    def session(self) -> Iterator["LabelStudioSession"]:
        failed = FailedRequests()
        with calls_to(self.url, failed), httpx.Client(timeout=self.timeout_seconds, event_hooks={"response": [failed]}) as http:
            yield LabelStudioSession(self.client(http), self.url.rstrip("/"), self.project_title)


@dataclass(frozen=True)
class AnnotationState:
    """What `human_labels` would pull from a project, in two small queries (no export): how many tasks have an
    annotation and the newest change among them. Creating or editing an annotation moves its task's updated_at;
    deleting a task's last one lowers the count; importing tasks or predictions changes neither, so a new round
    is not an annotation change. `newest_task` (any task) only makes run keys unique."""

    project: str  # "<id>@<created_at>": the project it describes (ids repeat on a fresh server)
    annotated_tasks: int
    newest_annotated: datetime | None
    newest_task: datetime | None
    seen_at: datetime  # taken before the queries: a change made during them is newer than this state

    def differs_from(self, before: "AnnotationState | None") -> bool:
        if before is None or before.project != self.project:
            return self.annotated_tasks > 0
        return (self.annotated_tasks, self.newest_annotated) != (before.annotated_tasks, before.newest_annotated)

    def run_key(self) -> str:
        newest = self.newest_task.isoformat() if self.newest_task else "none"
        return f"annotations:{self.project}:{self.annotated_tasks}:{newest}"

    def as_json(self) -> dict:
        stamp = lambda value: value.isoformat() if value else None  # noqa: E731
        return {"project": self.project, "annotated_tasks": self.annotated_tasks, "newest_annotated": stamp(self.newest_annotated),
                "newest_task": stamp(self.newest_task), "seen_at": self.seen_at.isoformat()}

    @classmethod
    def from_json(cls, data) -> "AnnotationState | None":
        """The state a cursor or a materialization recorded; None for anything else (a cursor of an older release)."""
        try:
            if isinstance(data, str):
                data = json.loads(data)
            stamp = lambda value: datetime.fromisoformat(value) if value else None  # noqa: E731
            return cls(str(data["project"]), int(data["annotated_tasks"]), stamp(data["newest_annotated"]),
                       stamp(data["newest_task"]), datetime.fromisoformat(data["seen_at"]))
        except (ValueError, TypeError, KeyError):
            return None


# The human_labels metadata entry holding the AnnotationState its pull started from.
PULLED_STATE = "label_studio_state"


def latest_state(*states: "AnnotationState | None") -> AnnotationState | None:
    """The most recently seen of several recorded states (the sensor's cursor, the last pull's)."""
    known = [state for state in states if state is not None]
    return max(known, key=lambda state: state.seen_at) if known else None


def project_identity(project: SeenProject) -> str:
    return f"{project.id}@{project.created_at.isoformat() if project.created_at else ''}"


@dataclass
class ProjectState:
    id: int
    created: bool
    updated: bool
    created_at: datetime | None = None


@dataclass
class LabelStudioSession:
    """Calls for one project, identified by its title (the platform never stores Label Studio ids as truth)."""

    ls: LabelStudio
    url: str
    title: str

    def _find(self):
        # The API's title filter matches substrings: compare exactly here.
        for project in self.ls.projects.list(title=self.title):
            if project.title == self.title:
                return project
        return None

    def find_project(self) -> int | None:
        project = self._find()
        return project.id if project else None

    def project_id(self) -> int:
        return self.project().id

    def find_seen_project(self) -> SeenProject | None:
        project = self._find()
        return SeenProject(project.id, project.created_at, self.title, self.url) if project else None

    def project(self) -> SeenProject:
        """The project of this title, with what identifies it beyond its id (its creation time)."""
        project = self.find_seen_project()
        if project is None:
            raise LabelStudioError(f"Label Studio at {self.url} has no project {self.title!r}: materialize `label_studio_project` first")
        return project

    def server_projects(self) -> dict[int, datetime | None]:
        """id -> created_at of every project on the server (tells a deleted project from a replaced one)."""
        return {project.id: project.created_at for project in self.ls.projects.list(page_size=PAGE_SIZE)}

    def ensure_project(self, label_config: str, expert_instruction: str) -> ProjectState:
        """Create the project, or bring its config and instructions up to date; idempotent."""
        project_id = self.find_project()
        if project_id is None:
            project = self.ls.projects.create(
                title=self.title, label_config=label_config, expert_instruction=expert_instruction, show_instruction=True,
                sampling=SAMPLING, show_collab_predictions=True,
            )
            return ProjectState(project.id, created=True, updated=False, created_at=project.created_at)
        project = self.ls.projects.get(id=project_id)
        if (project.label_config.strip() == label_config.strip() and (project.expert_instruction or "") == expert_instruction
                and project.sampling == SAMPLING and project.show_collab_predictions):
            return ProjectState(project_id, created=False, updated=False, created_at=project.created_at)
        self.ls.projects.update(id=project_id, label_config=label_config, expert_instruction=expert_instruction, show_instruction=True,
                                sampling=SAMPLING, show_collab_predictions=True)
        return ProjectState(project_id, created=False, updated=True, created_at=project.created_at)

    def ensure_uncertain_view(self, project_id: int) -> int:
        """The Data Manager tab ordered by the model's score, lowest (least sure) first, as the project's first tab:
        the Data Manager opens on it. Idempotent; tabs a person added stay, after it. Returns the tab's id."""
        views = list(self.ls.views.list(project=project_id))
        ours = next((view for view in views if (view.data or {}).get("title") == UNCERTAIN_VIEW_TITLE), None)
        data = {**((ours.data or {}) if ours else UNCERTAIN_VIEW_COLUMNS), "title": UNCERTAIN_VIEW_TITLE, "ordering": UNCERTAIN_ORDERING}
        if ours is None:
            ours = self.ls.views.create(project=project_id, data=data)
        elif ours.data != data:
            ours = self.ls.views.update(id=str(ours.id), project=project_id, data=data)
        order = [ours.id] + [view.id for view in views if view.id != ours.id]
        if [view.id for view in views] != order:
            self.ls.views.update_order(project=project_id, ids=order)
        return int(ours.id)

    def set_model_version(self, project_id: int, version: str) -> bool:
        """Point the project's pre-labelling ("Use predictions from") at version; True when it changed. Label
        Studio accepts only a version some prediction of the project has."""
        if self.ls.projects.get(id=project_id).model_version == version:
            return False
        self.ls.projects.update(id=project_id, model_version=version)
        return True

    def model_version(self, project_id: int) -> str | None:
        return self.ls.projects.get(id=project_id).model_version or None

    def seen(self, state: ProjectState) -> SeenProject:
        return SeenProject(state.id, state.created_at, self.title, self.url)

    def import_tasks(self, project_id: int, tasks: Sequence[dict]) -> list[int]:
        """Import tasks (with their predictions) in one request; returns the new task ids in order."""
        if not tasks:
            return []
        response = self.ls.projects.import_tasks(id=project_id, request=list(tasks), return_task_ids=True)
        task_ids = list(response.task_ids or [])
        if len(task_ids) != len(tasks):
            raise LabelStudioError(f"Label Studio at {self.url} created {len(task_ids)} of {len(tasks)} tasks")
        return task_ids

    def import_predictions(self, project_id: int, predictions: Sequence[dict]) -> int:
        """Add predictions ({"task", "model_version", "score", "result"}) to existing tasks, in bulk. Unlike
        creating them one by one this leaves the tasks' updated_at alone."""
        created = 0
        for start in range(0, len(predictions), PAGE_SIZE):
            response = self.ls.projects.import_predictions(id=project_id, request=list(predictions[start : start + PAGE_SIZE]))
            created += int(response.created or 0)
        return created

    def open_tasks_by_id(self, project_id: int) -> dict[int, str | None]:
        """task id -> image URL of every task nobody answered yet."""
        return {
            int(task.id): (task.data or {}).get("image")
            for task in self.ls.tasks.list(project=project_id, fields="task_only", query=OPEN_TASKS_QUERY, page_size=PAGE_SIZE)
        }

    def ensure_user(self, email: str, first_name: str, last_name: str) -> int:
        """The id of the user with this e-mail in the organisation, created (without a password: it cannot log
        in) when missing."""
        for user in self.ls.users.list():
            if (user.email or "").lower() == email.lower():
                return int(user.id)
        return int(self.ls.users.create(email=email, username=email.split("@")[0], first_name=first_name, last_name=last_name).id)

    def project_tasks(self, project_id: int) -> dict[int, str | None]:
        """task id -> image URL for every task of the project (reconciles DuckDB with what Label Studio has:
        tasks DuckDB does not know are adopted, tasks Label Studio no longer has are retired)."""
        return {
            int(task.id): (task.data or {}).get("image")
            for task in self.ls.tasks.list(project=project_id, fields="task_only", page_size=PAGE_SIZE)
        }

    def task_images(self, project_id: int) -> dict[str, int]:
        """image URL -> task id (the first task of each image)."""
        found: dict[str, int] = {}
        for task_id, image in self.project_tasks(project_id).items():
            if image:
                found.setdefault(image, task_id)
        return found

    def annotated_tasks(self, project_id: int) -> list[dict]:
        """Every task with at least one annotation, annotations included, in one export request.

        The export endpoint is ~2.5x faster than paging through /api/tasks with fields=all (10,000 annotations:
        11 s instead of 28 s); the sensor never calls it, only a human_labels run does."""
        body = b"".join(self.ls.projects.exports.download_sync(id=project_id, export_type="JSON", download_all_tasks=False))
        return json.loads(body)

    def _newest_task(self, project_id: int, query: str) -> tuple[int, datetime | None]:
        """(how many tasks match query, the updated_at of the first): one page of one task."""
        pager = self.ls.tasks.list(project=project_id, fields="task_only", page_size=1, query=query)
        page = next(iter(pager.iter_pages()))
        return int(page.response.total or 0), (page.items[0].updated_at if page.items else None)

    def annotation_state(self, project: SeenProject) -> AnnotationState:
        seen_at = datetime.now(timezone.utc)
        annotated, newest_annotated = self._newest_task(project.id, ANNOTATED_TASKS_QUERY)
        _, newest_task = self._newest_task(project.id, ALL_TASKS_QUERY)
        return AnnotationState(project_identity(project), annotated, newest_annotated, newest_task, seen_at)

    def annotator_names(self) -> dict[int, str]:
        """user id -> email: annotations name their annotator by id."""
        return {user.id: user.email or user.username or str(user.id) for user in self.ls.users.list()}

    def open_tasks(self, project_id: int) -> int:
        project = self.ls.projects.get(id=project_id)
        return int((project.task_number or 0) - (project.num_tasks_with_annotations or 0))
