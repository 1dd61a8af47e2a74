"""`dvc repro` runs the model pipeline (dvc.yaml + params.yaml from the repository) in a fresh DVC project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from fic_assets.demo.sample import write_demo_image_set

REPO = Path(__file__).resolve().parents[1]


def run(args: list[str], cwd: Path) -> str:
    # The stages run `python -m ...`: the venv's python must come first on PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_dvc_repro_runs_the_pipeline(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "dvc.yaml", project)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(input_size=96, cv_repeats=1)  # tiny and quick; same stages
    params["baseline"].update(size=16)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    write_demo_image_set(project / "datasets" / "images", 40, seed=3, width=200)
    run(["git", "init", "-q"], project)
    run([sys.executable, "-m", "dvc", "init", "-q"], project)

    run([sys.executable, "-m", "dvc", "repro"], project)

    for path in ("data/folds.json", "models/candidate/model.pt", "models/candidate/card.json",
                 "plots/predictions.csv", "plots/pr_curve.csv", "plots/confusion_matrix.png", "plots/pr_curve.png"):
        assert (project / path).is_file(), path
    shown = json.loads(run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], project))
    metrics = next(iter(shown.values()))["data"]
    model = metrics["metrics/model.json"]["data"]
    baseline = metrics["metrics/baseline.json"]["data"]
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert key in model and key in baseline
    # Cross-validated, with its spread: which folds, how many images.
    assert model["n"] == 40 and model["cv_folds"] == params["prepare"]["folds"] and 0.0 <= model["f1_std"] <= 0.5
    assert model["min_f1"] == params["evaluate"]["min_f1"]
    # Nothing changed, so nothing reruns.
    assert "Data and pipelines are up to date" in run([sys.executable, "-m", "dvc", "status"], project)
