"""Benchmark of what the network sees: input encodings and lengths, on three data sets.

Two parts, each cached under logs/benchmark_encoding/ so an interrupted benchmark
continues where it stopped; every run rewrites the report (--out) from all cached results.

  architectures  The same hand-made architectures under each input encoding
                 (bytes / 255, or a learned byte table of 4, 8 or 16 values per
                 byte) and a few input lengths, each trained on one fold of the
                 training split (hwnas.evaluation.evaluate.evaluate, the search's own
                 evaluation: early stopping on the fold's validation part) and
                 measured as the int8 TFLite model TFLM runs: test accuracy of the
                 Keras model and of the deployed one, parameters, flash, arena,
                 latency on the STM32F746 profile. Data: the demo traffic, 5,000 MNIST
                 digits and the USTC-TFC2016 benign L7 payloads (data/), each with a
                 stratified 90/10 test split per seed; a 200-tree random forest on
                 the same split's bytes / 255 is the reference.
  searches       B01_NAS.py with a time budget on one data set, once with the input
                 fixed as it was (every byte / 255) and once with each configuration
                 of SEARCHES, per seed, side by side: the best network's test accuracy
                 (Keras and deployed int8), flash, arena, networks trained; the random
                 forest on the run's own split.

    python tests/benchmarks/benchmark_encoding.py architectures [--seeds 0 1 2] [--datasets demo mnist ustc]
    python tests/benchmarks/benchmark_encoding.py searches [--seeds 0] [--dataset ustc] [--minutes 30]
    python tests/benchmarks/benchmark_encoding.py report        # only rewrite --out from the cache
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

import benchmark_setup  # noqa: E402  (the project and the tests' helpers on the path)

PROJECT_DIR = benchmark_setup.PROJECT_DIR


from hwnas.data import idx as data_lib  # noqa: E402
from hwnas.run import report as report_lib  # noqa: E402

CACHE_DIR = os.path.join(PROJECT_DIR, "logs", "benchmark_encoding")
NOTES_HEADING = "## What it means"
DATASETS = {  # name -> (images, labels, what it is)
    "demo": ("data/demo_sessions.idx3", "data/demo_labels.idx1", "demo traffic, 6 classes"),
    "mnist": ("data/mnist5k_images.idx3", "data/mnist5k_labels.idx1", "5,000 MNIST digits, 10 classes"),
    "ustc": ("data/ustc_benign_l7_images.idx3.gz", "data/ustc_benign_l7_labels.idx1.gz",
             "USTC-TFC2016 benign, L7 payload, 10 classes"),
}
SMART_START = {"head": "flatten", "blocks": [
    dict(filters=16, kernel_size=5, stride=2, padding="same", activation="relu", pooling="max", pool_size=2),
    dict(filters=32, kernel_size=3, stride=1, padding="same", activation="relu", pooling="max", pool_size=2),
    dict(filters=32, kernel_size=3, stride=1, padding="same", activation="relu", pooling="max", pool_size=2)]}
SMALL_GAP = {"head": "gap", "blocks": [
    dict(filters=16, kernel_size=7, stride=2, padding="same", activation="relu", pooling="max", pool_size=2),
    dict(filters=32, kernel_size=5, stride=1, padding="same", activation="relu", pooling="max", pool_size=2),
    dict(filters=64, kernel_size=3, stride=1, padding="same", activation="relu", pooling="max", pool_size=2)]}
ARCHITECTURES = {"smart start": SMART_START, "small GAP": SMALL_GAP}
# (architecture, encoding, embedding size, input length or None for all the data has)
CONFIGURATIONS = ([("smart start", "scaled", None, length) for length in (None, 384, 128)]
                  + [("smart start", "embedding", 8, length) for length in (None, 384, 128)]
                  + [("smart start", "embedding", dim, None) for dim in (4, 16)]
                  + [("small GAP", "scaled", None, None), ("small GAP", "embedding", 8, None)])
TRAIN_SETTINGS = {"epochs": 15, "batch_size": 64, "patience": 5, "learning_rate": 1e-3, "verbose": 0}
# The searches compared: name -> B01_NAS.py overrides (beside the data, seed, budget and run name).
SEARCHES = {
    "before: bytes / 255, every byte": ['input_encoding_choices=["scaled"]', "input_length_choices=None"],
    "default: byte table or bytes / 255, every byte": [
        'input_encoding_choices=["embedding","scaled"]', "embedding_dim_choices=[4,8,16]", "input_length_choices=None"],
    "byte table or bytes / 255, 784/512/256/128 bytes": [
        'input_encoding_choices=["embedding","scaled"]', "embedding_dim_choices=[4,8,16]",
        "input_length_choices=[784,512,256,128]"],
}


def config_name(config):
    architecture, encoding, dim, length = config
    input_text = "bytes / 255" if encoding == "scaled" else f"byte table x{dim}"
    return f"{architecture}, {input_text}, {length or 'all'} bytes"


def load(dataset, seed):
    """(SessionData, folds, integer labels of train and test) of a data set's 90/10 split for seed."""
    images, labels, _ = DATASETS[dataset]
    X_train, y_train, X_test, y_test = data_lib.load_and_preprocess_data(
        None, 0.1, images_path=os.path.join(PROJECT_DIR, images), labels_path=os.path.join(PROJECT_DIR, labels),
        seed=seed)
    folds = data_lib.fold_index(X_train, y_train, 5, seed=seed)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    data = data_lib.SessionData(X_train, data_lib.one_hot(y_train, n_classes), X_test, data_lib.one_hot(y_test, n_classes))
    return data, folds, y_train, y_test


