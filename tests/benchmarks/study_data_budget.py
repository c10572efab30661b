"""Study: does a small sample of the data still pick the right networks? (max_search_sessions)

ranks: the same networks (the smart start and random valid ones of the default search space and
thresholds, seeds fixed) each trained as a search trains a candidate (2 of 5 folds, up to 15 epochs)
with every budget of sessions per fold part (hwnas.data.samples.fold_samples) and with all
of them; per budget, Spearman's correlation of the networks' validation scores with their scores on
all the data (over every network, and over the better half by the full data, where a search spends
its time), how many of the full data's top 5 the budget's top 5 hold, and what the budget's first
choice scores on all the data against the best there. Each network trained on a budget is also scored
on the fold's whole validation part (its fold weights, predicted again), to correlate with its score
on the capped validation sample it was early-stopped on.

validation: is a capped validation sample enough to rank candidates? With 2 folds (validation parts
of half the training split, larger than the caps), the same networks trained on the budget's training
sample and early-stopped on the whole validation part, then scored on stratified samples of 250, 500,
1000 and 2000 of it: Spearman's correlation of each sample's scores with the whole part's.

searches: B01_NAS.py with its defaults but the data, the seed, max_search_sessions and a time budget,
once with the budget and once with every session, at equal wall clock (the same time_budget_s), each
ending with the final training on every training session; the final model's test accuracy (Keras and
int8 on TFLM) side by side, per seed.

    python tests/benchmarks/study_data_budget.py ranks --dataset ustc [--networks 40] [--budgets 1000 2000 4000]
    python tests/benchmarks/study_data_budget.py validation --dataset ustc [--networks 40] [--budgets 2000]
    python tests/benchmarks/study_data_budget.py searches --dataset ustc --seeds 0 1 2 3 4 [--minutes 10]
        [--budgets 2000 none]
    python tests/benchmarks/study_data_budget.py report [--out FILE]      # the tables of docs/data_budget.md

Results are cached under logs/study_data_budget/ (a finished network or search is not run again).
Run it on an otherwise idle machine (the seconds are measured).
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import benchmark_setup  # noqa: F401  (the project and the tests' helpers on the path)

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from hwnas.network.state import NetworkState  # noqa: E402

from hwnas.common.quiet import quiet_native_output, quiet_tensorflow_logs  # noqa: E402

PROJECT_DIR = benchmark_setup.PROJECT_DIR
CACHE_DIR = os.path.join(PROJECT_DIR, "logs", "study_data_budget")
DATASETS = {"mnist": ("data/mnist5k_images.idx3", "data/mnist5k_labels.idx1"),
            "ustc": ("data/ustc_benign_l7_images.idx3.gz", "data/ustc_benign_l7_labels.idx1.gz"),
            "demo": ("data/demo_sessions.idx3", "data/demo_labels.idx1")}
TOP = 5


def budget_name(budget):
    return "all" if budget is None else str(budget)


def parse_budget(text):
    return None if text.lower() in ("none", "all") else int(text)


# ----- ranks -----------------------------------------------------------------------------
def networks_and_tasks(data, n_networks, run_dir):
    """The smart start and n_networks - 1 distinct random valid networks of the default search space
    and thresholds, with the tasks a search gives them (seeds 1..n)."""
    from hwnas.search import settings
    from library_nas import NAS
    settings = {name: settings.DEFAULTS[name] for name in settings.SETTINGS
                if name not in ("max_search_sessions", "final_training", "search_strategy", "inherit_weights",
                                "proposal_pool")}
    nas = NAS(run_dir=run_dir, preloaded_data=data, **settings)
    networks, seen = [nas.space.smart_start_network()], set()
    seen.add(networks[0].architecture_key())
    while len(networks) < n_networks:
        network = nas.space.random_network(nas.max_depth, seen, "a study network")
        seen.add(network.architecture_key())
        networks.append(network)
    tasks = {}
    for index, network in enumerate(networks):
        network.train_settings["seed"] = index + 1
        tasks[index] = nas.search.task_of(network)
    return networks, tasks


def ranks(dataset, n_networks, budgets, n_workers):
    with quiet_native_output():
        from hwnas.data import samples
        from hwnas.evaluation.evaluators import make_evaluator
    quiet_tensorflow_logs()
    data, folds, y_train, _ = benchmark_setup.split_and_folds(*DATASETS[dataset])
    with tempfile.TemporaryDirectory() as run_dir:
        networks, tasks = networks_and_tasks(data, n_networks, run_dir)
    for budget in budgets:
        path = os.path.join(CACHE_DIR, f"ranks_{dataset}_{budget_name(budget)}.json")
        cached = json.load(open(path)) if os.path.exists(path) else {"networks": {}}
        todo = {index: task for index, task in tasks.items() if str(index) not in cached["networks"]}
        search_data = samples.test_sample(data, budget, 0)
        sampled = samples.fold_samples(folds, y_train, budget, 0)
        cached.update(dataset=dataset, budget=budget, train_sessions=len(sampled[0][0]),
                      validation_sessions=len(sampled[0][1]), whole_validation_sessions=len(folds[0][1]))
        if todo:
            evaluator = make_evaluator("local", search_data, sampled, n_workers, 1)
            try:
                for index, result in evaluator.evaluate_all(todo):
                    state = result.state or NetworkState()
                    entry = {"architecture": networks[index].architecture_text(), "status": str(result.status),
                             "val_accuracy": state.val_score, "train_seconds": state.train_seconds,
                             "phase_seconds": state.phase_seconds, "epochs": state.epochs_trained}
                    if result.status == "ok" and budget is not None:
                        entry["whole_val_accuracy"] = sample_accuracy(state, data, [part for _, part in folds])
                    cached["networks"][str(index)] = entry
                    os.makedirs(CACHE_DIR, exist_ok=True)
                    with open(path, "w") as cache_file:
                        json.dump(cached, cache_file, indent=1)
                    print(f"{dataset} budget {budget_name(budget)}: network {index:2d} val {entry['val_accuracy']} "
                          f"whole {entry.get('whole_val_accuracy')} {entry['train_seconds']:.1f} s", flush=True)
            finally:
                evaluator.close()


VALIDATION_SAMPLES = (250, 500, 1000, 2000)


def validation(dataset, n_networks, budget, n_workers):
    """Trains the networks on the budget with 2 folds, early stopping on the whole validation part,
    and scores each on stratified samples of it; caches {network: {sample size or "whole": accuracy}}."""
    with quiet_native_output():
        from hwnas.data import samples
        from hwnas.evaluation.evaluators import make_evaluator
    quiet_tensorflow_logs()
    data, folds, y_train, _ = benchmark_setup.split_and_folds(*DATASETS[dataset], num_folds=2)
    with tempfile.TemporaryDirectory() as run_dir:
        networks, tasks = networks_and_tasks(data, n_networks, run_dir)
    path = os.path.join(CACHE_DIR, f"validation_{dataset}_{budget}.json")
    cached = json.load(open(path)) if os.path.exists(path) else {"networks": {}}
    trained_on = [(samples.stratified_sample(train, y_train[train], budget, np.random.default_rng([0, 3])),
                   validation_part) for train, validation_part in folds]
    rng = np.random.default_rng([0, 4])
    validation_samples = {size: [samples.stratified_sample(part, y_train[part], size, rng) for _, part in folds]
                          for size in VALIDATION_SAMPLES}
    cached.update(dataset=dataset, budget=budget, whole=len(folds[0][1]))
    todo = {index: task for index, task in tasks.items() if str(index) not in cached["networks"]}
    if todo:
        evaluator = make_evaluator("local", data, trained_on, n_workers, 1)
        try:
            for index, result in evaluator.evaluate_all(todo):
                if result.status != "ok":
                    continue
                scores = {"whole": sample_accuracy(result.state, data, [part for _, part in folds])}
                scores.update({str(size): sample_accuracy(result.state, data, parts) for size, parts in validation_samples.items()})
                cached["networks"][str(index)] = scores
                os.makedirs(CACHE_DIR, exist_ok=True)
                with open(path, "w") as cache_file:
                    json.dump(cached, cache_file, indent=1)
                print(f"{dataset} validation: network {index:2d} {scores}", flush=True)
        finally:
            evaluator.close()


def sample_accuracy(state, data, parts):
    """A trained network's mean accuracy over the folds it trained on, each scored on parts[fold] with that fold's weights."""
    import keras
    from hwnas.network.net import net_from_architecture
    from hwnas.network.training import predict
    accuracies = []
    for i_fold, weights in sorted(state.fold_weights.items()):
        net = net_from_architecture(state.architecture, None, data, state.train_settings)
        model = net.ins_keras_model()
        for name, layer_weights in weights.items():
            model.get_layer(name).set_weights(layer_weights)
        predicted = predict(model, data.X_train, parts[i_fold]).argmax(axis=1)
        accuracies.append(float(np.mean(predicted == data.Y_train[parts[i_fold]].argmax(axis=1))))
        del model
        keras.backend.clear_session()
    return statistics.fmean(accuracies)


def validation_rows(dataset):
    rows = []
    for path in sorted(glob.glob(os.path.join(CACHE_DIR, f"validation_{dataset}_*.json"))):
        cached = json.load(open(path))
        networks = sorted(cached["networks"])
        whole = [cached["networks"][i]["whole"] for i in networks]
        upper = [i for i in networks if cached["networks"][i]["whole"] >= statistics.median(whole)]
        for size in VALIDATION_SAMPLES:
            if size >= cached["whole"]:
                continue
            scores = [cached["networks"][i][str(size)] for i in networks]
            rho = spearmanr(scores, whole).statistic
            rho_upper = spearmanr([cached["networks"][i][str(size)] for i in upper],
                                  [cached["networks"][i]["whole"] for i in upper]).statistic
            rows.append({"budget": cached["budget"], "size": size, "whole": cached["whole"], "rho": rho,
                         "rho_upper": rho_upper, "networks": len(networks), "n_upper": len(upper)})
    return rows


# ----- searches ----------------------------------------------------------------------------
def searches(dataset, seeds, minutes, budgets):
    images, labels = DATASETS[dataset]
    for seed in seeds:
        for budget in budgets:
            run_name = f"{dataset}_seed{seed}_{budget_name(budget)}_{minutes}min"
            logs_dir = os.path.join(CACHE_DIR, "searches")
            if glob.glob(os.path.join(logs_dir, f"*_{run_name}", "summary.json")) and _finished(logs_dir, run_name):
                continue
            command = [sys.executable, os.path.join(PROJECT_DIR, "B01_NAS.py"), f"images_path={images}",
                       f"labels_path={labels}", f"seed={seed}", f"max_search_sessions={budget}",
                       f"time_budget_s={int(minutes * 60)}", "n_generations=100000", f"logs_dir={logs_dir}",
                       f"run_name={run_name}"]
            started = time.perf_counter()
            result = subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"{run_name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
            print(f"{run_name}: {time.perf_counter() - started:.0f} s", flush=True)


def _finished(logs_dir, run_name):
    (summary_path,) = glob.glob(os.path.join(logs_dir, f"*_{run_name}", "summary.json"))[-1:]
    return json.load(open(summary_path)).get("final_training") is not None


# ----- report ------------------------------------------------------------------------------
def rank_rows(dataset):
    """Per budget: what the budget's ranking of the networks says against the full data's."""
    full_path = os.path.join(CACHE_DIR, f"ranks_{dataset}_all.json")
    if not os.path.exists(full_path):
        return []
    full = json.load(open(full_path))
    truth = {index: entry["val_accuracy"] for index, entry in full["networks"].items() if entry["val_accuracy"] is not None}
    best_truth = max(truth.values())
    upper = {index for index, score in truth.items() if score >= statistics.median(truth.values())}
    rows = []
    for path in sorted(glob.glob(os.path.join(CACHE_DIR, f"ranks_{dataset}_*.json")),
                       key=lambda p: float("inf") if p.endswith("_all.json") else int(p.rsplit("_", 1)[1][:-5])):
        cached = json.load(open(path))
        scores = {index: entry["val_accuracy"] for index, entry in cached["networks"].items()
                  if entry["val_accuracy"] is not None and index in truth}
        common = sorted(scores)
        rho = spearmanr([scores[i] for i in common], [truth[i] for i in common]).statistic
        top_common = sorted(set(common) & upper)
        rho_upper = spearmanr([scores[i] for i in top_common], [truth[i] for i in top_common]).statistic
        top_budget = set(sorted(common, key=lambda i: -scores[i])[:TOP])
        top_truth = set(sorted(common, key=lambda i: -truth[i])[:TOP])
        chosen = max(common, key=lambda i: scores[i])
        whole = {index: entry["whole_val_accuracy"] for index, entry in cached["networks"].items()
                 if entry.get("whole_val_accuracy") is not None}
        rho_validation = (spearmanr([scores[i] for i in sorted(whole)], [whole[i] for i in sorted(whole)]).statistic
                          if len(whole) > 2 and cached["validation_sessions"] < cached["whole_validation_sessions"] else None)
        rows.append({"budget": cached["budget"], "train": cached["train_sessions"], "validation": cached["validation_sessions"],
                     "whole_validation": cached["whole_validation_sessions"], "networks": len(common), "rho": rho,
                     "rho_upper": rho_upper, "n_upper": len(top_common), "top5": len(top_budget & top_truth),
                     "chosen": truth[chosen], "best": best_truth, "rho_validation": rho_validation})
    return rows


def search_rows():
    rows = []
    for summary_path in sorted(glob.glob(os.path.join(CACHE_DIR, "searches", "*", "summary.json"))):
        summary = json.load(open(summary_path))
        parameters, best = summary["parameters"], summary["best"] or {}
        final = summary.get("final_training") or {}
        run_name = parameters["run_name"]
        rows.append({"run": run_name, "dataset": run_name.split("_seed")[0], "seed": parameters["seed"],
                     "budget": parameters["max_search_sessions"], "minutes": parameters["time_budget_s"] / 60,
                     "networks": summary["networks_trained"], "search_val": final.get("search_val_accuracy"),
                     "test": (best.get("test_metrics") or {}).get("accuracy"),
                     "int8": (best.get("deployed_measured") or {}).get("test_accuracy"),
                     "final_seconds": final.get("train_seconds"), "elapsed": summary["elapsed_seconds"],
                     "architecture": best.get("child_id")})
    return rows


def report(out):
    lines = ["# Study: a sample of the data for each candidate (max_search_sessions)", "",
             "Made by `python tests/benchmarks/study_data_budget.py` (its docstring says what each part does); every "
             "figure below is read from its cache, `logs/study_data_budget/`.", ""]
    for dataset in DATASETS:
        rows = rank_rows(dataset)
        if not rows:
            continue
        lines += [f"## The same {rows[0]['networks']} networks on {dataset}, trained with each budget", "",
                  "| sessions per fold part | trains on | validated on (of) | Spearman with all | better half | "
                  "top 5 kept | first choice on all (best) | capped vs whole validation |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in rows:
            validation = "-" if row["rho_validation"] is None else f"{row['rho_validation']:.3f}"
            lines.append(f"| {budget_name(row['budget'])} | {row['train']} | {row['validation']} ({row['whole_validation']}) | "
                         f"{row['rho']:.3f} | {row['rho_upper']:.3f} ({row['n_upper']}) | {row['top5']} of {TOP} | "
                         f"{row['chosen']:.4f} ({row['best']:.4f}) | {validation} |")
        lines.append("")
    for dataset in DATASETS:
        rows = validation_rows(dataset)
        if not rows:
            continue
        lines += [f"## Scored on a sample of the validation part, against the whole part ({dataset}, 2 folds)", "",
                  f"{rows[0]['networks']} networks trained on {rows[0]['budget']} sessions of a fold's training part, early-"
                  f"stopped on its whole validation part of {rows[0]['whole']} sessions, then scored on stratified samples of it.",
                  "", "| validation sample | Spearman with the whole part | better half |", "| ---: | ---: | ---: |"]
        lines += [f"| {row['size']} | {row['rho']:.3f} | {row['rho_upper']:.3f} ({row['n_upper']}) |" for row in rows]
        lines.append("")
    rows = search_rows()
    if rows:
        lines += ["## Searches at equal wall clock, with and without the budget", "",
                  "| data | seed | minutes | max_search_sessions | networks | search's val | final test | final int8 (TFLM) | "
                  "final training s | best |", "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
        for row in sorted(rows, key=lambda r: (r["dataset"], r["seed"], r["budget"] is None)):
            lines.append(f"| {row['dataset']} | {row['seed']} | {row['minutes']:g} | {budget_name(row['budget'])} | "
                         f"{row['networks']} | {row['search_val']:.4f} | {row['test']:.4f} | {row['int8']:.4f} | "
                         f"{row['final_seconds']:.0f} | {row['architecture']} |")
        lines.append("")
        for dataset in sorted({row["dataset"] for row in rows}):
            for budget in sorted({row["budget"] for row in rows if row["dataset"] == dataset}, key=lambda b: b is None):
                chosen = [row for row in rows if row["dataset"] == dataset and row["budget"] == budget]
                lines.append(f"- {dataset}, max_search_sessions={budget_name(budget)}: median final int8 test "
                             f"{statistics.median(r['int8'] for r in chosen):.4f}, median networks "
                             f"{statistics.median(r['networks'] for r in chosen):.0f} ({len(chosen)} seeds)")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if out:
        with open(out, "w") as out_file:
            out_file.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["ranks", "validation", "searches", "report"])
    parser.add_argument("--dataset", choices=list(DATASETS), default="ustc")
    parser.add_argument("--networks", type=int, default=40)
    parser.add_argument("--budgets", nargs="+", type=parse_budget, default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=None)
    arguments = parser.parse_args()
    if arguments.what == "ranks":
        ranks(arguments.dataset, arguments.networks, arguments.budgets or [1000, 2000, 4000, None], arguments.workers)
    elif arguments.what == "validation":
        for budget in arguments.budgets or [2000]:
            validation(arguments.dataset, arguments.networks, budget, arguments.workers)
    elif arguments.what == "searches":
        searches(arguments.dataset, arguments.seeds, arguments.minutes, arguments.budgets or [2000, None])
    else:
        report(arguments.out)


if __name__ == "__main__":
    main()
