"""Score the test split with a trained model: metrics.json, plots (PNG) and CSVs for `dvc plots`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and in tests
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, precision_recall_curve  # noqa: E402

from fic_assets.ml import CLASSES, POSITIVE  # noqa: E402
from fic_assets.ml.data import read_split  # noqa: E402
from fic_assets.ml.metrics import classification_metrics  # noqa: E402
from fic_assets.ml.predict import ERROR_LABEL, Predictor  # noqa: E402
from fic_assets.ml.train import read_card, write_card  # noqa: E402

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
    figure, axes = plt.subplots(figsize=(4, 4))
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=[0, 1], display_labels=list(CLASSES), ax=axes,
                                            colorbar=False)
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_pr(recall, precision, path: Path, title: str) -> None:
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.plot(recall, precision)
    axes.set(xlabel=f"recall ({POSITIVE})", ylabel=f"precision ({POSITIVE})", xlim=(0, 1.02), ylim=(0, 1.02),
             title=title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def evaluate(model_dir: str | Path, split_file: str | Path, images_root: str | Path, out_dir: str | Path,
             update_card: bool = True) -> dict:
    """Metrics on the test split (worn positive), written to out_dir with plots; returns the metrics.

    update_card=False leaves card.json alone (the DVC evaluate stage must not change the train stage's output).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor.load(model_dir)
    test = read_split(split_file)["splits"]["test"]
    rows = predictor.predict_paths([Path(images_root) / item["path"] for item in test])
    positive = CLASSES.index(POSITIVE)
    scored = [(item, row) for item, row in zip(test, rows) if row.label != ERROR_LABEL]
    y_true = [int(CLASSES.index(item["label"]) == positive) for item, _ in scored]
    y_pred = [int(row.label == POSITIVE) for _, row in scored]
    scores = [row.score for _, row in scored]

    metrics = classification_metrics(y_true, y_pred, scores)
    metrics["n_errors"] = len(rows) - len(scored)
    metrics["threshold"] = predictor.card.get("threshold", 0.5)
    metrics["model_version"] = predictor.card["version"]
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")

    write_csv(out / PREDICTIONS_CSV, ["path", "actual", "predicted", "score"],
              [[item["path"], item["label"], row.label, round(row.score, 5)] for item, row in scored])
    plot_confusion(y_true, y_pred, out / CONFUSION_PNG, f"test set, n={len(y_true)}")
    if len(set(y_true)) == 2:
        precision, recall, thresholds = precision_recall_curve(y_true, scores, pos_label=1)
        write_csv(out / PR_CSV, ["recall", "precision", "threshold"],
                  [[round(r, 5), round(p, 5), round(t, 5)] for r, p, t in zip(recall, precision, thresholds)])
        plot_pr(recall, precision, out / PR_PNG, f"PR curve, AUC(ROC)={metrics['roc_auc']}")
    else:  # keep the declared outputs present even when the test set has one class
        write_csv(out / PR_CSV, ["recall", "precision", "threshold"], [])
        plot_pr([], [], out / PR_PNG, "PR curve: test set has one class")

    if update_card:
        card = read_card(model_dir)
        card["metrics"] = metrics
        write_card(model_dir, card)
    return metrics
