"""Networks per hour by executor, workers and threads (a documented command, not a timed test).

    python tests/benchmarks/benchmark_throughput.py [--networks 16] [--settings local:1x2 local:2x1 ray:2x1]

Trains the same random valid architectures of the demo data (drawn with the
default search space and thresholds of B01_NAS.py; proxy training as in the
default run: 2 of 5 folds, up to 15 epochs) once per setting
executor:workers x threads, and prints each setting's wall time (worker and
Ray start-up included), networks per hour, the ratio to the first setting, and
whether the validation scores agree. Run it on an otherwise idle machine.
"""
import argparse
import os
import tempfile
import time

import benchmark_setup  # noqa: E402,F401  (the project and the tests' helpers on the path)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from hwnas.common.quiet import quiet_native_output, quiet_tensorflow_logs  # noqa: E402

with quiet_native_output():
    from hwnas.data import idx as data_lib  # noqa: E402
    from hwnas.evaluation.evaluators import make_evaluator  # noqa: E402
    from library_nas import NAS  # noqa: E402
quiet_tensorflow_logs()

DEFAULT_THRESHOLDS = dict(params_thr=20_000, flops_thr=2_000_000, flash_thr=32_000, ram_thr=16_000,
                          max_tens_thr=16_000)


def architectures_and_tasks(data, n_networks, epochs, run_dir):
    """n_networks distinct random valid networks and their evaluation tasks (seeds 1..n)."""
    nas = NAS(run_dir=run_dir, preloaded_data=data, seed=0, epochs=epochs, **DEFAULT_THRESHOLDS)
    seen, tasks, texts = set(), {}, []
    for index in range(n_networks):
        network = nas.space.random_network(nas.max_depth, seen, "a benchmark network")
        seen.add(network.architecture_key())
        network.train_settings["seed"] = index + 1
        tasks[index] = nas.search.task_of(network)
        texts.append(network.architecture_text())
    return tasks, texts


def run_setting(setting, data, folds, tasks):
    """(wall seconds, {task id: validation accuracy or the failure}) for one executor setting."""
    executor, shape = setting.split(":")
    n_workers, threads = (int(part) for part in shape.split("x"))
    start = time.perf_counter()
    evaluator = make_evaluator(executor, data, folds, n_workers, threads)
    scores = {}
    try:
        for task_id, result in evaluator.evaluate_all(tasks):
            scores[task_id] = result.state.val_score if result.status == "ok" else result.reason
            print(f"  {setting}: network {task_id:2d} done after {time.perf_counter() - start:6.1f} s, "
                  f"val {scores[task_id]}", flush=True)
    finally:
        evaluator.close()
    return time.perf_counter() - start, scores


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=15, help="most epochs per fold (15: the default run's)")
    parser.add_argument("--settings", nargs="+", default=["local:1x2", "local:2x1", "ray:2x1"],
                        help="executor:workers x threads; the first is the baseline")
    arguments = parser.parse_args()
    X_train, y_train, X_test, y_test = data_lib.load_and_preprocess_data(None, 0.1, seed=0)
    folds = data_lib.fold_index(X_train, y_train, 5, seed=0)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    data = data_lib.SessionData(X_train, data_lib.one_hot(y_train, n_classes), X_test, data_lib.one_hot(y_test, n_classes))
    with tempfile.TemporaryDirectory() as run_dir:
        tasks, texts = architectures_and_tasks(data, arguments.networks, arguments.epochs, run_dir)
    print(f"{len(tasks)} architectures of the demo data ({len(X_train)} training sessions), "
          f"{os.cpu_count()} CPUs:")
    for index, text in enumerate(texts):
        print(f"  {index:2d}  {text}")
    results = {}
    for setting in arguments.settings:
        results[setting] = run_setting(setting, data, folds, tasks)
    baseline_seconds, baseline_scores = results[arguments.settings[0]]
    print(f"\n{'setting':<12} {'seconds':>8} {'networks/h':>11} {'vs ' + arguments.settings[0]:>14}  scores")
    for setting, (seconds, scores) in results.items():
        same = scores == baseline_scores
        differences = [abs(scores[i] - baseline_scores[i]) for i in scores
                       if isinstance(scores[i], float) and isinstance(baseline_scores[i], float)]
        agreement = ("identical" if same else
                     f"max |difference| {max(differences, default=float('nan')):.4f}, mean val "
                     f"{sum(v for v in scores.values() if isinstance(v, float)) / max(len(differences), 1):.4f} "
                     f"vs {sum(v for v in baseline_scores.values() if isinstance(v, float)) / max(len(differences), 1):.4f}")
        print(f"{setting:<12} {seconds:8.1f} {len(tasks) * 3600 / seconds:11.1f} "
              f"{baseline_seconds / seconds:13.2f}x  {agreement}")
    by_workers = {}
    for setting, (seconds, scores) in results.items():
        executor, shape = setting.split(":")
        by_workers.setdefault(shape, {})[executor] = (seconds, scores)
    for shape, executors in by_workers.items():
        if {"local", "ray"} <= set(executors):
            (local_seconds, local_scores), (ray_seconds, ray_scores) = executors["local"], executors["ray"]
            print(f"ray vs local at {shape}: {100 * (ray_seconds - local_seconds) / local_seconds:+.1f} % time; "
                  f"scores {'identical' if local_scores == ray_scores else 'DIFFER'}")


if __name__ == "__main__":
    main()
