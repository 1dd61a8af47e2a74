"""Default parameters, the same sections as the repository's params.yaml (prepare/train/evaluate/baseline).

A params file only needs the keys it changes: load_params merges it over these defaults per section.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

DEFAULTS: dict[str, dict] = {
    "prepare": {"val_fraction": 0.15, "test_fraction": 0.15, "seed": 42},
    "train": {
        "arch": "tf_efficientnet_lite0",
        "pretrained": True,
        "input_size": 192,  # below the native 224: ~2x faster on 2 cores; worn vs not worn is a coarse cue
        "epochs": 6,
        "freeze_epochs": 1,  # first epoch(s): early blocks frozen, so the random head does not wreck them
        "freeze_blocks": 4,  # stem + this many of the 7 stages frozen during freeze_epochs
        "batch_size": 16,
        "lr": 0.001,  # head; the backbone gets lr * backbone_lr_scale
        "backbone_lr_scale": 0.3,
        "weight_decay": 0.02,
        "warmup_fraction": 0.1,  # of all steps, linear warm-up before the cosine decay
        "label_smoothing": 0.1,
        "patience": 2,  # epochs without a better validation F1 (ties: lower loss) before stopping
        "scale_min": 0.5,  # random resized crop keeps 50-100% of the image
        "color_jitter": 0.2,
        "seed": 42,
        "threads": 2,
    },
    "evaluate": {"min_f1": 0.9},  # the decision threshold (0.5) is in the model card
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
