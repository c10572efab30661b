"""Benchmark of search quality at equal compute: four strategies, each with and without successive halving.

Runs B01_NAS.py on the demo data once per configuration and seed, with the same
training settings and hardware thresholds, and compares them at an equal budget
of compute: --budget fold-epochs (one epoch on one fold = 1; summed over every
network a run trains, those successive halving stops early included; reused
results are free). A run is cut at the last network that fits the budget, in the
order the search recorded them. The default budget, 130 fold-epochs at the default
run's 15 epochs per network, is a third of what the default run (13 networks x 2
folds x 15 epochs = 390) spends. Per configuration it prints, as median [min, max]
over the seeds:
  - the best validation accuracy among the fully trained networks (networks
    stopped early by halving have scores of fewer epochs and never count), and
    the test accuracy of that network;
  - the hypervolume of those networks' front of validation error against flash
    (flash / flash_thr), reference point (1, 1): 1.0 would be a perfect network
    of no size;
  - the networks trained and the seconds their training took.
Then, per seed, whether each configuration beats random search (without halving)
and the specification's loop (without halving), and which median differences are
larger than the seed-to-seed spread (the ranges over the seeds do not overlap).
Every configuration starts from random networks (smart_start=False), so none
gets the hand-crafted start. Finished runs (their folder holds
benchmark_done.json) are read, not run again, and an interrupted run is resumed,
so an interrupted benchmark continues where it stopped.

    python tests/benchmarks/benchmark_search.py [--budget 130] [--seeds 0 1 2 3 4] [--epochs 15] [--target ACC]
        [--out FILE] [--plot FILE]
"""
import argparse
import glob
import json
import math
import os
import statistics
import subprocess
import sys
import time

import benchmark_setup  # noqa: E402  (the project and the tests' helpers on the path)

PROJECT_DIR = benchmark_setup.PROJECT_DIR

from hwnas.search import budget as halving_lib  # noqa: E402
from hwnas.strategy import objectives as objectives_lib  # noqa: E402
from hwnas.run import report  # noqa: E402

FLASH_THR = 32_000
DONE_MARKER = "benchmark_done.json"  # written in a run folder once its run has finished
HALVING_ETA, MIN_EPOCHS = 3, 3  # the recommendation of docs/halving.md, from the halving simulation
HALVING = [f"halving_eta={HALVING_ETA}", f"min_epochs={MIN_EPOCHS}"]
# Each compared strategy: its B01_NAS.py overrides, the networks of generation 0 and of each later generation.
STRATEGIES = {
    "mutation (specification)": (["search_strategy=mutation", "n_child=4"], 1, 4),
    "GA, accuracy": (["search_strategy=ga", "population_size=4", "n_child=4", "n_elites=2"], 4, 4),
    "GA, NSGA-II accuracy+flash": (["search_strategy=ga", "population_size=4", "n_child=4", "n_elites=4",
                                    'objectives=["val_accuracy","flash_size"]'], 4, 4),
    "random search": (["search_strategy=random", "population_size=4", "n_child=4"], 4, 4),
}
CONFIGURATIONS = {f"{name}{' + halving' if halving else ''}": (name, halving)
                  for name in STRATEGIES for halving in (False, True)}
BASELINES = ("random search", "mutation (specification)")


def generation_epochs(n_networks, epochs, halving):
    """Fold-epochs a generation of n_networks costs at least (one fold, no failure, no early stop)."""
    if not halving:
        return n_networks * epochs
    budgets, total, alive, done = halving_lib.rung_epochs(MIN_EPOCHS, HALVING_ETA, epochs), 0, n_networks, 0
    for rung, budget in enumerate(budgets):  # a promoted network trains on from the epochs it has done
        if alive == 1 or rung == len(budgets) - 1:
            return total + alive * (epochs - done)
        total += alive * (budget - done)
        alive, done = halving_lib.n_promoted(alive, HALVING_ETA), budget
    return total


def trained_epochs(run_dir):
    """Fold-epochs a run has trained so far (reused results are free)."""
    return sum(row["epochs_trained"] or 0 for row in report.read_records(run_dir) if row["status"] != "reused")


def run_configuration(configuration, seed, arguments, logs_dir):
    """Runs (or reads, when finished before) one configuration on one seed. Returns its run folder."""
    name, halving = CONFIGURATIONS[configuration]
    overrides, first_generation, per_generation = STRATEGIES[name]
    run_name = f"seed{seed}_" + "".join(c if c.isalnum() else "_" for c in configuration)
    return run_search([*overrides, *(HALVING if halving else []), "smart_start=False", f"flash_thr={FLASH_THR}"],
                      first_generation, per_generation, halving, seed, arguments.budget, arguments.epochs,
                      arguments.workers, logs_dir, run_name)


