"""The quality gate: measure a trained candidate and decide whether it may replace production.

Plain functions: the `model_quality` check calls `judge_candidate`, and so can a notebook.
- The candidate's quality is its cross-validated F1 (fic_assets.defs.model.train) with its spread over folds.
- Candidate and production are compared on the SAME images, ones neither was trained on: the labelled images
  production never saw (new labels since it was trained), with the candidate's out-of-fold scores and
  production's scores from the scoring path. Comparing each model's own test split would compare two
  different, small samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fic_assets.defs.model.classes import POSITIVE
from fic_assets.defs.model.artifact import model_card, training_images
from fic_assets.defs.model.scoring import Scorer, score_stream

# Evaluation (sklearn, matplotlib) is imported where it is used: every Dagster process loads this module with
# the code location, and almost none of them judges a model.


@dataclass
class Comparison:
    """Candidate vs production on the images neither was trained on."""

    images: list[str] = field(default_factory=list)  # paths (relative to the image set) both were scored on
    candidate_f1: float | None = None
    production_f1: float | None = None
    note: str = ""


def compare_with_production(candidate_dir: Path, production_dir: Path, images_root: Path, min_images: int) -> Comparison:
    from fic_assets.defs.model.evaluate import cv_rows
    from fic_assets.defs.model.metrics import f1_at

    rows = cv_rows(candidate_dir)
    trained = {image["digest"] for image in training_images(production_dir)}
    unseen = [row for row in rows if row["digest"] not in trained]
    note = "" if trained else "production lists no training images: compared on every labelled image"
    classes = {row["label"] for row in unseen}
    if len(unseen) < min_images or len(classes) < 2:
        return Comparison(note=f"only {len(unseen)} labelled image(s) ({', '.join(sorted(classes)) or 'none'}) that "
                               f"production was not trained on; fewer than {min_images} of both classes: not compared")
    scorer = Scorer.load(production_dir)
    by_source = {str(images_root / row["path"]): row for row in unseen}
    production_scores = {row.source: row.score for row in score_stream(list(by_source), scorer) if row.score is not None}
    both = [row for source, row in by_source.items() if source in production_scores]
    y = [int(row["label"] == POSITIVE) for row in both]
    return Comparison(
        images=sorted(row["path"] for row in both),
        candidate_f1=round(f1_at(y, [row["score"] for row in both], float(model_card(candidate_dir).get("threshold", 0.5))), 4),
        production_f1=round(f1_at(y, [production_scores[source] for source, row in by_source.items() if source in production_scores],
                                  scorer.threshold), 4),
        note=note,
    )


def quality_verdict(candidate_f1: float, min_f1: float, comparison: Comparison | None, max_drop: float) -> tuple[bool, str]:
    if candidate_f1 < min_f1:
        return False, f"cross-validated F1 {candidate_f1:.3f} is below the threshold {min_f1:.3f} (params.yaml evaluate.min_f1)"
    if comparison is not None and comparison.production_f1 is not None:
        n = len(comparison.images)
        if comparison.candidate_f1 < comparison.production_f1 - max_drop:
            return False, (f"on {n} images neither model was trained on, F1 {comparison.candidate_f1:.3f} is more than "
                           f"{max_drop} below production's {comparison.production_f1:.3f}")
        return True, (f"cross-validated F1 {candidate_f1:.3f} passes (threshold {min_f1:.3f}); on {n} images neither was "
                      f"trained on: candidate {comparison.candidate_f1:.3f}, production {comparison.production_f1:.3f}")
    extra = f"; {comparison.note}" if comparison is not None and comparison.note else "; no production model yet" if comparison is None else ""
    return True, f"cross-validated F1 {candidate_f1:.3f} passes (threshold {min_f1:.3f}){extra}"


@dataclass
class Judgement:
    """What the gate decided about a candidate, and on what."""

    passed: bool
    message: str
    card: dict  # the candidate's card (its cross-validated metrics under "metrics")
    comparison: Comparison | None  # None: no production model, or production is the candidate itself


def judge_candidate(candidate_dir: Path, production: dict | None, images_root: Path, min_compare_images: int,
                    min_f1: float, max_drop: float) -> Judgement:
    """The gate on a trained candidate: its cross-validated F1 at least min_f1 and, when another model is in
    production (production: the pointer, fic_assets.defs.model.artifact.production()), not more than max_drop
    below it on the labelled images neither was trained on."""
    card = model_card(candidate_dir)
    comparison = None
    if production is not None and production["version"] != card["version"]:
        comparison = compare_with_production(candidate_dir, Path(production["path"]), images_root, min_compare_images)
    passed, message = quality_verdict(float(card["metrics"]["f1"]), min_f1, comparison, max_drop)
    return Judgement(passed, message, card, comparison)
