"""Benchmark: seconds per network and peak memory as the data set grows, with and without the data budget.

Makes data sets of 5k, 20k, 60k and 120k sessions by tiling the USTC-TFC2016 benign set of data/
(6,313 real sessions, each repeated; the labels with them): right for time and memory, not for
accuracy (a tiled session is in the training and the validation parts at once). Each set is loaded
as B01_NAS.py loads it (the sessions kept as bytes), split (a tenth for test) and folded (5 folds);
the same networks (the smart start and random valid ones of the default search space, seeds fixed)
are evaluated as a search evaluates its candidates (2 of 5 folds, 2 worker processes with one thread
each, the data shared between them), with max_search_sessions (the budget) and with every session.
Prints, per size and budget: seconds per network (wall time over the networks, 2 at once), where a
network's seconds go (hwnas.network.training's and hwnas.network.net's phases, summed over its folds), and the
peak resident memory (VmHWM) of the driver process and of the largest worker process.

    python tests/benchmarks/benchmark_scale.py [--sizes 5000 20000 60000 120000] [--networks 8]
        [--budget 2000] [--epochs 15] [--unbudgeted-networks 4] [--unbudgeted-epochs 2]

Without the budget a network trains on every session, so those runs use fewer networks and epochs
(the flags above): their seconds are per network at those epochs, given to show how they grow.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import benchmark_setup  # noqa: F401  (the project and the tests' helpers on the path)

import numpy as np  # noqa: E402

from hwnas.common.quiet import quiet_native_output, quiet_tensorflow_logs  # noqa: E402

with quiet_native_output():
    from hwnas.data import idx as data_lib  # noqa: E402
    from hwnas.data import samples  # noqa: E402
    from hwnas.evaluation.evaluators import make_evaluator  # noqa: E402
    from study_data_budget import networks_and_tasks  # noqa: E402
quiet_tensorflow_logs()

SOURCE = ("data/ustc_benign_l7_images.idx3.gz", "data/ustc_benign_l7_labels.idx1.gz")
PHASES = ("building", "tracing", "training", "predicting", "keras_flops", "conversion", "tflm")


def tiled_files(n_sessions, folder):
    """An IDX pair of n_sessions made by tiling the source set (whole copies, then a stratified-free cut)."""
    images = data_lib.read_idx3(os.path.join(benchmark_setup.PROJECT_DIR, SOURCE[0]))
    labels = data_lib.read_idx1(os.path.join(benchmark_setup.PROJECT_DIR, SOURCE[1]))
    repeats = -(-n_sessions // len(images))
    order = np.random.default_rng(0).permutation(len(images) * repeats)[:n_sessions]
    paths = (os.path.join(folder, f"tiled_{n_sessions}.idx3"), os.path.join(folder, f"tiled_{n_sessions}.idx1"))
    for path, array in zip(paths, (np.tile(images, (repeats, 1, 1))[order], np.tile(labels, repeats)[order])):
        with open(path, "wb") as idx_file:
            idx_file.write(data_lib.idx_bytes(array))
    return paths


def peak_resident_megabytes(pid="self"):
    """VmHWM of a process (its peak resident memory), in MiB; None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None


class WorkerPeaks:
    """Polls the peak resident memory of this process's children (the worker processes), keeping the largest."""

    def __init__(self, interval_s=0.5):
        self.largest, self.interval_s = 0.0, interval_s
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self):
        while not self.stopping.wait(self.interval_s):
            try:
                children = open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()
            except OSError:
                children = []
            for pid in children:
                self.largest = max(self.largest, peak_resident_megabytes(pid) or 0.0)

    def stop(self):
        self.stopping.set()
        self.thread.join()
        return self.largest


