"""What the benchmarks and studies share: the project and the tests' helpers on Python's path,
TensorFlow's C++ log quiet, and a data set's stratified test split and folds.

Every script here starts with `import benchmark_setup` (its folder is on the path when it is run
as `python tests/benchmarks/<script>.py`).
"""
import os
import sys

BENCHMARKS_DIR = os.path.dirname(os.path.abspath(__file__))
TESTS_DIR = os.path.dirname(BENCHMARKS_DIR)
PROJECT_DIR = os.path.dirname(TESTS_DIR)
for folder in (TESTS_DIR, PROJECT_DIR):  # the project first: its modules, then the tests' helpers
    if folder not in sys.path:
        sys.path.insert(0, folder)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def split_and_folds(images_path=None, labels_path=None, test_size=0.1, num_folds=5, seed=0, keep_bytes=True):
    """(SessionData, folds, integer training labels, integer test labels) of an IDX pair (the demo
    data by default; paths relative to the project): a stratified test split and stratified folds,
    as B01_NAS.py makes them (the sessions kept as bytes; keep_bytes=False: float32 / 255)."""
    from hwnas.data import idx as data_lib
    paths = {"images_path": os.path.join(PROJECT_DIR, images_path or "data/demo_sessions.idx3"),
             "labels_path": os.path.join(PROJECT_DIR, labels_path or "data/demo_labels.idx1")}
    X_train, y_train, X_test, y_test = data_lib.load_and_preprocess_data(None, test_size, seed=seed,
                                                                         keep_bytes=keep_bytes, **paths)
    folds = data_lib.fold_index(X_train, y_train, num_folds, seed=seed)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    data = data_lib.SessionData(X_train, data_lib.one_hot(y_train, n_classes), X_test, data_lib.one_hot(y_test, n_classes))
    return data, folds, y_train, y_test