def random_forest_accuracy(dataset, seed):
    """Test accuracy of a 200-tree random forest on the seed's split, bytes / 255 (cached)."""
    cache = _read_cache("forest")
    key = f"{dataset}/{seed}"
    if key not in cache:
        from sklearn.ensemble import RandomForestClassifier
        data, _, y_train, y_test = load(dataset, seed)
        forest = RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=2)
        forest.fit(data.X_train[..., 0], y_train)
        cache[key] = float((forest.predict(data.X_test[..., 0]) == y_test).mean())
        _append_cache("forest", {"key": key, "value": cache[key]})
    return cache[key]


def run_architectures(datasets, seeds):
    from hwnas.devices import TargetDevice
    from hwnas.evaluation.evaluate import Status, Task
    from hwnas.evaluation.evaluators import make_evaluator
    from hwnas.network.net import Net
    device = TargetDevice.named("STM32F746")
    done = _read_cache("architectures")
    for dataset in datasets:
        for seed in seeds:
            random_forest_accuracy(dataset, seed)
            todo = {index: config for index, config in enumerate(CONFIGURATIONS)
                    if f"{dataset}/{seed}/{config_name(config)}" not in done}
            if not todo:
                continue
            data, folds, _, _ = load(dataset, seed)
            tasks = {}
            for index, (architecture, encoding, dim, length) in todo.items():
                arch = dict(ARCHITECTURES[architecture],
                            input={"encoding": encoding, "embedding_dim": dim, "length": length})
                tasks[index] = Task(arch, dict(TRAIN_SETTINGS, seed=1000 * seed + index), "int8", False, True, 1)
            evaluator = make_evaluator("local", data, folds, n_workers=2, threads_per_worker=1)
            try:
                for index, result in evaluator.evaluate_all(tasks):
                    config = CONFIGURATIONS[index]
                    key = f"{dataset}/{seed}/{config_name(config)}"
                    if result.status != Status.OK:
                        print(f"{key}: {result.status} {result.reason}", flush=True)
                        continue
                    state = result.state
                    net = Net.from_state(state, None, data)
                    n_params, _, flops, _, _ = net.hw_measures()
                    row = {"key": key, "dataset": dataset, "seed": seed, "config": config_name(config),
                           "test_accuracy": state.test_metrics["accuracy"],
                           "int8_test_accuracy": state.deployed["test_accuracy"],
                           "val_accuracy": state.val_score, "n_params": n_params, "flops": flops,
                           "flash_bytes": state.deployed["flash_bytes"],
                           "arena_bytes": state.deployed["arena_bytes"],
                           "latency_ms": device.latency_ms(net), "epochs": state.epochs_trained,
                           "train_seconds": state.train_seconds}
                    done[key] = row
                    _append_cache("architectures", row)
                    print(f"{key}: test {row['test_accuracy']:.4f} int8 {row['int8_test_accuracy']:.4f} "
                          f"flash {row['flash_bytes']} arena {row['arena_bytes']} ({row['train_seconds']:.0f} s)",
                          flush=True)
            finally:
                evaluator.close()