def measure(paths, budget, n_networks, epochs):
    """(seconds per network, median phase seconds per network, driver peak MiB, largest worker peak MiB, sizes)."""
    X_train, y_train, X_test, y_test = data_lib.load_and_preprocess_data(None, 0.1, images_path=paths[0],
                                                                         labels_path=paths[1], keep_bytes=True)
    folds = data_lib.fold_index(X_train, y_train, 5, seed=0)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    data = data_lib.SessionData(X_train, data_lib.one_hot(y_train, n_classes), X_test, data_lib.one_hot(y_test, n_classes))
    with tempfile.TemporaryDirectory() as run_dir:
        _, tasks = networks_and_tasks(data, n_networks, run_dir)
    for task in tasks.values():
        task.train_settings["epochs"] = epochs
    search_data = samples.test_sample(data, budget, 0)
    sampled = samples.fold_samples(folds, y_train, budget, 0)
    peaks = WorkerPeaks()
    started = time.perf_counter()
    evaluator = make_evaluator("local", search_data, sampled, 2, 1)
    phases = []
    try:
        for _, result in evaluator.evaluate_all(tasks):
            phases.append((result.state.phase_seconds if result.state is not None else None) or {})
    finally:
        evaluator.close()
    seconds = (time.perf_counter() - started) / len(tasks)
    worker_peak = peaks.stop()
    median_phases = {phase: statistics.median(p.get(phase, 0.0) for p in phases) for phase in PHASES}
    return seconds, median_phases, peak_resident_megabytes(), worker_peak, (len(X_train), len(sampled[0][0]))


def one(size, name, budget, n_networks, epochs):
    """Measures one size and configuration in this process (its driver peak is its own); prints a JSON line."""
    with tempfile.TemporaryDirectory() as folder:
        paths = tiled_files(size, folder)
        seconds, phases, driver_peak, worker_peak, (n_train, n_fold_train) = measure(paths, budget, n_networks, epochs)
    print("RESULT " + json.dumps({"size": size, "name": name, "budget": budget, "epochs": epochs, "networks": n_networks,
                                  "fold_train": n_fold_train, "seconds": seconds, "phases": phases,
                                  "driver_peak": driver_peak, "worker_peak": worker_peak}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[5000, 20000, 60000, 120000])
    parser.add_argument("--networks", type=int, default=8)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--unbudgeted-networks", type=int, default=4)
    parser.add_argument("--unbudgeted-epochs", type=int, default=2)
    parser.add_argument("--only", choices=["budget", "all"], default=None, help="one of the two configurations")
    parser.add_argument("--one", nargs=5, default=None, help=argparse.SUPPRESS)  # size name budget networks epochs
    arguments = parser.parse_args()
    if arguments.one:
        size, name, budget, n_networks, epochs = arguments.one
        one(int(size), name, None if budget == "None" else int(budget), int(n_networks), int(epochs))
        return
    configurations = [("budget", arguments.budget, arguments.networks, arguments.epochs),
                      ("all", None, arguments.unbudgeted_networks, arguments.unbudgeted_epochs)]
    rows = []
    for size in arguments.sizes:
        for name, budget, n_networks, epochs in configurations:
            if arguments.only and name != arguments.only:
                continue
            # each in a process of its own: its peak memory is its own
            result = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", str(size), name, str(budget),
                                     str(n_networks), str(epochs)], capture_output=True, text=True)
            lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
            if result.returncode != 0 or not lines:
                sys.exit(f"{size} {name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
            row = json.loads(lines[-1][len("RESULT "):])
            rows.append(row)
            print(f"{size} sessions, {name}: {row['seconds']:.1f} s per network ({n_networks} networks, {epochs} epochs, "
                  f"{row['fold_train']} training sessions per fold), driver peak {row['driver_peak']:.0f} MiB, largest "
                  f"worker {row['worker_peak']:.0f} MiB; phases " + ", ".join(f"{k} {v:.2f}" for k, v in row["phases"].items()),
                  flush=True)
    print("\n| sessions | max_search_sessions | epochs | networks | trains on per fold | s per network | "
          + " | ".join(PHASES) + " | driver peak MiB | largest worker peak MiB |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in PHASES) + " | ---: | ---: |")
    for row in rows:
        budget_text = str(row["budget"]) if row["budget"] is not None else "None (all)"
        print(f"| {row['size']} | {budget_text} | {row['epochs']} | {row['networks']} | {row['fold_train']} | "
              f"{row['seconds']:.1f} | " + " | ".join(f"{row['phases'][p]:.2f}" for p in PHASES)
              + f" | {row['driver_peak']:.0f} | {row['worker_peak']:.0f} |")


if __name__ == "__main__":
    main()
