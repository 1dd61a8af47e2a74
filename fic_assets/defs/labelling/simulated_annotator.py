"""SIMULATED annotator for the demo: answers open Label Studio tasks from the demo shop's kept truth.

It is not a labelling tool. The demo cannot wait for a person, so this stands in for one, through the same
Label Studio API a person's browser uses (one annotation per task, with a lead time), and makes mistakes at a
configurable rate so the loop sees realistic, imperfect labels.

It annotates as a Label Studio user of its own (SIMULATED_ANNOTATOR), never as the admin a person logs in as, so
`labels.annotator` / `annotator_id` tell its labels from a person's. Label Studio 1.23 gives an API token only
to the user who asks for it, and a user made through the API has no password, so the platform's (admin) token
creates the annotation with `completed_by` set to that user, as the annotations API documents: Label Studio
then shows and exports the simulated user as the annotator. Images the demo shop breaks on purpose
(404, empty, truncated, HTML, decompression bomb) are answered `unusable`, as a person would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from fic_assets.defs.labelling.client import OPEN_TASKS_QUERY, LabelStudioSession, choice_result

UNUSABLE_DEFECTS = {"missing", "empty", "truncated", "html", "huge"}
SIMULATED_ANNOTATOR = {"email": "simulated-annotator@fic.local", "first_name": "Simulated", "last_name": "annotator (demo)"}


@dataclass
class AnnotatorReport:
    answered: int = 0
    wrong_on_purpose: int = 0
    unusable: int = 0
    unknown_image: int = 0
    by_label: dict[str, int] = field(default_factory=dict)


def truth_by_url(truth_rows: list[dict]) -> dict[str, str]:
    """image URL -> the label a careful person would give."""
    return {row["image_url"]: ("unusable" if row.get("defect") in UNUSABLE_DEFECTS else row["truth"]) for row in truth_rows}


def answer(true_label: str, rng: random.Random, error_rate: float) -> tuple[str, bool]:
    if true_label in ("worn", "not_worn") and rng.random() < error_rate:
        return ("not_worn" if true_label == "worn" else "worn"), True
    return true_label, False


def annotate_open_tasks(
    session: LabelStudioSession,
    project_id: int,
    truth: dict[str, str],
    error_rate: float = 0.03,
    limit: int | None = None,
    seed: int = 0,
) -> AnnotatorReport:
    rng = random.Random(seed)
    report = AnnotatorReport()
    user_id = session.ensure_user(**SIMULATED_ANNOTATOR)
    open_tasks = session.ls.tasks.list(project=project_id, fields="task_only", query=OPEN_TASKS_QUERY, page_size=500)
    for task in open_tasks:
        if limit is not None and report.answered >= limit:
            break
        true_label = truth.get((task.data or {}).get("image"))
        if true_label is None:  # not a demo-shop image: a person would have to look; leave it open
            report.unknown_image += 1
            continue
        label, wrong = answer(true_label, rng, error_rate)
        session.ls.annotations.create(id=task.id, result=choice_result(label), lead_time=round(rng.uniform(0.8, 4.0), 2),
                                      completed_by=user_id)
        report.answered += 1
        report.wrong_on_purpose += wrong
        report.unusable += label == "unusable"
        report.by_label[label] = report.by_label.get(label, 0) + 1
    return report
