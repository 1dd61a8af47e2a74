"""Metrics and plots of scored labelled images: a held-out folder scored by a model, or a model's own
cross-validation. Writes metrics.json, plots (PNG) and CSVs for `dvc plots`."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from fic_assets.platform.plotting import pyplot
from fic_assets.defs.model.classes import CLASSES, NEGATIVE, POSITIVE
from fic_assets.defs.model.artifact import CV_PREDICTIONS_FILE, model_card
from fic_assets.defs.model.metrics import classification_metrics
from fic_assets.defs.model.scoring import ERROR_LABEL, Scorer, score_stream

METRICS_FILE = "metrics.json"
PREDICTIONS_CSV = "predictions.csv"  # path,actual,predicted,score: `dvc plots` confusion template
PR_CSV = "pr_curve.csv"  # recall,precision,threshold
CONFUSION_PNG = "confusion_matrix.png"
PR_PNG = "pr_curve.png"


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def plot_confusion(y_true: list[int], y_pred: list[int], path: Path, title: str) -> None:
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = pyplot()
    figure, axes = plt.subplots(figsize=(4, 4))
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=[0, 1], display_labels=list(CLASSES), ax=axes,
                                            colorbar=False)
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Title": title})  # the PNG says what it shows (its tEXt Title)
    plt.close(figure)


def plot_pr(recall, precision, path: Path, title: str) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.plot(recall, precision)
    axes.set(xlabel=f"recall ({POSITIVE})", ylabel=f"precision ({POSITIVE})", xlim=(0, 1.02), ylim=(0, 1.02),
             title=title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Title": title})  # the PNG says what it shows (its tEXt Title)
    plt.close(figure)


def write_evaluation(rows: Sequence[tuple[str, str, float]], out_dir: str | Path, threshold: float, what: str) -> dict:
    """(path, actual label, P(worn)) rows -> metrics.json, predictions.csv, pr_curve.csv and the two PNGs."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y_true = [int(label == POSITIVE) for _, label, _ in rows]
    scores = [float(score) for _, _, score in rows]
    y_pred = [int(score >= threshold) for score in scores]
    metrics = classification_metrics(y_true, y_pred, scores)
    metrics["threshold"] = threshold
    write_csv(out / PREDICTIONS_CSV, ["path", "actual", "predicted", "score"],
              [[path, label, POSITIVE if score >= threshold else NEGATIVE, round(score, 5)] for path, label, score in rows])
    plot_confusion(y_true, y_pred, out / CONFUSION_PNG, f"{what}, n={len(y_true)}")
    if len(set(y_true)) == 2:
        precision, recall, thresholds = precision_recall_curve(y_true, scores, pos_label=1)
        write_csv(out / PR_CSV, ["recall", "precision", "threshold"],
                  [[round(r, 5), round(p, 5), round(t, 5)] for r, p, t in zip(recall, precision, thresholds)])
        plot_pr(recall, precision, out / PR_PNG, f"PR curve, {what}: AP={average_precision_score(y_true, scores):.3f}")
    else:  # keep the declared outputs present even when the images are of one class
        write_csv(out / PR_CSV, ["recall", "precision", "threshold"], [])
        plot_pr([], [], out / PR_PNG, f"PR curve: {what} has one class")
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def evaluate(model_dir: str | Path, items: Sequence[tuple[str, str]], images_root: str | Path, out_dir: str | Path) -> dict:
    """Score labelled files (path relative to images_root, label) through the scoring path; metrics + plots."""
    scorer = Scorer.load(model_dir)
    root = Path(images_root)
    labels = {str(root / path): label for path, label in items}
    scored = [(row.source, labels[row.source], row.score) for row in score_stream(list(labels), scorer)
              if row.label != ERROR_LABEL]
    scored.sort()
    metrics = write_evaluation(scored, out_dir, scorer.threshold, "held-out images")
    metrics.update({"n_errors": len(labels) - len(scored), "model_version": scorer.version, "runtime_precision": scorer.precision})
    (Path(out_dir) / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def cv_rows(model_dir: str | Path) -> list[dict]:
    """The model's out-of-fold predictions: [{path, label, digest, fold, score}]."""
    with (Path(model_dir) / CV_PREDICTIONS_FILE).open(encoding="utf-8") as handle:
        return [{**row, "score": float(row["score"])} for row in csv.DictReader(handle)]


def report_cv(model_dir: str | Path, out_dir: str | Path) -> dict:
    """Plots and metrics.json of the model's cross-validation (the card's metrics, with their spread)."""
    card = model_card(model_dir)
    rows = [(row["path"], row["label"], row["score"]) for row in cv_rows(model_dir)]
    write_evaluation(rows, out_dir, float(card.get("threshold", 0.5)), "cross-validation")
    metrics = {**card["metrics"], "model_version": card["version"], "runtime_precision": card.get("evaluated_precision", "f32")}
    (Path(out_dir) / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics
