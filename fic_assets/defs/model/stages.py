"""The DVC pipeline's stages: `python -m fic_assets.defs.model.stages {prepare,train,evaluate,baseline}`.

Run from the DVC project root (dvc.yaml, params.yaml); paths are fixed here so dvc.yaml's deps and outs match.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fic_assets.defs.model.params import load_params

IMAGES = Path("datasets/images")
FOLDS = Path("data/folds.json")
MODEL = Path("models/candidate")
MODEL_METRICS = Path("metrics/model.json")
BASELINE_METRICS = Path("metrics/baseline.json")
PLOTS = Path("plots")


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def prepare(params: dict) -> dict:
    from fic_assets.defs.model.data import make_folds, write_folds

    folds = make_folds(IMAGES, **params["prepare"])
    write_folds(folds, FOLDS)
    return {"counts": folds["counts"], "folds": folds["folds"], "skipped": len(folds["skipped"])}


def train(params: dict) -> dict:
    from fic_assets.defs.model.train import train as train_model

    card = train_model(FOLDS, IMAGES, params["train"], MODEL)
    return {key: card[key] for key in ("version", "n_train", "C", "train_seconds")}


def evaluate(params: dict) -> dict:
    from fic_assets.defs.model.evaluate import report_cv

    # The model is trained on every image; its quality is the cross-validation the train stage recorded.
    metrics = report_cv(MODEL, PLOTS)
    metrics["min_f1"] = params["evaluate"]["min_f1"]
    metrics["passed"] = metrics["f1"] >= params["evaluate"]["min_f1"]
    write_json(MODEL_METRICS, metrics)
    return metrics


def baseline(params: dict) -> dict:
    from fic_assets.defs.model.baseline import cross_validate_baseline

    metrics = cross_validate_baseline(FOLDS, IMAGES, params["baseline"])
    write_json(BASELINE_METRICS, metrics)
    return metrics


STAGES = {"prepare": prepare, "train": train, "evaluate": evaluate, "baseline": baseline}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fic_assets.defs.model.stages", description=__doc__)
    parser.add_argument("stage", choices=list(STAGES))
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml in the cwd)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = STAGES[args.stage](load_params(args.params))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