def run_search(overrides, first_generation, per_generation, halving, seed, budget, epochs, workers, logs_dir, run_name):
    """Runs (or reads, when finished before) B01_NAS.py with overrides until it has trained budget
    fold-epochs. Returns its run folder.

    The run gets the generations the budget needs if no network failed or stopped
    sooner, then one more generation at a time (a resume) until it has trained the
    budget: what it trains beyond the budget is not counted, so it is kept small."""
    existing = sorted(glob.glob(os.path.join(logs_dir, f"*_{run_name}")))
    if existing and os.path.exists(os.path.join(existing[-1], DONE_MARKER)):
        return existing[-1]
    spent, generations = generation_epochs(first_generation, epochs, halving), 0
    while spent < budget:
        spent += generation_epochs(per_generation, epochs, halving)
        generations += 1
    command = [sys.executable, os.path.join(PROJECT_DIR, "B01_NAS.py"), *overrides, f"seed={seed}",
               f"n_generations={generations}", f"epochs={epochs}", "num_selected_folds=1", f"n_workers={workers}",
               f"logs_dir={logs_dir}", f"run_name={run_name}"]
    run_dir = existing[-1] if existing and os.path.exists(os.path.join(existing[-1], "checkpoint.pkl")) else None
    wall_seconds = 0.0
    while True:
        if run_dir is not None:  # an interrupted benchmark, or a run short of its budget, continues
            command = command[:2] + [f"resume_from={run_dir}", f"n_generations={generations}"]
        print(f"running {run_name}: {' '.join(command[2:])}", flush=True)
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_DIR)
        wall_seconds += time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"{run_name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        run_dir = run_dir or sorted(glob.glob(os.path.join(logs_dir, f"*_{run_name}")))[-1]
        spent = trained_epochs(run_dir)
        if spent >= budget:
            break
        # short (failures, or children that inherit and train fewer epochs): as many more generations
        # as the fold-epochs per generation so far say the rest of the budget needs
        done = int(max(row["generation"] for row in report.read_records(run_dir))) + 1
        generations = max(generations, done) + max(1, math.ceil((budget - spent) / max(spent / done, 1)))
    with open(os.path.join(run_dir, DONE_MARKER), "w") as marker:
        json.dump({"wall_seconds": round(wall_seconds, 1)}, marker)
    print(f"  done in {wall_seconds:.0f} s", flush=True)
    return run_dir


def within_budget(run_dir, budget):
    """(fold-epochs spent so far, row) for each network a run trained, in order, until the budget:
    reused networks cost nothing and are left out."""
    spent = 0
    for row in report.read_records(run_dir):
        if row["status"] == "reused":
            continue
        if spent + (row["epochs_trained"] or 0) > budget:
            return
        spent += row["epochs_trained"] or 0
        yield spent, row


def measure(run_dir, budget, target=None):
    """Best validation accuracy, its test accuracy and the hypervolume of the networks a run
    trained within `budget` fold-epochs, and the fold-epochs it had spent when a fully trained
    network first reached `target` validation accuracy (None: not within the budget)."""
    within, spent, reached = [], 0, None
    for spent, row in within_budget(run_dir, budget):
        within.append(row)
        if target is not None and reached is None and row["status"] == "ok" and row["val_accuracy"] >= target:
            reached = spent
    if spent < 0.8 * budget:
        raise RuntimeError(f"{run_dir} trained {spent} fold-epochs, far fewer than the budget {budget}")
    full = [row for row in within if row["status"] == "ok"]
    best = max(full, key=lambda row: row["val_accuracy"])
    points = [(1 - row["val_accuracy"], row["flash_size"] / FLASH_THR) for row in full]
    front = sorted((points[i] for i in objectives_lib.first_front(points)), key=lambda point: point[1])
    return {"best_val": best["val_accuracy"], "best_test": best["test_accuracy"], "front": front,
            "hypervolume": objectives_lib.hypervolume(points, (1.0, 1.0)), "networks": len(within),
            "fully_trained": len(full), "reached": reached,
            "stopped": sum(row["status"] == "stopped" for row in within), "epochs": spent,
            "train_seconds": sum(row["train_seconds"] for row in within)}


