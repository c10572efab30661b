"""The specification's metrics module, kept where scripts written for the original toolkit import it:
classification metrics, overall and per class (hwnas/data/metrics.py)."""
from hwnas.data.metrics import compute_descriptors, per_class_descriptors  # noqa: F401
