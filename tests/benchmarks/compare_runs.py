"""Same runs, same results: the tiny runs of B01_NAS.py's defaults and of the three strategies (and of
the GA with inheritance and a predictor), with and without successive halving, on one worker and two,
made by one checkout and compared with another's.

A change to how the search is built (not to what it does) must leave every result as it was:
children.csv and pareto.csv equal but for the timing columns, the saved models' weights, their
deployed flatbuffers and C headers equal byte for byte. Columns (and record fields) that only the
newer checkout writes are listed, not counted as differences: they record something new.

    python tests/benchmarks/compare_runs.py run OUT_DIR          # this checkout's 20 runs into OUT_DIR
        [--strategies ga_levers ...]                            # or only some
    python tests/benchmarks/compare_runs.py compare DIR_A DIR_B  # exit 1 and each difference, or "identical"

Run `run` in each checkout (a git worktree of the other commit), then `compare`.
"""
import argparse
import csv
import glob
import json
import os
import subprocess
import sys

import benchmark_setup  # noqa: E402  (the project and the tests' helpers on the path)

PROJECT_DIR = benchmark_setup.PROJECT_DIR
TIMING_COLUMNS = {"train_seconds", "elapsed_seconds", "wall_seconds", "phase_seconds"}
TINY = ["test_size=0.2", "num_folds=3", "num_selected_folds=2", "n_generations=2", "n_child=3", "epochs=2",
        "max_depth=4"]
STRATEGIES = {"default": ["population_size=3", "n_elites=2"],  # B01_NAS.py's defaults, population cut to fit n_child
              "mutation": ["search_strategy=mutation"],
              "ga": ["search_strategy=ga", "population_size=3", "n_elites=2", "smart_start=False",
                     'objectives=["val_accuracy","flash_size"]', "save_pareto_models=True"],
              "random": ["search_strategy=random", "population_size=3"],
              # inheritance and a predictor warm after 3 networks, so the second generation uses both
              "ga_levers": ["search_strategy=ga", "population_size=3", "n_elites=2", "smart_start=False",
                            "inherit_weights=True", "proposal_pool=4", "predictor_warmup=3"]}
HALVING = {"full": [], "halving": ["halving_eta=2", "min_epochs=1"]}


def run_all(out_dir, strategies):

    import numpy as np
    try:
        from hwnas.data import idx as data_lib
    except ImportError:  # a checkout from before the house in folders
        import library_load_and_split_data as data_lib
    os.makedirs(out_dir, exist_ok=True)
    images = data_lib.read_idx3(os.path.join(PROJECT_DIR, "data", "demo_sessions.idx3"))[:450]
    labels = data_lib.read_idx1(os.path.join(PROJECT_DIR, "data", "demo_labels.idx1"))[:450]
    for name, array in (("sessions.idx3", images), ("labels.idx1", labels)):
        with open(os.path.join(out_dir, name), "wb") as file:
            file.write(data_lib.idx_bytes(np.asarray(array)))
    for strategy in strategies:
        strategy_overrides = STRATEGIES[strategy]
        for budget, budget_overrides in HALVING.items():
            for n_workers in (1, 2):
                run_name = f"{strategy}_{budget}_{n_workers}w"
                if glob.glob(os.path.join(out_dir, "runs", f"*_{run_name}")):
                    continue
                command = [sys.executable, os.path.join(PROJECT_DIR, "B01_NAS.py"),
                           f"images_path={os.path.join(out_dir, 'sessions.idx3')}",
                           f"labels_path={os.path.join(out_dir, 'labels.idx1')}", f"logs_dir={os.path.join(out_dir, 'runs')}",
                           f"run_name={run_name}", f"n_workers={n_workers}", *TINY, *strategy_overrides, *budget_overrides]
                result = subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, text=True)
                if result.returncode != 0:
                    sys.exit(f"{run_name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
                print(f"{run_name}: done", flush=True)


def rows(path):
    with open(path, newline="") as csv_file:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(csv_file)]


