"""Train the worn / not_worn classifier: a linear probe on frozen ImageNet EfficientNet-Lite features.

The recipe that won on real shop photos (README "The model", benchmarks/learning_curve.py): fine-tuning the
whole network on 100 labels scored F1 0.95, a logistic regression on the frozen Lite0 features 0.98-0.99 in a
few seconds of training on 2 cores. So training is:

1. features of every labelled image and of its mirror image (augmentation for free), through the same decoder
   and runtime as scoring (fic_assets.defs.model.scoring), so the scores below are the scores users get;
2. cross-validation over the folds (prepare step): each fold's probe is fitted on the other folds, its
   regularisation C chosen by an inner cross-validation on those folds only; every image gets an out-of-fold
   score, and the check reports F1 with its spread over folds (and over `cv_repeats` reshuffles);
3. the final probe is fitted on ALL labelled images (C again chosen by cross-validation) and folded into the
   network's head: models/<version>/ is a whole model the runtime exports and scores like any other.

`train_candidate` is all of it for the `model` asset: folds, training and the CV report in a scratch dir,
published as models/<version>/ (fic_assets.defs.model.artifact.publish).
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fic_assets.defs.model.classes import CLASSES, POSITIVE
from fic_assets.defs.model.artifact import (CV_PREDICTIONS_FILE, MEAN, STD, TRAINING_IMAGES_FILE, code_version, publish,
                                    save_classifier, version_string, write_card)
from fic_assets.defs.model.data import assign_folds, read_folds
from fic_assets.defs.model.metrics import classification_metrics, f1_at
from fic_assets.defs.model.params import DEFAULTS
from fic_assets.defs.model.scoring import FeatureExtractor, SourceReader, pixel_stream
from fic_assets.platform import progress

if TYPE_CHECKING:  # scikit-learn and torch load only when training runs: the defs folder imports this module
    from sklearn.linear_model import LogisticRegression

    from fic_assets.defs.model.network import WornClassifier

log = logging.getLogger(__name__)

C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
FEATURE_BATCH = 32
# liblinear: the same F1 as lbfgs on these small binary problems, 3-5x faster (the CV fits ~200 probes).
SOLVER = "liblinear"
EVAL_DIR = "eval"  # models/<version>/eval/: the cross-validation report and plots of a candidate
# Feature extraction is most of a training run: a progress line every this many images (in the run's log in
# the Dagster UI: the instance's python_logs manage the `fic_assets` loggers).
PROGRESS_EVERY = 256


def feature_scale(width: int) -> float:
    """Unit-norm features scaled so each dimension is O(1): C then means the same whatever the backbone width."""
    return float(np.sqrt(width))


def image_features(root: Path, paths: list[str], extractor: FeatureExtractor, workers: int = 2) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """(features, mirrored features, {path: reason}) for the paths that decode, in order; bad ones are left out."""
    feats, flipped, errors, batch = [], [], {}, []
    done = 0

    def flush() -> None:
        nonlocal done
        pixels = np.stack(batch)
        feats.append(extractor.features(pixels))
        flipped.append(extractor.features(np.ascontiguousarray(pixels[:, :, ::-1])))
        before, done = done, done + len(batch)
        batch.clear()
        if done // PROGRESS_EVERY > before // PROGRESS_EVERY:
            log.info("features: %s of %s images", done, len(paths))

    stream = pixel_stream([root / p for p in paths], extractor.size, SourceReader(), workers=workers)
    for path, pixels in progress.bar(stream, total=len(paths), desc="image features", unit="image", leave=False):
        if isinstance(pixels, str):
            errors[Path(path).relative_to(root).as_posix()] = pixels
            continue
        batch.append(pixels)
        if len(batch) >= FEATURE_BATCH:
            flush()
    if batch:
        flush()
    width = len(feats[0][0]) if feats else 0
    return (np.concatenate(feats) if feats else np.zeros((0, width), np.float32),
            np.concatenate(flipped) if flipped else np.zeros((0, width), np.float32), errors)


def fit_probe(x: np.ndarray, x_flip: np.ndarray, y: np.ndarray, seed: int, grid=C_GRID) -> tuple[LogisticRegression, float]:
    """A balanced logistic regression on features and their mirror images; C by inner CV on unmirrored rows.

    The inner CV sees no mirror images: a mirror in the other inner fold would score its twin and favour weak
    regularisation.
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    inner = min(3, int(np.bincount(y, minlength=2).min()))
    if inner >= 2:
        search = LogisticRegressionCV(Cs=list(grid), cv=inner, scoring="neg_log_loss", class_weight="balanced",
                                      solver=SOLVER, max_iter=3000, random_state=seed, l1_ratios=(0,),
                                      use_legacy_attributes=False).fit(x, y)
        c = float(search.C_)
    else:
        c = 1.0
    probe = LogisticRegression(C=c, class_weight="balanced", solver=SOLVER, max_iter=3000, random_state=seed)
    return probe.fit(np.concatenate([x, x_flip]), np.concatenate([y, y])), c