def run_searches(dataset, seeds, minutes, searches):
    images, labels, _ = DATASETS[dataset]
    for seed in seeds:
        random_forest_accuracy(dataset, seed)
        for name in searches:
            run_name = f"{dataset}_{_slug(name)}_seed{seed}"
            logs_dir = os.path.join(CACHE_DIR, "searches")
            finished = [folder for folder in glob.glob(os.path.join(logs_dir, f"*_{run_name}"))
                        if os.path.exists(os.path.join(folder, "benchmark_done.json"))]
            if finished:
                continue
            command = [sys.executable, os.path.join(PROJECT_DIR, "B01_NAS.py"), f"images_path={images}",
                       f"labels_path={labels}", f"seed={seed}", f"time_budget_s={60 * minutes}",
                       "n_generations=1000", f"logs_dir={logs_dir}", f"run_name={run_name}", *SEARCHES[name]]
            print(" ".join(command[1:]), flush=True)
            start = time.time()
            result = subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, text=True)
            if result.returncode != 0:
                print(result.stdout[-3000:], result.stderr[-3000:])
                raise SystemExit(f"{run_name} failed")
            (run_dir,) = [folder for folder in glob.glob(os.path.join(logs_dir, f"*_{run_name}"))
                          if not os.path.exists(os.path.join(folder, "benchmark_done.json"))]
            with open(os.path.join(run_dir, "benchmark_done.json"), "w") as marker:
                json.dump({"wall_seconds": time.time() - start, "search": name, "seed": seed, "dataset": dataset}, marker)


def search_rows():
    rows = []
    for marker_path in sorted(glob.glob(os.path.join(CACHE_DIR, "searches", "*", "benchmark_done.json"))):
        run_dir = os.path.dirname(marker_path)
        marker = json.load(open(marker_path))
        summary = json.load(open(os.path.join(run_dir, "summary.json")))
        best = summary["best"]
        records = {row["child_id"]: row for row in report_lib.read_records(run_dir)}
        rows.append({"search": marker["search"], "seed": marker["seed"], "dataset": marker["dataset"],
                     "run": os.path.basename(run_dir), "networks": summary["networks_trained"],
                     "wall_minutes": marker["wall_seconds"] / 60, "val_accuracy": best["val_metrics"]["accuracy"],
                     "test_accuracy": best["test_metrics"]["accuracy"],
                     "int8_test_accuracy": best["deployed_measured"]["test_accuracy"],
                     "flash_bytes": best["deployed_measured"]["flash_bytes"],
                     "arena_bytes": best["deployed_measured"]["arena_bytes"],
                     "architecture": records[best["child_id"]]["architecture_text"],
                     "forest": random_forest_accuracy(marker["dataset"], marker["seed"])})
    return rows


