"""Shared fixtures: the project on sys.path, TensorFlow quiet, small real data sets."""
import glob
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_DIR)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hwnas.data import idx as data_lib  # noqa: E402


def write_idx3(path, images):
    with open(path, "wb") as f:
        f.write(data_lib.idx_bytes(np.asarray(images, dtype=np.uint8)))


def write_idx1(path, labels):
    with open(path, "wb") as f:
        f.write(data_lib.idx_bytes(np.asarray(labels, dtype=np.uint8)))


@pytest.fixture(scope="session")
def demo_subset_files(tmp_path_factory):
    """The first 600 demo sessions as an IDX pair (real traffic, small enough for fast tests)."""
    folder = tmp_path_factory.mktemp("demo_subset")
    images = data_lib.read_idx3(data_lib.DEFAULT_IMAGES_PATH)[:600]
    labels = data_lib.read_idx1(data_lib.DEFAULT_LABELS_PATH)[:600]
    images_path, labels_path = str(folder / "sessions.idx3"), str(folder / "labels.idx1")
    write_idx3(images_path, images)
    write_idx1(labels_path, labels)
    return images_path, labels_path


@pytest.fixture(scope="session")
def small_data(demo_subset_files):
    """(SessionData, folds) on the 600-session subset: 3 folds, labels one-hot after folding."""
    images_path, labels_path = demo_subset_files
    X_train, y_train, X_test, y_test = data_lib.load_and_preprocess_data(
        None, 0.2, images_path=images_path, labels_path=labels_path, seed=0)
    folds = data_lib.fold_index(X_train, y_train, 3, seed=0)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    data = data_lib.SessionData(X_train, data_lib.one_hot(y_train, n_classes),
                                X_test, data_lib.one_hot(y_test, n_classes))
    return data, folds


# Settings of the tiny real run shared by the end-to-end and robustness tests.
# The specification's loop from scratch (its networks' ids are those the tests name); the GA of the
# defaults, with inheritance and a predictor, is TINY_GA_RUN's and test_levers'; the final training of
# the best alone (the finalists are test_data_budget's).
TINY_RUN = ("test_size=0.2", "num_folds=3", "num_selected_folds=1", "n_generations=2", "n_child=2", "epochs=2",
            "final_epochs=2", "final_candidates=1", "search_strategy=mutation", "inherit_weights=False",
            "proposal_pool=None")


def run_main(*overrides, timeout=900):
    """Runs B01_NAS.py with overrides; returns the CompletedProcess."""
    return subprocess.run([sys.executable, os.path.join(PROJECT_DIR, "B01_NAS.py"), *overrides],
                          capture_output=True, text=True, timeout=timeout, cwd=PROJECT_DIR)


def real_run(tmp_path_factory, demo_subset_files, run_name, overrides):
    """Runs B01_NAS.py on the demo subset; returns (run_dir, stdout, images_path, labels_path)."""
    images_path, labels_path = demo_subset_files
    logs_dir = tmp_path_factory.mktemp(f"{run_name}_logs")
    result = run_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={logs_dir}",
                      *overrides, f"run_name={run_name}")
    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = glob.glob(os.path.join(logs_dir, f"*_{run_name}"))
    return run_dir, result.stdout, images_path, labels_path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, demo_subset_files):
    """One uninterrupted tiny run: (run_dir, stdout, images_path, labels_path)."""
    return real_run(tmp_path_factory, demo_subset_files, "tiny", TINY_RUN)


# The tiny run again as a multi-objective population GA (NSGA-II on accuracy and flash), on a named
# microcontroller with a (loose) energy threshold.
TINY_GA_RUN = (*TINY_RUN, "search_strategy=ga", "population_size=3", "n_elites=2",
               'objectives=["val_accuracy","flash_size"]', "save_pareto_models=True", "smart_start=False",
               "target_device=STM32F746", "energy_thr=5.0")


@pytest.fixture(scope="session")
def tiny_ga_run(tmp_path_factory, demo_subset_files):
    """One uninterrupted tiny GA run: (run_dir, stdout, images_path, labels_path)."""
    return real_run(tmp_path_factory, demo_subset_files, "tiny_ga", TINY_GA_RUN)


# The suite runs on two pytest-xdist workers (README, Tests: `-n 2 --dist loadgroup`). The tests
# that read one of the shared real runs above go to the same worker, so each run is made once in
# the suite rather than once per worker.
SHARED_RUN_FIXTURES = ("tiny_run", "tiny_ga_run", "budget_run")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        shared = [name for name in SHARED_RUN_FIXTURES if name in getattr(item, "fixturenames", ())]
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared[0]))
