"""Classification metrics."""
import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support


def _to_labels(y):
    """One-hot rows or class probabilities (N, C) -> integer labels (N,)."""
    y = np.asarray(y)
    return y.argmax(axis=1) if y.ndim == 2 else y.astype(np.int64)


def compute_descriptors(y_true, y_pred):
    """Accuracy and macro-averaged precision, recall and F1.

    y_true, y_pred: integer labels (N,), or one-hot / probabilities (N, C).
    Macro averaging weighs every traffic class equally, so a rare class that
    is always missed shows in the scores.
    Returns a dict with keys accuracy, precision, recall, f1 (floats in [0, 1]).
    """
    labels_true, labels_pred = _to_labels(y_true), _to_labels(y_pred)
    if labels_true.shape != labels_pred.shape:
        raise ValueError(f"y_true has {labels_true.shape[0]} samples, y_pred {labels_pred.shape[0]}")
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels_true, labels_pred, average="macro", zero_division=0)
    return {"accuracy": float(accuracy_score(labels_true, labels_pred)),
            "precision": float(precision), "recall": float(recall), "f1": float(f1)}


def mean_over_folds(fold_metrics):
    """The mean of each metric over folds (compute_descriptors dicts, in fold order): a network's score."""
    return {key: float(np.mean([metrics[key] for metrics in fold_metrics])) for key in fold_metrics[0]}


def best_fold(fold_metrics):
    """The position in fold_metrics of the fold with the highest accuracy, the first of equals:
    the fold whose weights a network keeps."""
    accuracies = [metrics["accuracy"] for metrics in fold_metrics]
    return accuracies.index(max(accuracies))