def report(path):
    lines = ["# Benchmark: what the network sees (input encoding and length)", "",
             "Made by `python tests/benchmarks/benchmark_encoding.py` (module docstring: what each part does); "
             "every figure below is read from its cache, `logs/benchmark_encoding/`.", ""]
    rows = list(_read_cache("architectures").values())
    if rows:
        lines += ["## The same architectures under each input", "",
                  "Median [min, max] over the seeds; test accuracy of the Keras model and of the int8 model run "
                  "by TFLM; flash and arena measured on the int8 model; latency estimated on the STM32F746 "
                  "profile (hwnas.devices).", ""]
        for dataset in DATASETS:
            subset = [row for row in rows if row["dataset"] == dataset]
            if not subset:
                continue
            seeds = sorted({row["seed"] for row in subset})
            forest = [random_forest_accuracy(dataset, seed) for seed in seeds]
            lines += [f"### {DATASETS[dataset][2]} (seeds {', '.join(map(str, seeds))})", "",
                      f"200-tree random forest on the same splits: {_spread(forest)}", "",
                      "| architecture, input | test accuracy | int8 (TFLM) | params | flash B | arena B | "
                      "latency ms | epochs |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
            for config in CONFIGURATIONS:
                cells = [row for row in subset if row["config"] == config_name(config)]
                if not cells:
                    continue
                lines.append(f"| {config_name(config)} | {_spread([c['test_accuracy'] for c in cells])} | "
                             f"{_spread([c['int8_test_accuracy'] for c in cells])} | {cells[0]['n_params']} | "
                             f"{cells[0]['flash_bytes']} | {cells[0]['arena_bytes']} | "
                             f"{cells[0]['latency_ms']:.2f} | {statistics.median(c['epochs'] for c in cells):g} |")
            lines.append("")
    searches = search_rows()
    if searches:
        lines += ["## Searches with and without the input searched", "",
                  "`B01_NAS.py` with the defaults but for the data, the seed, `time_budget_s` and the input "
                  "parameters below; the best network (by validation accuracy), measured.", "",
                  "| data | seed | search | networks | best val | test | int8 test | flash B | arena B | "
                  "forest | best network |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for row in sorted(searches, key=lambda r: (r["dataset"], r["seed"], r["search"])):
            lines.append(f"| {row['dataset']} | {row['seed']} | {row['search']} | {row['networks']} | "
                         f"{row['val_accuracy']:.4f} | {row['test_accuracy']:.4f} | {row['int8_test_accuracy']:.4f} | "
                         f"{row['flash_bytes']} | {row['arena_bytes']} | {row['forest']:.4f} | `{escaped(row['architecture'])}` |")
        lines.append("")
    # What the figures mean is written by hand below NOTES_HEADING; a new report keeps it.
    notes = ""
    if os.path.exists(path):
        previous = open(path).read()
        if NOTES_HEADING in previous:
            notes = previous[previous.index(NOTES_HEADING):]
    with open(path, "w") as report_file:
        report_file.write("\n".join(lines) + ("\n" + notes if notes else ""))
    print(f"wrote {path}")


def escaped(architecture_text):
    """The architecture text inside a markdown table cell: its block separators are not column breaks."""
    return architecture_text.replace("|", "\\|")


def _spread(values):
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.median(values):.4f} [{min(values):.4f}, {max(values):.4f}]"


def _slug(text):
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")[:40]


def _read_cache(name):
    path = os.path.join(CACHE_DIR, f"{name}.jsonl")
    if not os.path.exists(path):
        return {}
    with open(path) as cache_file:
        entries = [json.loads(line) for line in cache_file if line.strip()]
    return {entry["key"]: entry if "value" not in entry else entry["value"] for entry in entries}


def _append_cache(name, entry):
    os.makedirs(CACHE_DIR, exist_ok=True)
    with open(os.path.join(CACHE_DIR, f"{name}.jsonl"), "a") as cache_file:
        cache_file.write(json.dumps(entry) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["architectures", "searches", "report"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--dataset", default="ustc", choices=list(DATASETS), help="the searches' data set")
    parser.add_argument("--minutes", type=float, default=30, help="each search's time_budget_s, in minutes")
    parser.add_argument("--searches", nargs="+", default=list(SEARCHES), choices=list(SEARCHES))
    parser.add_argument("--out", default=os.path.join(PROJECT_DIR, "docs", "benchmark_encoding.md"))
    arguments = parser.parse_args()
    if arguments.part == "architectures":
        run_architectures(arguments.datasets, arguments.seeds)
    elif arguments.part == "searches":
        run_searches(arguments.dataset, arguments.seeds, arguments.minutes, arguments.searches)
    report(arguments.out)


if __name__ == "__main__":
    main()
