"""Study: which regressor ranks a search's next networks best, from the networks it trained before.

For each run folder given, generation by generation: fit each regressor on every network trained
(to the full budget) in the generations before, predict the networks of this generation, and take
Spearman's correlation of the predictions with their measured validation accuracy, as the search's
predictor is used (hwnas.strategy.predictor). The parameter count alone (fewer parameters ranked higher,
and more ranked higher) is the baseline a model has to beat: no zero-cost proxy did
(docs/study_zero_cost.md). Prints, per regressor, the median and mean correlation over every
generation of every run with at least 3 networks and, per run, the correlation over every network
it predicted, and how often each beats the parameter count.

    python tests/benchmarks/study_predictor.py RUN_DIR [RUN_DIR ...] [--min-train 10] [--out docs/study_predictor.md]
"""
import argparse
import json
import os
import statistics

import benchmark_setup  # noqa: F401  (the project and the tests' helpers on the path)

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor  # noqa: E402
from sklearn.gaussian_process import GaussianProcessRegressor  # noqa: E402
from sklearn.linear_model import RidgeCV  # noqa: E402
from sklearn.gaussian_process.kernels import ConstantKernel, RBF, WhiteKernel  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from hwnas.data import idx as data_lib  # noqa: E402
from hwnas.run import report  # noqa: E402
from hwnas.network.net import net_from_architecture  # noqa: E402
from hwnas.strategy.predictor import features  # noqa: E402

REGRESSORS = {
    "random forest": lambda: RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=0, n_jobs=1),
    "gradient boosting": lambda: GradientBoostingRegressor(n_estimators=150, max_depth=3, learning_rate=0.05,
                                                           subsample=0.8, random_state=0),
    "Gaussian process": lambda: make_pipeline(StandardScaler(), GaussianProcessRegressor(
        ConstantKernel() * RBF(length_scale=3.0) + WhiteKernel(), normalize_y=True, random_state=0)),
    "ridge regression": lambda: make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 11))),
}


def run_networks(run_dir):
    """(generation, features, validation accuracy) of every network a run trained to the full budget."""
    parameters = json.load(open(os.path.join(run_dir, "parameters.json")))
    length = json.load(open(os.path.join(run_dir, "data.json")))["training_samples"][1]
    n_classes = json.load(open(os.path.join(run_dir, "data.json")))["num_classes"]
    placeholder = data_lib.SessionData(np.zeros((2, length, 1), np.float32), np.eye(n_classes, dtype=np.float32)[[0, 1]],
                                       np.zeros((2, length, 1), np.float32), np.eye(n_classes, dtype=np.float32)[[0, 1]])
    rows = []
    for row in report.trained_records(run_dir):
        net = net_from_architecture(row["architecture"], None, placeholder)
        figures = {name: row[name] for name in ("n_params", "max_tens", "flops", "flash_size", "ram_size", "latency_ms")}
        rows.append((int(row["generation"]), features(net, figures, parameters.get("max_depth", 6)), row["val_accuracy"],
                     row["n_params"]))
    return rows


ENCODINGS = {"full": slice(None),  # hwnas.strategy.predictor.features: figures, input, head, depth, every block
             "compact": slice(0, 11)}  # its figures, input, head and depth only


BASELINES = ("parameter count (fewer first)", "parameter count (more first)")


def study(run_dirs, min_train):
    """{ranking: [Spearman of each generation predicted]} and {ranking: [Spearman, per run, over every
    network it predicted]}: each generation is predicted by a model fitted on the generations before."""
    rankings = [*(f"{name}, {encoding}" for name in REGRESSORS for encoding in ENCODINGS), *BASELINES]
    per_generation, per_run = {name: [] for name in rankings}, {name: [] for name in rankings}
    for run_dir in run_dirs:
        rows = run_networks(run_dir)
        predicted, measured = {name: [] for name in rankings}, []
        for generation in sorted({g for g, _, _, _ in rows}):
            train = [r for r in rows if r[0] < generation]
            test = [r for r in rows if r[0] == generation]
            if len(train) < min_train or len(test) < 2:
                continue
            X, y, X_test = np.stack([r[1] for r in train]), np.array([r[2] for r in train]), np.stack([r[1] for r in test])
            scores = {f"{name}, {encoding}": list(make().fit(X[:, columns], y).predict(X_test[:, columns]))
                      for name, make in REGRESSORS.items() for encoding, columns in ENCODINGS.items()}
            scores[BASELINES[0]], scores[BASELINES[1]] = [-r[3] for r in test], [r[3] for r in test]
            for name, values in scores.items():
                predicted[name] += values
                if len(test) >= 3 and len({r[2] for r in test}) >= 2:
                    per_generation[name].append(spearmanr(values, [r[2] for r in test]).statistic)
            measured += [r[2] for r in test]
        if len(measured) >= 5:
            for name in rankings:
                per_run[name].append(spearmanr(predicted[name], measured).statistic)
    # A ranking that ties every network (constant predictions, equal parameter counts) has no
    # correlation: it counts as 0, no information, so every list stays aligned with the baseline's.
    no_nan = lambda table: {name: [c if np.isfinite(c) else 0.0 for c in values] for name, values in table.items()}  # noqa: E731
    return no_nan(per_generation), no_nan(per_run)


def above_below(values, baseline_values):
    """'a / b': how many correlations are above, and below, the baseline's on the same run or generation."""
    above = sum(v > b for v, b in zip(values, baseline_values))
    return f"{above} / {sum(v < b for v, b in zip(values, baseline_values))}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--min-train", type=int, default=10)
    parser.add_argument("--out", default=None)
    arguments = parser.parse_args()
    per_generation, per_run = study(arguments.run_dirs, arguments.min_train)
    baseline = max(BASELINES, key=lambda name: statistics.median(per_run[name]) if per_run[name] else -1)
    lines = [f"{len(per_run[baseline])} runs, {len(per_generation[baseline])} generations predicted (at least "
             f"{arguments.min_train} networks trained before each).", "",
             "| ranking | per run: median Spearman [min, max] | runs above / below the parameter count | "
             "per generation: median | mean | generations above / below the parameter count |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for name in per_run:
        if not per_run[name]:
            continue
        is_model = name not in BASELINES
        run_wins = above_below(per_run[name], per_run[baseline]) if is_model else "-"
        generation_wins = above_below(per_generation[name], per_generation[baseline]) if is_model else "-"
        values = per_run[name]
        lines.append(f"| {name} | {statistics.median(values):+.3f} [{min(values):+.2f}, {max(values):+.2f}] | {run_wins} | "
                     f"{statistics.median(per_generation[name]):+.3f} | {statistics.fmean(per_generation[name]):+.3f} | "
                     f"{generation_wins} |")
    print("\n".join(lines))
    if arguments.out:
        with open(arguments.out, "w") as out_file:
            out_file.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
