"""Benchmark: more accuracy per trained network? Inheritance and a predictor, at equal compute.

Runs B01_NAS.py on a data set for today's recommended configurations (the GA ranked by accuracy;
the mutation loop with successive halving) and for each with inherit_weights, with a predictor in
front of training (proposal_pool), and with both, on every seed, at an equal budget of fold-epochs
(benchmark_search.py's: one epoch on one fold = 1, every network a run trains counted, reused ones
free; each run starts from random networks and trains a network on one fold). Per configuration:
the median [min, max] over the seeds of the best validation accuracy among fully trained networks
and that network's test accuracy; per seed, whether it beats the baseline it extends, with a
one-sided sign test over the seeds, on validation (what the search chose by) and on test (whether the
choice holds on sessions no search saw); and the fold-epochs at which it first reached the median best
of its baseline (the compute it needs for today's result).

    python tests/benchmarks/benchmark_levers.py --dataset mnist --seeds 0 1 2 3 4 5 6 7 8 9 [--budget 200]
        [--epochs 8] [--configurations ...] [--out docs/benchmark_levers_mnist.md]

A budget of 200 fold-epochs at 8 epochs a network is 25 fully trained networks: the predictor
(warm after 10) chooses the other 15. The default configurations are the GA's (today's first
recommendation) with each lever; the mutation loop with halving and its levers are there by name.
"""
import argparse
import math
import os
import statistics
import warnings

import benchmark_setup  # noqa: F401  (the project and the tests' helpers on the path)

from benchmark_search import HALVING, measure, run_search, within_budget  # noqa: E402

PROJECT_DIR = benchmark_setup.PROJECT_DIR
DATASETS = {"demo": ("data/demo_sessions.idx3", "data/demo_labels.idx1"),
            "mnist": ("data/mnist5k_images.idx3", "data/mnist5k_labels.idx1"),
            "ustc": ("data/ustc_benign_l7_images.idx3.gz", "data/ustc_benign_l7_labels.idx1.gz")}
BASELINES = {  # name -> (B01_NAS.py overrides, networks of generation 0, of each later generation, halving)
    "GA, accuracy": (["search_strategy=ga", "population_size=4", "n_child=4", "n_elites=2"], 4, 4, False),
    "mutation + halving": (["search_strategy=mutation", "n_child=4", *HALVING], 1, 4, True),
}
LEVERS = {"": [], " + inheritance": ["inherit_weights=True"],
          " + predictor": ["proposal_pool=8", "predictor_warmup=10"],
          " + both": ["inherit_weights=True", "proposal_pool=8", "predictor_warmup=10"]}
CONFIGURATIONS = {baseline + lever: (baseline, lever) for baseline in BASELINES for lever in LEVERS}


def sign_test(wins, losses):
    """One-sided p-value of at least `wins` wins in wins + losses fair coin tosses (ties dropped)."""
    n = wins + losses
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n if n else 1.0


def reached_at(run_dir, target, budget):
    """Fold-epochs a run had spent when a fully trained network first reached target (None: never)."""
    return measure(run_dir, budget, target)["reached"]


def best_so_far(run_dir, budget):
    """[(fold-epochs spent, best validation accuracy of a fully trained network so far)] within budget."""
    best, curve = None, []
    for spent, row in within_budget(run_dir, budget):
        if row["status"] == "ok":
            best = row["val_accuracy"] if best is None else max(best, row["val_accuracy"])
        if best is not None:
            curve.append((spent, best))
    return curve


def seed_curves(run_dirs, budget, step=2):
    """The fold-epochs grid, and over the seeds the median and the quartiles of the best validation
    accuracy so far at each point of it."""
    import numpy as np
    grid = np.arange(0, budget + 1, step)
    curves = []
    for run_dir in run_dirs:
        curve = best_so_far(run_dir, budget)
        curves.append([next((best for spent, best in reversed(curve) if spent <= x), np.nan) for x in grid])
    curves = np.array(curves, dtype=float)
    with warnings.catch_warnings():  # before a run's first network every seed is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return grid, np.nanmedian(curves, axis=0), np.nanpercentile(curves, [25, 75], axis=0)


def median_curve_reaches(run_dirs, target, budget):
    """Fold-epochs at which the median over the seeds of the best so far first reaches target (None: never)."""
    grid, median, _ = seed_curves(run_dirs, budget)
    return next((int(x) for x, best in zip(grid, median) if best >= target), None)