def common_fields(records_a, records_b, added):
    """records_a and records_b cut to the fields both have; the fields only in b go into added."""
    keys_a = set().union(*(record.keys() for record in records_a)) if records_a else set()
    keys_b = set().union(*(record.keys() for record in records_b)) if records_b else set()
    added.update(keys_b - keys_a)
    common = keys_a & keys_b
    return ([{k: v for k, v in r.items() if k in common} for r in records_a],
            [{k: v for k, v in r.items() if k in common} for r in records_b])


def without_timings(record):
    """A .json record without its timing fields, at any depth (the final training's are nested)."""
    if isinstance(record, dict):
        return {k: without_timings(v) for k, v in record.items() if k not in TIMING_COLUMNS}
    return record


def model_files(run_dir):
    """{relative path: content to compare} of the saved models: weights as arrays, the rest as bytes,
    the .json records without timing fields."""
    import keras
    import numpy as np
    contents = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "models", "**", "*"), recursive=True)):
        relative = os.path.relpath(path, run_dir)
        if os.path.isdir(path):
            continue
        if path.endswith(".keras"):
            contents[relative] = [np.asarray(w) for w in keras.models.load_model(path).get_weights()]
        elif path.endswith(".json"):
            contents[relative] = without_timings(json.load(open(path)))
        elif path.endswith(".csv"):  # per-class results: by rows, so that a column only one checkout writes is listed
            contents[relative] = rows(path)
        else:
            contents[relative] = open(path, "rb").read()
    return contents


def compare(dir_a, dir_b, added):
    import numpy as np
    differences = []
    runs_a = {os.path.basename(p).split("_", 1)[1]: p for p in glob.glob(os.path.join(dir_a, "runs", "*"))}
    runs_b = {os.path.basename(p).split("_", 1)[1]: p for p in glob.glob(os.path.join(dir_b, "runs", "*"))}
    if set(runs_a) != set(runs_b) or not runs_a:
        return [f"runs differ: {sorted(runs_a)} against {sorted(runs_b)}"]
    for name in sorted(runs_a):
        a, b = runs_a[name], runs_b[name]
        for file_name in ("children.csv", "pareto.csv"):
            rows_a, rows_b = common_fields(rows(os.path.join(a, file_name)), rows(os.path.join(b, file_name)), added)
            if rows_a != rows_b:
                columns = sorted({key for row_a, row_b in zip(rows_a, rows_b) for key in row_a if row_a.get(key) != row_b.get(key)})
                differences.append(f"{name}/{file_name}: {len(rows_a)} and {len(rows_b)} rows; columns differing: {columns}")
        models_a, models_b = model_files(a), model_files(b)
        if set(models_a) != set(models_b):
            differences.append(f"{name}/models: files {sorted(set(models_a) ^ set(models_b))} in one only")
        for path in sorted(set(models_a) & set(models_b)):
            x, y = models_a[path], models_b[path]
            if isinstance(x, dict):
                [x], [y] = common_fields([x], [y], added)
            elif isinstance(x, list) and x and isinstance(x[0], dict):
                x, y = common_fields(x, y, added)
            if isinstance(x, list) and x and isinstance(x[0], dict):
                same = x == y
            else:
                same = (len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y))) if isinstance(x, list) else x == y
            if not same:
                differences.append(f"{name}/{path} differs")
        print(f"{name}: compared", flush=True)
    return differences


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["run", "compare"])
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES),
                        help="run only these (ga_levers needs a checkout with inherit_weights and proposal_pool)")
    arguments = parser.parse_args()
    if arguments.what == "run":
        run_all(arguments.dirs[0], arguments.strategies)
        return
    added = set()
    differences = compare(*arguments.dirs[:2], added)
    if added:
        print(f"fields only the second writes (not compared): {sorted(added)}")
    print("\n".join(differences) if differences else "identical: children.csv and pareto.csv (but timings), models")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
