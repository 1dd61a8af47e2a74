"""The original approach, kept as the bar to beat: raw pixels -> StandardScaler -> LinearSVC.

Cross-validated over the same folds as the model (fic_assets.defs.model.train), so `dvc metrics show` compares like
with like.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fic_assets.platform.imaging import BadImageError, decode_rgb
from fic_assets.defs.model.classes import POSITIVE
from fic_assets.defs.model.data import read_folds
from fic_assets.defs.model.metrics import classification_metrics
from fic_assets.defs.model.params import DEFAULTS
from fic_assets.defs.model.scoring import read_file

log = logging.getLogger(__name__)


def pixels(path: Path, size: int, grey: bool) -> np.ndarray:
    """The whole image squashed to size x size, flattened to [0, 1] floats."""
    image = decode_rgb(read_file(path), draft_size=(size * 2, size * 2)).resize((size, size), Image.BILINEAR)
    if grey:
        image = image.convert("L")
    return np.asarray(image, dtype=np.float32).ravel() / 255.0


def features(root: str | Path, items: Sequence[tuple[str, str]], size: int, grey: bool) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """(X, y, kept) with y = 1 for worn; bad images are skipped with a warning (kept[i] False)."""
    rows, labels, kept = [], [], []
    for path, label in items:
        try:
            rows.append(pixels(Path(root) / path, size, grey))
        except (BadImageError, OSError) as error:
            log.warning("skipping bad image %s (%s)", path, error)
            kept.append(False)
            continue
        labels.append(int(label == POSITIVE))
        kept.append(True)
    width = size * size * (1 if grey else 3)
    return np.stack(rows) if rows else np.zeros((0, width), np.float32), np.asarray(labels, dtype=int), kept


def fit(x: np.ndarray, y: np.ndarray, p: dict):
    from sklearn.pipeline import make_pipeline  # on first use: the defs folder imports this module
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    model = make_pipeline(StandardScaler(), LinearSVC(C=p["C"], class_weight="balanced", max_iter=p["max_iter"]))
    return model.fit(x, y)


def baseline_scores(train_x, train_y, test_x, params: dict) -> np.ndarray:
    """SVM margins of the test rows (positive = worn) from a baseline fitted on the training rows."""
    return fit(train_x, train_y, {**DEFAULTS["baseline"], **params}).decision_function(test_x)


def cross_validate_baseline(folds_file: str | Path, images_root: str | Path, params: dict, out_dir: str | Path | None = None) -> dict:
    """Out-of-fold metrics over the folds document (the same folds as the model); same metric names."""
    p = {**DEFAULTS["baseline"], **params}
    doc = read_folds(folds_file)
    x, y, kept = features(images_root, [(i["path"], i["label"]) for i in doc["items"]], p["size"], p["grey"])
    folds = np.array([item["fold"] for item, ok in zip(doc["items"], kept) if ok])
    margins = np.zeros(len(y))
    for fold in sorted(set(folds.tolist())):
        held = folds == fold
        margins[held] = baseline_scores(x[~held], y[~held], x[held], p)
    metrics = classification_metrics(y, (margins > 0).astype(int), margins)
    metrics["n_train"] = int(len(y))
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics
