"""Classification metrics."""
import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def _to_labels(y):
    """One-hot rows or class probabilities (N, C) -> integer labels (N,)."""
    y = np.asarray(y)
    return y.argmax(axis=1) if y.ndim == 2 else y.astype(np.int64)


def compute_descriptors(y_true, y_pred):
    """Accuracy and macro-averaged precision, recall and F1.

    y_true, y_pred: integer labels (N,), or one-hot / probabilities (N, C).
    Macro averaging weighs every traffic class equally, so a rare class that
    is always missed shows in the scores. It is over the classes y_true holds
    (a class with no sample has no F1 to average; a sample predicted as it still
    lowers its true class's recall): the one definition of macro-F1 of this
    toolkit, per_class_descriptors' macro row included.
    Returns a dict with keys accuracy, precision, recall, f1 (floats in [0, 1]).
    """
    labels_true, labels_pred = _to_labels(y_true), _to_labels(y_pred)
    if labels_true.shape != labels_pred.shape:
        raise ValueError(f"y_true has {labels_true.shape[0]} samples, y_pred {labels_pred.shape[0]}")
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels_true, labels_pred, labels=np.unique(labels_true), average="macro", zero_division=0)
    return {"accuracy": float(accuracy_score(labels_true, labels_pred)),
            "precision": float(precision), "recall": float(recall), "f1": float(f1)}


def per_class_descriptors(y_true, y_pred, n_classes):
    """Per class (labels 0..n_classes - 1): precision, recall, F1 and support (the class's true
    samples), and the confusion matrix (rows: true class, columns: predicted).
    Returns ({"precision", "recall", "f1", "support": lists by class}, matrix (n_classes, n_classes))."""
    labels_true, labels_pred = _to_labels(y_true), _to_labels(y_pred)
    classes = list(range(n_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels_true, labels_pred, labels=classes, average=None, zero_division=0)
    return ({"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
             "support": support.tolist()}, confusion_matrix(labels_true, labels_pred, labels=classes))


def macro_average(values, support):
    """The macro average of per-class values over the classes with samples (support > 0), as
    compute_descriptors averages."""
    present = [value for value, n in zip(values, support) if n > 0]
    return float(np.mean(present)) if present else 0.0


def mean_over_folds(fold_metrics):
    """The mean of each metric over folds (compute_descriptors dicts, in fold order): a network's score."""
    return {key: float(np.mean([metrics[key] for metrics in fold_metrics])) for key in fold_metrics[0]}


def best_fold(fold_metrics):
    """The position in fold_metrics of the fold with the highest accuracy, the first of equals:
    the fold whose weights a network keeps."""
    accuracies = [metrics["accuracy"] for metrics in fold_metrics]
    return accuracies.index(max(accuracies))
