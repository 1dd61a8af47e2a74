"""The original approach, kept as the bar to beat: raw pixels -> StandardScaler -> LinearSVC.

Trained on train + val (it has nothing to tune on val), scored on the same test split as the model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import joblib
import numpy as np
from PIL import Image
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from fic_assets.imaging import BadImageError
from fic_assets.ml import CLASSES, POSITIVE
from fic_assets.ml.data import decode_file, describe, read_split, split_items
from fic_assets.ml.metrics import classification_metrics
from fic_assets.ml.params import DEFAULTS

log = logging.getLogger(__name__)


def pixels(path: Path, size: int, grey: bool) -> np.ndarray:
    """The whole image squashed to size x size, flattened to [0, 1] floats."""
    image = decode_file(path, size * 2).resize((size, size), Image.BILINEAR)
    if grey:
        image = image.convert("L")
    return np.asarray(image, dtype=np.float32).ravel() / 255.0


def features(root: str | Path, items: list[tuple[str, str]], size: int, grey: bool) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) with y = 1 for worn; bad images are skipped with a warning."""
    rows, labels = [], []
    for path, label in items:
        try:
            rows.append(pixels(Path(root) / path, size, grey))
        except BadImageError as error:
            log.warning("skipping bad image %s (%s)", path, describe(error))
            continue
        labels.append(int(label == POSITIVE))
    width = size * size * (1 if grey else 3)
    return np.stack(rows) if rows else np.zeros((0, width), np.float32), np.asarray(labels, dtype=int)


def train_baseline(split_file: str | Path, images_root: str | Path, params: dict,
                   out_dir: str | Path | None = None) -> dict:
    """Fit on train + val, return test metrics (same names as evaluate; ROC AUC from the SVM margin).

    With out_dir: also metrics.json and model.joblib there.
    """
    p = {**DEFAULTS["baseline"], **params}
    split = read_split(split_file)
    x_train, y_train = features(images_root, split_items(split, "train", "val"), p["size"], p["grey"])
    x_test, y_test = features(images_root, split_items(split, "test"), p["size"], p["grey"])
    if len(set(y_train.tolist())) < 2:
        raise ValueError(f"need training images of both classes {CLASSES}")
    model = make_pipeline(StandardScaler(), LinearSVC(C=p["C"], class_weight="balanced", max_iter=p["max_iter"]))
    model.fit(x_train, y_train)
    metrics = classification_metrics(y_test, model.predict(x_test), model.decision_function(x_test)) if len(y_test) \
        else classification_metrics([], [], [])
    metrics["n_train"] = int(len(y_train))
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        joblib.dump(model, out / "model.joblib")
    return metrics