def probe_scores(probe: LogisticRegression, x: np.ndarray, x_flip: np.ndarray | None = None) -> np.ndarray:
    scores = probe.predict_proba(x)[:, 1]
    return scores if x_flip is None else (scores + probe.predict_proba(x_flip)[:, 1]) / 2


def cross_validate(x, x_flip, y, folds: np.ndarray, seed: int, tta: bool,
                   on_fold: Callable[[], object] | None = None) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold P(worn) per image and the F1 of each fold; on_fold() after each fold (a progress bar)."""
    oof = np.zeros(len(y))
    fold_f1 = []
    for fold in sorted(set(folds.tolist())):
        held = folds == fold
        probe, _ = fit_probe(x[~held], x_flip[~held], y[~held], seed)
        oof[held] = probe_scores(probe, x[held], x_flip[held] if tta else None)
        fold_f1.append(f1_at(y[held], oof[held]))
        if on_fold:
            on_fold()
    return oof, fold_f1


def head_from_probe(model: WornClassifier, probe: LogisticRegression, scale: float) -> None:
    """Logits (-z/2, z/2) with z = w.(scale x) + b: the softmax of the head is exactly the probe's sigmoid."""
    import torch

    w = torch.tensor(probe.coef_[0] * scale, dtype=torch.float32)
    b = float(probe.intercept_[0])
    positive = CLASSES.index(POSITIVE)
    with torch.no_grad():
        model.head.weight.copy_(torch.stack([-w / 2, w / 2]) if positive == 1 else torch.stack([w / 2, -w / 2]))
        model.head.bias.copy_(torch.tensor([-b / 2, b / 2] if positive == 1 else [b / 2, -b / 2]))


def train(folds_file: str | Path, images_root: str | Path, params: dict, out_dir: str | Path,
          image_set_hash: str | None = None, precision: str | None = None) -> dict:
    """Cross-validate the recipe over the folds, fit the final model on every usable image; returns the card.

    params: the `train` section (missing keys take fic_assets.defs.model.params.DEFAULTS["train"]).
    """
    from fic_assets.defs.model.network import WornClassifier

    p = {**DEFAULTS["train"], **params}
    started = time.perf_counter()
    root = Path(images_root)
    doc = read_folds(folds_file)
    items = doc["items"]
    extractor = FeatureExtractor.load(p["arch"], int(p["input_size"]), precision, threads=p["threads"] or None)
    x, x_flip, errors = image_features(root, [item["path"] for item in items], extractor)
    scale = feature_scale(x.shape[1]) if len(x) else 1.0
    x, x_flip = x * scale, x_flip * scale
    usable = [item for item in items if item["path"] not in errors]
    y = np.array([CLASSES.index(item["label"]) == CLASSES.index(POSITIVE) for item in usable], dtype=int)
    if len(usable) == 0 or min(np.bincount(y, minlength=2)) < 2:
        raise ValueError(f"need at least 2 usable images of each class, have {dict(zip(CLASSES, np.bincount(y, minlength=2).tolist()))}")
    feature_seconds = time.perf_counter() - started
    log.info("features of %s images (and their mirror images) in %.1f s; %s could not be read", len(usable),
             feature_seconds, len(errors))

    tta = bool(p["tta_hflip"])
    k = int(doc["folds"])
    repeats = []
    with progress.bar(total=int(p["cv_repeats"]) * k, desc="cross-validation", unit="fold", leave=False) as fitted:
        for repeat in range(int(p["cv_repeats"])):
            folds = np.array([item["fold"] for item in (usable if repeat == 0 else assign_folds(usable, k, doc["seed"] + repeat))])
            repeats.append(cross_validate(x, x_flip, y, folds, p["seed"] + repeat, tta, on_fold=fitted.update))
            log.info("cross-validation %s of %s: F1 per fold %s", repeat + 1, int(p["cv_repeats"]),
                     ", ".join(f"{f1:.3f}" for f1 in repeats[-1][1]))
    oof = repeats[0][0]
    threshold = 0.5
    fold_f1 = [f for _, fold_scores in repeats for f in fold_scores]
    metrics = classification_metrics(y, (oof >= threshold).astype(int), oof)
    metrics.update({
        "f1": round(float(np.mean([f1_at(y, scores, threshold) for scores, _ in repeats])), 4),
        "f1_std": round(float(np.std(fold_f1)), 4),
        "f1_min": round(float(np.min(fold_f1)), 4),
        "f1_max": round(float(np.max(fold_f1)), 4),
        "cv_folds": k,
        "cv_repeats": len(repeats),
        "evaluated_on": "out-of-fold scores of every labelled image",
    })

    probe, c = fit_probe(x, x_flip, y, p["seed"])
    log.info("final probe fitted on all %s images (C=%s)", len(usable), c)
    model = WornClassifier(p["arch"], num_classes=len(CLASSES), pretrained=True)
    head_from_probe(model, probe, scale)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_classifier(model, out)
    (out / TRAINING_IMAGES_FILE).write_text(json.dumps(
        [{key: item[key] for key in ("path", "label", "digest")} for item in usable], indent=0) + "\n", encoding="utf-8")
    with (out / CV_PREDICTIONS_FILE).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "digest", "fold", "score"])
        writer.writerows([item["path"], item["label"], item["digest"], item["fold"], round(float(score), 6)]
                         for item, score in zip(usable, oof))

    trained_at = datetime.now(timezone.utc)
    card = {
        "version": version_string(trained_at, p, "".join(item["digest"] for item in usable) + (image_set_hash or "")),
        "arch": p["arch"],
        "recipe": "linear_probe",
        "classes": list(CLASSES),
        "positive_class": POSITIVE,
        "input_size": int(p["input_size"]),
        "resize": "squash",  # whole image resized to a square, no crop (scoring.model_pixels)
        "mean": list(MEAN),
        "std": list(STD),
        "threshold": threshold,
        "tta_hflip": tta,
        "C": c,
        "evaluated_precision": extractor.precision,
        "params": p,
        "metrics": metrics,
        "image_set_hash": image_set_hash,
        "code_version": code_version(),
        "trained_at": trained_at.isoformat(timespec="seconds"),
        "n_train": len(usable),
        "class_counts_train": dict(zip(CLASSES, np.bincount(np.array([CLASSES.index(i["label"]) for i in usable]), minlength=2).tolist())),
        "skipped_images": len(errors) + len(doc.get("skipped", [])),
        "feature_seconds": round(feature_seconds, 1),
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    write_card(out, card)
    log.info("trained %s on %s images: cross-validated F1 %.3f ± %.3f (C=%s)", card["version"], len(usable),
             metrics["f1"], metrics["f1_std"], c)
    return card


def train_candidate(images: Path, params: dict, models_root: Path, run_id: str, image_set_hash: str | None) -> tuple[Path, dict, dict]:
    """Folds, training and the CV report in a scratch dir, then moved to models/<version>/ (self-contained).

    params: the whole params file (prepare and train sections). Returns (models/<version>/, card, CV metrics).
    """
    from fic_assets.defs.model.data import make_folds, write_folds
    from fic_assets.defs.model.evaluate import report_cv

    work = models_root / "runs" / run_id
    work.mkdir(parents=True, exist_ok=True)
    try:
        folds_file = write_folds(make_folds(images, **params["prepare"]), work / "model" / "folds.json")
        card = train(folds_file, images, params["train"], work / "model", image_set_hash=image_set_hash)
        metrics = report_cv(work / "model", work / "model" / EVAL_DIR)
        version_dir = publish(work / "model", card["version"], models_root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return version_dir, card, metrics
