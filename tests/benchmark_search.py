"""Benchmark of search quality: the population GA against the specification's loop and random search.

Runs B01_NAS.py on the demo data once per strategy and seed, with the same
training settings and hardware thresholds, and compares them at an equal budget
of trained networks (the first --children trained networks of each run; reused
results are free and do not count). Per strategy it prints, as median [min, max]
over the seeds:
  - the best validation accuracy among the networks meeting the thresholds (the
    search only ever trains those), and the test accuracy of that network;
  - the hypervolume of the trained networks' front of validation error against
    flash (flash / flash_thr), reference point (1, 1): 1.0 would be a perfect
    network of no size;
  - the minutes spent training those networks (larger networks train longer).
Every strategy starts from random networks (smart_start=False), so no strategy
gets the hand-crafted start. Finished runs (their folder holds
benchmark_done.json) are read, not run again, and an interrupted run is resumed,
so an interrupted benchmark continues where it stopped.

    python tests/benchmark_search.py [--children 60] [--seeds 0 1 2] [--epochs 5] [--out FILE]
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_DIR)

import library_objectives as objectives_lib  # noqa: E402
import library_report as report  # noqa: E402

FLASH_THR = 32_000
DONE_MARKER = "benchmark_done.json"  # written in a run folder once its run has finished
# Each compared strategy: its B01_NAS.py overrides, and how many networks a generation trains
# after the first (to size the run so that it trains at least the budget).
STRATEGIES = {
    "mutation (specification)": (["search_strategy=mutation", "n_child=4"], 1, 4),
    "GA, accuracy": (["search_strategy=ga", "population_size=12", "n_child=8", "n_elites=4"], 12, 8),
    "GA, NSGA-II accuracy+flash": (["search_strategy=ga", "population_size=12", "n_child=8", "n_elites=12",
                                    'objectives=["val_accuracy","flash_size"]'], 12, 8),
    "random search": (["search_strategy=random", "population_size=12", "n_child=8"], 12, 8),
}


def run_strategy(name, seed, arguments, logs_dir):
    """Runs (or reads, when finished before) one strategy on one seed. Returns its run folder."""
    overrides, first_generation, per_generation = STRATEGIES[name]
    run_name = f"seed{seed}_" + "".join(c if c.isalnum() else "_" for c in name)
    existing = sorted(glob.glob(os.path.join(logs_dir, f"*_{run_name}")))
    if existing and os.path.exists(os.path.join(existing[-1], DONE_MARKER)):
        return existing[-1]
    # One generation more than the budget needs: reused results cost nothing and do not count.
    generations = -(-(arguments.children - first_generation) // per_generation) + 1
    command = [sys.executable, os.path.join(PROJECT_DIR, "B01_NAS.py"), *overrides,
               f"seed={seed}", f"n_generations={generations}", "smart_start=False",
               f"epochs={arguments.epochs}", "num_selected_folds=1", f"flash_thr={FLASH_THR}",
               f"logs_dir={logs_dir}", f"run_name={run_name}"]
    if existing and os.path.exists(os.path.join(existing[-1], "checkpoint.pkl")):
        command.append(f"resume_from={existing[-1]}")  # an interrupted benchmark continues
    print(f"running {name}, seed {seed}: {' '.join(command[2:])}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_DIR)
    if result.returncode != 0:
        raise RuntimeError(f"{name}, seed {seed} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    run_dir = sorted(glob.glob(os.path.join(logs_dir, f"*_{run_name}")))[-1]
    wall_seconds = time.perf_counter() - start
    with open(os.path.join(run_dir, DONE_MARKER), "w") as marker:
        json.dump({"wall_seconds": round(wall_seconds, 1)}, marker)
    print(f"  done in {wall_seconds:.0f} s", flush=True)
    return run_dir


def measure(run_dir, budget):
    """Best validation accuracy, its test accuracy and the hypervolume over the first `budget` trained networks."""
    trained = [row for row in report.read_records(run_dir) if row["status"] != "reused"][:budget]
    if len(trained) < budget:
        raise RuntimeError(f"{run_dir} trained {len(trained)} networks, fewer than the budget {budget}")
    scored = [row for row in trained if row["val_accuracy"] is not None]
    best = max(scored, key=lambda row: row["val_accuracy"])
    points = [(1 - row["val_accuracy"], row["flash_size"] / FLASH_THR) for row in scored]
    front = sorted((points[i] for i in objectives_lib.first_front(points)), key=lambda point: point[1])
    return {"best_val": best["val_accuracy"], "best_test": best["test_accuracy"], "front": front,
            "hypervolume": objectives_lib.hypervolume(points, (1.0, 1.0)),
            "front_size": len(objectives_lib.first_front(points)), "failed": len(trained) - len(scored),
            "train_minutes": sum(row["train_seconds"] for row in trained) / 60}


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
    return (f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=60, help="budget of trained networks per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per network (proxy training on one fold)")
    parser.add_argument("--logs-dir", default=os.path.join(PROJECT_DIR, "logs", "benchmark_search"))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--out", help="also write the table (Markdown) to this file")
    parser.add_argument("--plot", help="also draw each strategy's front, one panel per seed, to this PNG")
    arguments = parser.parse_args()
    os.makedirs(arguments.logs_dir, exist_ok=True)
    results = {name: [] for name in arguments.strategies}
    for seed in arguments.seeds:  # seed-major: an early stop still leaves every strategy compared
        for name in arguments.strategies:
            run_dir = run_strategy(name, seed, arguments, arguments.logs_dir)
            results[name].append(dict(measure(run_dir, arguments.children), seed=seed, run_dir=run_dir))
            row = results[name][-1]
            print(f"  {name}, seed {seed}: best val {row['best_val']:.4f}, its test {row['best_test']:.4f}, "
                  f"hypervolume {row['hypervolume']:.4f}", flush=True)
    lines = [f"Budget: {arguments.children} trained networks per run; seeds {arguments.seeds}; "
             f"{arguments.epochs} epochs on one fold per network; flash_thr {FLASH_THR} B, other thresholds "
             f"as in B01_NAS.py. Median [min, max] over the seeds.", "",
             "| strategy | best validation accuracy | its test accuracy | hypervolume (val error x flash) "
             "| front size | failed | training minutes |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, rows in results.items():
        lines.append(f"| {name} | {spread([r['best_val'] for r in rows])} | {spread([r['best_test'] for r in rows])} "
                     f"| {spread([r['hypervolume'] for r in rows])} "
                     f"| {statistics.median([r['front_size'] for r in rows]):.0f} "
                     f"| {sum(r['failed'] for r in rows)} | {spread([r['train_minutes'] for r in rows], 1)} |")
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