def plot_curves(run_dirs, budget, dataset, path):
    """Per configuration, the median over the seeds of the best validation accuracy so far against
    the fold-epochs spent (the band: the seeds' quartiles)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, per_seed in run_dirs.items():
        grid, median, quartiles = seed_curves(per_seed.values(), budget)
        axes.plot(grid, median, label=name)
        axes.fill_between(grid, quartiles[0], quartiles[1], alpha=0.15)
    axes.set_xlabel("fold-epochs spent")
    axes.set_ylabel("best validation accuracy so far")
    axes.set_title(f"{dataset}: median over {len(next(iter(run_dirs.values())))} seeds (band: quartiles)")
    lower = np.nanmin([np.nanmedian([best_so_far(d, budget)[-1][1] for d in s.values()]) for s in run_dirs.values()])
    axes.set_ylim(max(0.0, lower - 0.15), None)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=list(DATASETS), default="mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--budget", type=int, default=200, help="fold-epochs per run")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per fully trained network (one fold)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--configurations", nargs="+", default=[c for c in CONFIGURATIONS if c.startswith("GA")],
                        choices=list(CONFIGURATIONS))
    parser.add_argument("--out", help="the table (markdown) goes here")
    parser.add_argument("--figure", help="the curves of best accuracy against fold-epochs go here (png)")
    arguments = parser.parse_args()
    images, labels = DATASETS[arguments.dataset]
    logs_dir = os.path.join(PROJECT_DIR, "logs", f"benchmark_levers_{arguments.dataset}")
    os.makedirs(logs_dir, exist_ok=True)
    results, run_dirs = {name: {} for name in arguments.configurations}, {name: {} for name in arguments.configurations}
    for seed in arguments.seeds:  # seed-major: an early stop still leaves every configuration compared
        for name in arguments.configurations:
            baseline, lever = CONFIGURATIONS[name]
            overrides, first, per_generation, halving = BASELINES[baseline]
            run_name = f"seed{seed}_" + "".join(c if c.isalnum() else "_" for c in name)
            run_dir = run_search([f"images_path={images}", f"labels_path={labels}", *overrides, *LEVERS[lever],
                                  "smart_start=False"], first, per_generation, halving, seed, arguments.budget,
                                 arguments.epochs, arguments.workers, logs_dir, run_name)
            run_dirs[name][seed] = run_dir
            results[name][seed] = measure(run_dir, arguments.budget)
            print(f"  {name}, seed {seed}: best val {results[name][seed]['best_val']:.4f}", flush=True)
    lines = [f"Data: {arguments.dataset}; budget {arguments.budget} fold-epochs per run; seeds {arguments.seeds}; "
             f"{arguments.epochs} epochs for a fully trained network (one fold); every run from random networks.",
             "", "| configuration | best validation accuracy | its test accuracy | networks trained | "
             "beats its baseline (seeds) | sign test p | its test beats the baseline's (seeds) | "
             "reaches the baseline's median best (fold-epochs) | its median curve reaches it (fold-epochs) |",
             "| --- | --- | --- | ---: | --- | ---: | --- | --- | ---: |"]
    for name, per_seed in results.items():
        baseline, lever = CONFIGURATIONS[name]
        vals = [r["best_val"] for r in per_seed.values()]
        tests = [r["best_test"] for r in per_seed.values()]
        beats, p_value, test_beats, reached, curve_reaches = "-", "-", "-", "-", "-"
        if lever and baseline in results:
            (wins, losses), (test_wins, test_losses) = (_paired(per_seed, results[baseline], key)
                                                        for key in ("best_val", "best_test"))
            beats, p_value = f"{wins} of {len(per_seed)} ({losses} worse)", f"{sign_test(wins, losses):.3f}"
            test_p = sign_test(test_wins, test_losses)
            test_beats = f"{test_wins} of {len(per_seed)} ({test_losses} worse, p {test_p:.3f})"
        if baseline in results:
            target = statistics.median(r["best_val"] for r in results[baseline].values())
            at = [reached_at(run_dirs[name][s], target, arguments.budget) for s in per_seed]
            hit = sorted(a for a in at if a is not None)
            reached = (f"{len(hit)} of {len(at)} seeds, median {statistics.median(hit):.0f}" if hit else f"0 of {len(at)}")
            curve_reaches = median_curve_reaches(run_dirs[name].values(), target, arguments.budget)
            curve_reaches = "never" if curve_reaches is None else curve_reaches
        lines.append(f"| {name} | {_spread(vals)} | {_spread(tests)} | "
                     f"{statistics.median(r['networks'] for r in per_seed.values()):.0f} | {beats} | {p_value} | "
                     f"{test_beats} | {reached} | {curve_reaches} |")
    table = "\n".join(lines)
    print("\n" + table)
    if arguments.out:
        with open(arguments.out, "w") as out_file:
            out_file.write(table + "\n")
    if arguments.figure:
        plot_curves(run_dirs, arguments.budget, arguments.dataset, arguments.figure)


def _paired(per_seed, base, key):
    """Seeds on which a configuration's figure is above, and below, its baseline's on the same seed."""
    shared = [seed for seed in per_seed if seed in base]
    return (sum(per_seed[seed][key] > base[seed][key] for seed in shared),
            sum(per_seed[seed][key] < base[seed][key] for seed in shared))


def _spread(values):
    return f"{statistics.median(values):.4f} [{min(values):.4f}, {max(values):.4f}]"


if __name__ == "__main__":
    main()
