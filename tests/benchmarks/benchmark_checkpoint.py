"""Checkpoint cost as a run grows: the checkpoint of today against the one that held every network.

    python tests/benchmarks/benchmark_checkpoint.py [--networks 1000] [--report 100 1000]

Runs a dry run (is_train_proxy=False: networks are built, measured by keras-flops,
converted to int8 TFLite and run by TFLM, not trained) of random search, 10
networks per generation, on 400 demo sessions, and after each generation times
the checkpoint the search writes. Beside it, in the same run, it times writing
what the checkpoint held before this change (every evaluated network's state
with its weights and deployed flatbuffer, plus the population), built from the
same networks. Prints both at the reported network counts.
"""
import argparse
import os
import pickle
import tempfile
import time

import benchmark_setup  # noqa: E402,F401  (the project and the tests' helpers on the path)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from hwnas.data import idx as data_lib  # noqa: E402
from hwnas.common.quiet import quiet_tensorflow_logs
from hwnas.common.files import write_atomically  # noqa: E402
from library_nas import NAS  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", type=int, default=1000)
    parser.add_argument("--report", type=int, nargs="+", default=[100, 1000])
    arguments = parser.parse_args()
    quiet_tensorflow_logs()
    images = data_lib.read_idx3(data_lib.DEFAULT_IMAGES_PATH)[:400]
    labels = data_lib.read_idx1(data_lib.DEFAULT_LABELS_PATH)[:400]
    folder = tempfile.mkdtemp(prefix="benchmark_checkpoint_")
    X, y = data_lib.preprocess_data(images, labels)
    from sklearn.model_selection import train_test_split
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.1, stratify=y, random_state=0)
    folds = data_lib.fold_index(X_train, y_train, 2)
    n_classes = int(labels.max()) + 1
    data = data_lib.SessionData(X_train, data_lib.one_hot(y_train, n_classes), X_test, data_lib.one_hot(y_test, n_classes))
    per_generation = 10
    nas = NAS(run_dir=os.path.join(folder, "run"), preloaded_data=data, is_train_proxy=False,
              search_strategy="random", population_size=per_generation, n_child=per_generation,
              n_generations=arguments.networks // per_generation - 1, num_selected_folds=1,
              params_thr=20_000, flops_thr=2_000_000, flash_thr=32_000, ram_thr=16_000, max_tens_thr=16_000)
    measured = {}
    save_checkpoint = nas.search.save_checkpoint

    def timed_save_checkpoint(population):
        start = time.perf_counter()
        save_checkpoint(population)
        new_seconds = time.perf_counter() - start
        n = nas.n_evaluated
        if n in arguments.report:
            # What the checkpoint held before: every network's full state, and the population's.
            old_state = {"population": [network.to_state() for network in population],
                         "absolute_best": nas.absolute_best.to_state(),
                         "evaluated_keys": sorted(nas.evaluated_keys),
                         "evaluated_results": {key: dict(earlier, state=nas.records.load_network(
                             earlier.child_id).state) for key, earlier in nas.search.trials.results.items()}}
            old_path = os.path.join(folder, "old_checkpoint.pkl")
            start = time.perf_counter()
            write_atomically(old_path, pickle.dumps(old_state))
            old_seconds = time.perf_counter() - start
            measured[n] = (new_seconds, os.path.getsize(nas.records.checkpoint_path), old_seconds, os.path.getsize(old_path))
        return None

    nas.search.save_checkpoint = timed_save_checkpoint
    start = time.perf_counter()
    nas.run_NAS(folds)
    print(f"\n{nas.n_evaluated} networks in {time.perf_counter() - start:.0f} s (dry run); run folder {folder}")
    for n, (new_seconds, new_bytes, old_seconds, old_bytes) in sorted(measured.items()):
        print(f"after {n:5d} networks: checkpoint now {new_seconds * 1000:7.1f} ms, {new_bytes / 1024:8.1f} KiB;"
              f" every network inside (before) {old_seconds * 1000:7.1f} ms, {old_bytes / 1024:8.1f} KiB;"
              f" {old_bytes / new_bytes:.0f}x the bytes")


if __name__ == "__main__":
    main()
