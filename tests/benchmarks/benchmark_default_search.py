"""Benchmark: the default search of one checkout beside another's, on the same data, one after the other.

Runs B01_NAS.py as a user runs it (its defaults, but the data, the seed and the time budget) from
each checkout given (this one, and e.g. a git worktree of an earlier commit), one at a time on an
otherwise idle machine, and prints side by side: networks evaluated and trained, networks per hour
(trained over the search's seconds), the best validation accuracy, the saved model's test accuracy
as Keras and as int8 run by TFLM, its flash and arena, the search's seconds, the final training's,
and the whole run's wall clock against the time budget.

    python tests/benchmarks/benchmark_default_search.py --data ustc --minutes 15 [--seed 0]
        [--checkout before=/tmp/before_worktree] [--checkout now=.] [--tile 2] [--out-dir logs/benchmark_default_search]
        [--extra n_generations=100000]

--tile N first holds out a stratified tenth of the sessions as the test pair (test_images_path), then
repeats every other session N times: a larger set for time whose test accuracies stay honest (no test
session has a twin in training; a tiled session can still sit in a fold's training and validation
parts at once, which flatters validation scores). Without --minutes the run keeps B01_NAS.py's own
n_generations (the default run); with it, n_generations=100000 so that the budget ends the search.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

import benchmark_setup  # noqa: F401  (the project and the tests' helpers on the path)

import numpy as np  # noqa: E402

from hwnas.data import idx as data_lib  # noqa: E402

PROJECT_DIR = benchmark_setup.PROJECT_DIR
DATASETS = {"demo": ("data/demo_sessions.idx3", "data/demo_labels.idx1"),
            "mnist": ("data/mnist5k_images.idx3", "data/mnist5k_labels.idx1"),
            "ustc": ("data/ustc_benign_l7_images.idx3.gz", "data/ustc_benign_l7_labels.idx1.gz")}


def data_files(name, tile, folder):
    """(images, labels, test images, test labels) paths, absolute: the data set's (no test pair), or a
    held-out test tenth and the other sessions repeated tile times."""
    images, labels = (os.path.join(PROJECT_DIR, path) for path in DATASETS[name])
    if tile == 1:
        return images, labels, None, None
    paths = [os.path.join(folder, f"{name}_x{tile}{part}.idx{n}") for part in ("", "_test") for n in (3, 1)]
    if not all(map(os.path.exists, paths)):
        from sklearn.model_selection import train_test_split
        X, y = data_lib.read_idx3(images), data_lib.read_idx1(labels)
        train, test = train_test_split(np.arange(len(y)), test_size=0.1, stratify=y, random_state=0)
        os.makedirs(folder, exist_ok=True)
        arrays = (np.tile(X[train], (tile, 1, 1)), np.tile(y[train], tile), X[test], y[test])
        for path, array in zip(paths, arrays):
            with open(path, "wb") as idx_file:
                idx_file.write(data_lib.idx_bytes(array))
    return tuple(paths)


def run(checkout, name, files, arguments, out_dir):
    """Runs B01_NAS.py of checkout (or reads the run when it finished before); returns its row."""
    run_name = f"{name}_{arguments.data}_x{arguments.tile}_seed{arguments.seed}_{arguments.minutes or 'default'}"
    logs_dir = os.path.join(out_dir, "runs")
    existing = glob.glob(os.path.join(logs_dir, f"*_{run_name}", "summary.json"))
    wall_path = os.path.join(logs_dir, f"{run_name}.wall_seconds")
    if not existing or not os.path.exists(wall_path):
        images, labels, test_images, test_labels = files
        test_pair = [f"test_images_path={test_images}", f"test_labels_path={test_labels}"] if test_images else []
        command = [sys.executable, os.path.join(checkout, "B01_NAS.py"), f"images_path={images}",
                   f"labels_path={labels}", *test_pair, f"seed={arguments.seed}", f"logs_dir={logs_dir}",
                   f"run_name={run_name}", *arguments.extra]
        if arguments.minutes:
            command += [f"time_budget_s={int(arguments.minutes * 60)}", "n_generations=100000"]
        print(f"{name}: {' '.join(command[2:])}", flush=True)
        started = time.perf_counter()
        result = subprocess.run(command, cwd=checkout, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"{name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        with open(wall_path, "w") as wall_file:
            wall_file.write(f"{wall}\n")
    summary_path = sorted(glob.glob(os.path.join(logs_dir, f"*_{run_name}", "summary.json")))[-1]
    summary = json.load(open(summary_path))
    best = summary["best"] or {}
    final = summary.get("final_training") or {}
    deployed = best.get("deployed_measured") or {}
    search_seconds = summary["elapsed_seconds"]
    return {"name": name, "evaluated": summary["networks_evaluated"], "trained": summary["networks_trained"],
            "per_hour": summary["networks_trained"] * 3600 / search_seconds, "search_s": search_seconds,
            "best_val": final.get("search_val_accuracy") or (best.get("val_metrics") or {}).get("accuracy"),
            "test": (best.get("test_metrics") or {}).get("accuracy"), "int8": deployed.get("test_accuracy"),
            "flash": deployed.get("flash_bytes"), "arena": deployed.get("arena_bytes"),
            "final_s": final.get("train_seconds"), "wall_s": float(open(wall_path).read()),
            "run_dir": os.path.dirname(summary_path), "architecture": best.get("child_id")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=list(DATASETS), default="ustc")
    parser.add_argument("--tile", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkout", action="append", default=None, help="NAME=DIR, in the order to run them")
    parser.add_argument("--extra", nargs="*", default=[], help="more B01_NAS.py overrides, for every checkout")
    parser.add_argument("--out-dir", default=os.path.join(PROJECT_DIR, "logs", "benchmark_default_search"))
    arguments = parser.parse_args()
    checkouts = [tuple(text.split("=", 1)) for text in (arguments.checkout or [f"now={PROJECT_DIR}"])]
    arguments.out_dir = os.path.abspath(arguments.out_dir)  # each checkout runs in its own folder
    files = data_files(arguments.data, arguments.tile, os.path.join(arguments.out_dir, "data"))
    rows = [run(os.path.abspath(directory), name, files, arguments, arguments.out_dir)
            for name, directory in checkouts]
    budget = f", time_budget_s={int(arguments.minutes * 60)}" if arguments.minutes else ""
    print(f"\n{arguments.data} x{arguments.tile}, seed {arguments.seed}{budget}:\n")
    print("| checkout | networks evaluated | trained | networks/h | best val | test | int8 (TFLM) | flash B | arena B | "
          "search s | final training s | wall s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        def number(value, digits=4):
            return "-" if value is None else f"{value:.{digits}f}"
        print(f"| {row['name']} | {row['evaluated']} | {row['trained']} | {row['per_hour']:.0f} | {number(row['best_val'])} | "
              f"{number(row['test'])} | {number(row['int8'])} | {row['flash']} | {row['arena']} | {row['search_s']:.0f} | "
              f"{number(row['final_s'], 0)} | {row['wall_s']:.0f} |")
    for row in rows:
        print(f"{row['name']}: {row['run_dir']} (best {row['architecture']})")


if __name__ == "__main__":
    main()
