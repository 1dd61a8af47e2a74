"""The quality gate: train a candidate, measure it, and decide whether it may replace production.

Plain functions: the `model` asset and the `model_quality` check call them, and so can a notebook.
- The candidate's quality is its cross-validated F1 (fic_assets.defs.model.train) with its spread over folds.
- Candidate and production are compared on the SAME images, ones neither was trained on: the labelled images
  production never saw (new labels since it was trained), with the candidate's out-of-fold scores and
  production's scores from the scoring path. Comparing each model's own test split would compare two
  different, small samples.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from fic_assets.defs.model.classes import POSITIVE
from fic_assets.defs.model.artifact import model_card, training_images
from fic_assets.defs.model.scoring import Scorer, score_stream

# Training and evaluation (torch, timm, sklearn, matplotlib: ~4.5 s to import) are imported where they are used:
# every Dagster process loads this module with the code location, and almost none of them trains.

EVAL_DIR = "eval"


def train_candidate(images: Path, params: dict, models_root: Path, run_id: str, image_set_hash: str | None) -> tuple[Path, dict, dict]:
    """Folds, training and the CV report in a scratch dir, then moved to models/<version>/ (self-contained)."""
    from fic_assets.defs.model.data import make_folds, write_folds
    from fic_assets.defs.model.evaluate import report_cv
    from fic_assets.defs.model.train import train

    work = models_root / "runs" / run_id
    work.mkdir(parents=True, exist_ok=True)
    try:
        folds_file = write_folds(make_folds(images, **params["prepare"]), work / "model" / "folds.json")
        card = train(folds_file, images, params["train"], work / "model", image_set_hash=image_set_hash)
        metrics = report_cv(work / "model", work / "model" / EVAL_DIR)
        version_dir = models_root / card["version"]
        if version_dir.exists():
            shutil.rmtree(version_dir)
        shutil.move(str(work / "model"), version_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return version_dir, card, metrics


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
