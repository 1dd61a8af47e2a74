"""Trained models on disk and the production pointer every reader of "the model" goes through.

    models/<version>/          weights + card.json (one per trained model, never overwritten)
    models/production.json     {"version", "path", "metrics", "promoted_at"}: the model in use

The pointer is a small JSON file replaced atomically, so a reader never sees half a promotion.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from fic_assets.platform import settings
from fic_assets.platform import warehouse

POINTER = "production.json"


def models_dir() -> Path:
    return Path(settings.get("FIC_MODELS_DIR"))


class NoProductionModel(RuntimeError):
    def __init__(self, where: Path):
        super().__init__(
            f"no production model at {where / POINTER}: train and promote one first "
            "(materialize `image_set`, `model` and `production_model`, e.g. `dagster job execute -m fic_assets.definitions -j retrain_job`, "
            "or `fic train --data datasets/images --out models/manual`)"
        )


def production(root: Path | None = None) -> dict | None:
    """The production pointer, or None when no model was promoted yet."""
    path = (root or models_dir()) / POINTER
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def require_production(root: Path | None = None) -> dict:
    pointer = production(root)
    if pointer is None:
        raise NoProductionModel(root or models_dir())
    return pointer


def promote(model_dir: Path, version: str, metrics: dict, root: Path | None = None) -> dict:
    root = root or models_dir()
    root.mkdir(parents=True, exist_ok=True)
    pointer = {"version": version, "path": str(Path(model_dir).resolve()), "metrics": metrics, "promoted_at": warehouse.utcnow().isoformat()}
    with tempfile.NamedTemporaryFile("w", dir=root, delete=False, suffix=".tmp", encoding="utf-8") as handle:
        json.dump(pointer, handle, indent=2)
    os.replace(handle.name, root / POINTER)
    return pointer