def plot_fronts(results, seeds, path):
    """One panel per seed: each strategy's front of validation accuracy against flash."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes_row = plt.subplots(1, len(seeds), figsize=(5 * len(seeds), 4.2), sharey=True, squeeze=False)
    for axes, seed in zip(axes_row[0], seeds):
        for name, rows in results.items():
            front = next(row["front"] for row in rows if row["seed"] == seed)
            axes.step([flash * FLASH_THR for _, flash in front], [1 - error for error, _ in front],
                      where="post", marker="o", markersize=3, label=name)
        axes.set_title(f"seed {seed}")
        axes.set_xlabel("flash (bytes, estimated)")
        axes.grid(alpha=0.3)
    axes_row[0][0].set_ylabel("validation accuracy")
    axes_row[0][-1].legend(loc="lower right", fontsize=8)
    figure.suptitle("Pareto fronts of the trained networks at an equal budget")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def spread(values, digits=4):
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def comparisons(results):
    """Lines saying, per configuration, on how many seeds it beats each baseline, and which
    median differences are larger than the seed-to-seed spread."""
    lines = []
    for baseline in BASELINES:
        if baseline not in results:
            continue
        base = {row["seed"]: row for row in results[baseline]}
        for configuration, rows in results.items():
            if configuration == baseline:
                continue
            wins = sum(row["best_val"] > base[row["seed"]]["best_val"] for row in rows)
            hv_wins = sum(row["hypervolume"] > base[row["seed"]]["hypervolume"] for row in rows)
            ours, theirs = [row["best_val"] for row in rows], [row["best_val"] for row in results[baseline]]
            separated = min(ours) > max(theirs) or max(ours) < min(theirs)
            lines.append(f"- {configuration} vs {baseline}: best validation accuracy higher on {wins} of "
                         f"{len(rows)} seeds, hypervolume on {hv_wins}; median difference "
                         f"{statistics.median(ours) - statistics.median(theirs):+.4f} "
                         + ("(too few seeds to compare with their spread)" if len(rows) < 3 else
                            "(larger than the seed-to-seed spread: the ranges do not overlap)" if separated
                            else "(within the seed-to-seed spread)"))
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=130, help="fold-epochs per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=15, help="epochs per fully trained network (one fold)")
    parser.add_argument("--workers", type=int, default=2, help="networks trained at once in each run")
    parser.add_argument("--logs-dir", default=os.path.join(PROJECT_DIR, "logs", "benchmark_search_compute"))
    parser.add_argument("--configurations", nargs="+", default=list(CONFIGURATIONS), choices=list(CONFIGURATIONS))
    parser.add_argument("--target", type=float, help="also say, per configuration, on how many seeds a fully "
                        "trained network reached this validation accuracy within the budget, and after how many "
                        "fold-epochs (e.g. the best of a default run)")
    parser.add_argument("--out", help="also write the table (Markdown) to this file")
    parser.add_argument("--plot", help="also draw each configuration's front, one panel per seed, to this PNG")
    arguments = parser.parse_args()
    os.makedirs(arguments.logs_dir, exist_ok=True)
    results = {name: [] for name in arguments.configurations}
    for seed in arguments.seeds:  # seed-major: an early stop still leaves every configuration compared
        for name in arguments.configurations:
            run_dir = run_configuration(name, seed, arguments, arguments.logs_dir)
            results[name].append(dict(measure(run_dir, arguments.budget, arguments.target), seed=seed,
                                      run_dir=run_dir))
            row = results[name][-1]
            print(f"  {name}, seed {seed}: best val {row['best_val']:.4f}, its test {row['best_test']:.4f}, "
                  f"hypervolume {row['hypervolume']:.4f}, {row['networks']} networks, {row['epochs']:.0f} "
                  f"fold-epochs", flush=True)
    lines = [f"Budget: {arguments.budget} fold-epochs per run (an epoch on one fold = 1, networks stopped early "
             f"included); seeds {arguments.seeds}; a fully trained network gets {arguments.epochs} epochs on one "
             f"fold; halving: halving_eta={HALVING_ETA}, min_epochs={MIN_EPOCHS}; flash_thr {FLASH_THR} B, other thresholds as in "
             f"B01_NAS.py. Median [min, max] over the seeds.", "",
             "| configuration | best validation accuracy | its test accuracy | hypervolume (val error x flash) "
             "| networks trained (fully trained) | training seconds |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, rows in results.items():
        lines.append(f"| {name} | {spread([r['best_val'] for r in rows])} | {spread([r['best_test'] for r in rows])} "
                     f"| {spread([r['hypervolume'] for r in rows])} "
                     f"| {statistics.median([r['networks'] for r in rows]):.0f} "
                     f"({statistics.median([r['fully_trained'] for r in rows]):.0f}) "
                     f"| {spread([r['train_seconds'] for r in rows], 0)} |")
    lines += ["", *comparisons(results)]
    if arguments.target is not None:
        lines += ["", f"Validation accuracy {arguments.target} reached by a fully trained network within the budget:", ""]
        for name, rows in results.items():
            reached = [r["reached"] for r in rows if r["reached"] is not None]
            lines.append(f"- {name}: on {len(reached)} of {len(rows)} seeds" + (
                f", after {', '.join(str(round(r)) for r in reached)} fold-epochs" if reached else ""))
    lines += ["", "Per seed (best validation / its test / hypervolume):", ""]
    for name, rows in results.items():
        lines.append(f"- {name}: " + "; ".join(
            f"seed {r['seed']}: {r['best_val']:.4f} / {r['best_test']:.4f} / {r['hypervolume']:.4f}" for r in rows))
    table = "\n".join(lines)
    print("\n" + table)
    if arguments.plot:
        plot_fronts(results, arguments.seeds, arguments.plot)
    if arguments.out:
        with open(arguments.out, "w") as out_file:
            out_file.write(table + "\n")


if __name__ == "__main__":
    main()
