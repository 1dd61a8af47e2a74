"""Default parameters, the same sections as the repository's params.yaml (prepare/train/evaluate/baseline).

A params file only needs the keys it changes: load_params merges it over these defaults per section.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

DEFAULTS: dict[str, dict] = {
    "prepare": {"folds": 5, "seed": 42},  # cross-validation folds, stratified; identical files share a fold
    "train": {
        "arch": "tf_efficientnet_lite0",  # lite1 / lite2: bigger and slower, and no better on real photos
        "input_size": 192,  # below the native 224: faster to score, and as good on real photos (README)
        "tta_hflip": False,  # average each score with the mirror image's: 2x scoring cost, no F1 gain measured
        "cv_repeats": 3,  # reshuffled cross-validations behind the reported F1 and its spread
        "seed": 42,
        "threads": 2,
    },
    # The quality gate: a candidate below min_f1 (cross-validated) is not promoted, nor one more than
    # max_drop below production on the images neither of them was trained on.
    "evaluate": {"min_f1": 0.9, "max_drop": 0.01, "min_compare_images": 20},
    "baseline": {"size": 32, "grey": False, "C": 0.01, "max_iter": 5000},
}


def merged(overrides: dict | None) -> dict[str, dict]:
    params = copy.deepcopy(DEFAULTS)
    for section, values in (overrides or {}).items():
        params.setdefault(section, {}).update(values or {})
    return params


def load_params(path: str | Path | None) -> dict[str, dict]:
    """The defaults, overridden by a YAML file's sections when a path is given."""
    if path is None:
        return merged(None)
    return merged(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
