"""The model's evaluation plots say what they show: each PNG carries its title (PNG tEXt `Title`), read back here
from the files `write_evaluation` writes for the `model` asset's metadata and `dvc plots`."""

from __future__ import annotations

from PIL import Image
from sklearn.metrics import average_precision_score

from fic_assets.defs.model.evaluate import CONFUSION_PNG, PR_PNG, write_evaluation


def png_title(path) -> str:
    with Image.open(path) as image:
        return image.text["Title"]


def test_the_pr_curve_is_titled_with_its_average_precision_not_the_roc_auc(tmp_path):
    # Scores whose average precision (0.867) and ROC AUC (0.833) differ, so a title with the wrong one shows.
    rows = [("a", "worn", 0.9), ("b", "not_worn", 0.8), ("c", "worn", 0.7), ("d", "worn", 0.4), ("e", "not_worn", 0.3),
            ("f", "not_worn", 0.1)]
    metrics = write_evaluation(rows, tmp_path, 0.5, "cross-validation")
    ap = average_precision_score([1, 0, 1, 1, 0, 0], [score for _, _, score in rows])
    assert f"{ap:.3f}" != f"{metrics['roc_auc']:.3f}"
    title = png_title(tmp_path / PR_PNG)
    assert title == f"PR curve, cross-validation: AP={ap:.3f}"
    assert "AUC" not in title and f"{metrics['roc_auc']:.3f}" not in title
    assert png_title(tmp_path / CONFUSION_PNG) == "cross-validation, n=6"


def test_pr_curve_of_one_class_says_so(tmp_path):
    """Bad input: labelled images of one class only (no precision-recall curve exists)."""
    write_evaluation([("a", "worn", 0.9), ("b", "worn", 0.2)], tmp_path, 0.5, "held-out images")
    assert png_title(tmp_path / PR_PNG) == "PR curve: held-out images has one class"
