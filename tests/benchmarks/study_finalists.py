"""Study: how the search's best architectures do when trained again on every training session.

Takes a finished run's folder, its best --top distinct architectures by the search's validation
score (children.csv), and trains each again as the final training does (every training session
but a stratified held-out tenth, early stopping on it, at most final_epochs, 2 threads, one after
the other), on the run's own data and split (parameters.json). Prints, for each: the search's rank
and score, its accuracy on the held-out tenth, its test accuracy as Keras and as int8 on TFLM, and
what the final training would choose with final_candidates = 1 .. --top. With --copies-apart
False the held-out tenth ignores copies of a session (the split before they were kept on one side).

    python tests/benchmarks/study_finalists.py RUN_DIR [--top 10] [--copies-apart True]
"""
import argparse
import csv
import json
import os
import time

import benchmark_setup  # noqa: F401  (the project and the tests' helpers on the path)

from hwnas.common.quiet import quiet_tensorflow_logs  # noqa: E402


def best_distinct(run_dir, top):
    """child_ids of the run's best top distinct architectures by validation accuracy (ties: the
    earlier), with their search scores."""
    rows = [row for row in csv.DictReader(open(os.path.join(run_dir, "children.csv")))
            if row["status"] == "ok" and row["val_accuracy"]]
    rows.sort(key=lambda row: -float(row["val_accuracy"]))
    chosen, seen = [], set()
    for row in rows:
        if row["architecture"] not in seen:
            seen.add(row["architecture"])
            chosen.append((row["child_id"], float(row["val_accuracy"])))
    return chosen[:top]


def run_data(run_dir):
    """The run's SessionData, as B01_NAS.py loaded and split it (parameters.json)."""
    from hwnas.data import idx as data_lib
    parameters = json.load(open(os.path.join(run_dir, "parameters.json")))
    X_train, y_train, X_test, y_test = data_lib.load_and_preprocess_data(
        parameters["num_classes"], parameters["test_size"], images_path=parameters["images_path"],
        labels_path=parameters["labels_path"], test_images_path=parameters["test_images_path"],
        test_labels_path=parameters["test_labels_path"], seed=parameters["seed"], keep_bytes=True)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    data = data_lib.SessionData(X_train, data_lib.one_hot(y_train, n_classes), X_test, data_lib.one_hot(y_test, n_classes))
    return data, parameters


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--copies-apart", type=lambda text: text == "True", default=True)
    arguments = parser.parse_args()
    quiet_tensorflow_logs()
    import tensorflow as tf
    tf.config.threading.set_inter_op_parallelism_threads(2)
    tf.config.threading.set_intra_op_parallelism_threads(2)
    from hwnas.data.samples import holdout_split
    from hwnas.evaluation.evaluate import Task, evaluate
    from hwnas.run.records import RunRecords
    from hwnas.search.final import HOLDOUT_FRACTION

    data, parameters = run_data(arguments.run_dir)
    folds = [holdout_split(data.Y_train, HOLDOUT_FRACTION, parameters["seed"],
                           data.X_train if arguments.copies_apart else None)]
    records = RunRecords(arguments.run_dir)
    print(f"{arguments.run_dir}: {len(folds[0][0])} training sessions, {len(folds[0][1])} held out "
          f"(copies apart: {arguments.copies_apart}), {len(data.Y_test)} test sessions\n")
    print("| search rank | network | search val | held-out | test | int8 (TFLM) | epochs | s | architecture |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    texts = {row["child_id"]: row["architecture_text"] for row in records.read()}
    results = []
    for rank, (child_id, search_val) in enumerate(best_distinct(arguments.run_dir, arguments.top), start=1):
        state = records.network_state(child_id)
        task = Task(state.architecture, dict(state.train_settings, epochs=parameters.get("final_epochs", 30)),
                    state.deploy_precision, use_full_training=True, is_train=True, num_selected_folds=1)
        started = time.perf_counter()
        final = evaluate(task, data, folds).state
        int8 = (final.deployed or {}).get("test_accuracy")
        results.append((rank, child_id, final.val_score, int8))
        print(f"| {rank} | {child_id} | {search_val:.4f} | {final.val_score:.4f} | {final.test_metrics['accuracy']:.4f} | "
              f"{int8:.4f} | {final.epochs_trained} | {time.perf_counter() - started:.0f} | {texts[child_id].replace('|', '/')} |", flush=True)
    print("\nWhat the final training keeps with final_candidates = k (the best of the first k on the held-out tenth):")
    for k in range(1, len(results) + 1):
        rank, child_id, held_out, int8 = max(results[:k], key=lambda result: (result[2], -result[0]))
        print(f"  k={k}: {child_id} (search rank {rank}), held-out {held_out:.4f}, int8 on TFLM {int8:.4f}")


if __name__ == "__main__":
    main()
