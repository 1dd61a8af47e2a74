"""The metric set shared by the fine-tuned model and the baseline (worn is the positive class)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], scores: Sequence[float]) -> dict:
    """accuracy, precision, recall, f1, roc_auc (None with one class only), confusion counts, n.

    y_* are 1 for worn, 0 for not worn; scores rank worn higher (a probability or an SVM margin).
    """
    # scikit-learn loads on first use: the defs folder imports this module when the code location loads.
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="binary", pos_label=1,
                                                               zero_division=0)
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    auc = float(roc_auc_score(y_true, scores)) if len(set(y_true.tolist())) == 2 else None
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4) if len(y_true) else None,
        "precision": round(float(precision), 4),
        "recall": round(float(recall), 4),
        "f1": round(float(f1), 4),
        "roc_auc": None if auc is None else round(auc, 4),
        "n": int(len(y_true)),
        "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn),
    }


def f1_at(y_true: Sequence[int], scores: Sequence[float], threshold: float = 0.5) -> float:
    """F1 of worn at a score threshold (0.0 when there is nothing to find and nothing found)."""
    from sklearn.metrics import precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=int)
    y_pred = (np.asarray(scores, dtype=float) >= threshold).astype(int)
    _, _, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="binary", pos_label=1, zero_division=0)
    return float(f1)
