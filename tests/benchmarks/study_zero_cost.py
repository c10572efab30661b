"""Do zero-cost proxies rank networks better than counting parameters? (a measured study, not a test)

    python tests/benchmarks/study_zero_cost.py [--networks 100] [--out FILE] [--part 0 --parts 2]

Draws --networks random valid architectures of the default search space (the
thresholds and choices of B01_NAS.py), scores each at initialisation with
  - its parameter count and its FLOPs (the cost model),
  - synflow (Tanaka et al. 2020): sum of |w * dR/dw| with every weight made
    positive and an all-ones input, R the sum of the logits,
  - NASWOT (Mellor et al. 2021): log |det K| of the Hamming-similarity kernel of
    the activation patterns of a batch of 64 training sessions,
  - grad_norm: the norm of the gradient of the cross-entropy on that batch,
then trains it as the default run does (2 of 5 folds, up to 15 epochs, batch 64,
patience 5) and prints the Spearman rank correlation of each score with the
validation accuracy, and of the validation accuracy after 1, 2, 3 and 5 epochs
with the final one (what successive halving's min_epochs relies on), and
simulates successive halving on those training histories. Results go to
logs/zero_cost_study/results.jsonl one network at a time, so an interrupted
study continues where it stopped. One TensorFlow thread per process: run one
process per core with --part 0 --parts 2 and --part 1 --parts 2 (it times nothing).
"""
import argparse
import json
import os
import tempfile
import time

import benchmark_setup  # noqa: E402,F401  (the project and the tests' helpers on the path)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from hwnas.common.quiet import quiet_native_output, quiet_tensorflow_logs  # noqa: E402

with quiet_native_output():
    import keras  # noqa: E402
    import numpy as np  # noqa: E402
    import tensorflow as tf  # noqa: E402
    from scipy.stats import spearmanr  # noqa: E402

    from hwnas.search import budget as halving_lib  # noqa: E402
    from hwnas.data import idx as data_lib  # noqa: E402
    from hwnas.network.net import net_from_architecture  # noqa: E402
    from benchmark_throughput import architectures_and_tasks  # noqa: E402
quiet_tensorflow_logs()

PROJECT_DIR = benchmark_setup.PROJECT_DIR
PROXY_BATCH = 64  # sessions NASWOT and grad_norm look at
EARLY_EPOCHS = (1, 2, 3, 5)


def logits_model(net):
    """The network's Keras model with the classifier's softmax removed (proxies look at logits)."""
    model = net.ins_keras_model()
    model.get_layer("classifier").activation = keras.activations.linear
    return model


def synflow(net):
    """log10 of synflow: every weight made positive, an all-ones input, the sum of the
    logits differentiated by each weight; the sum of |w * gradient|."""
    model = logits_model(net)
    for variable in model.trainable_variables:
        variable.assign(tf.abs(variable))
    ones = tf.ones((1, *net.input_shape))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(model(ones, training=False))
    gradients = tape.gradient(total, model.trainable_variables)
    score = sum(float(tf.reduce_sum(tf.abs(w * g))) for w, g in zip(model.trainable_variables, gradients)
                if g is not None)
    return float(np.log10(score)) if score > 0 else float("-inf")


def naswot(net, batch):
    """log |det K|, K[i, j] = units on which sessions i and j are both active or both not
    (every block's activation output, active = above zero)."""
    model = net.ins_keras_model()
    activation_layers = [model.get_layer(block.layer_names()["activation"]) for block in net.block_list]
    probe = keras.Model(model.inputs[0], [layer.output for layer in activation_layers])
    outputs = probe(batch, training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    codes = np.concatenate([(np.asarray(output) > 0).reshape(len(batch), -1) for output in outputs], axis=1)
    codes = codes.astype(np.float64)
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T
    sign, log_determinant = np.linalg.slogdet(kernel)
    return float(log_determinant) if sign > 0 else float("-inf")


def grad_norm(net, batch, labels):
    """The norm of the cross-entropy's gradient over every weight, on one batch."""
    model = net.ins_keras_model()
    with tf.GradientTape() as tape:
        loss = keras.losses.categorical_crossentropy(labels, model(batch, training=True))
        loss = tf.reduce_mean(loss)
    gradients = [g for g in tape.gradient(loss, model.trainable_variables) if g is not None]
    return float(tf.sqrt(sum(tf.reduce_sum(g * g) for g in gradients)))


def score_and_train(task, data, folds, batch, labels):
    net = net_from_architecture(task["architecture"], None, data, task["train_settings"])
    keras.utils.set_random_seed(task["train_settings"]["seed"])
    n_params, _, flops, _, _ = net.hw_measures()
    row = {"architecture_text": net.architecture_text(), "architecture": task["architecture"],
           "params": n_params, "flops": flops, "synflow": synflow(net), "naswot": naswot(net, batch),
           "grad_norm": grad_norm(net, batch, labels)}
    keras.backend.clear_session()
    start = time.perf_counter()
    net.proxy_train_routine(True, folds, task["num_selected_folds"])
    row.update(val_accuracy=net.val_score, train_seconds=round(time.perf_counter() - start, 1),
               epoch_val_accuracy=net.epoch_val_accuracy)
    keras.backend.clear_session()
    return row


def accuracy_after(row, epochs):
    """Mean over the folds of the validation accuracy after `epochs` epochs (the last one if fewer ran)."""
    return float(np.mean([history[min(epochs, len(history)) - 1] for history in row["epoch_val_accuracy"]]))


def table(rows):
    accuracy = [row["val_accuracy"] for row in rows]
    lines = [f"{len(rows)} random valid networks of the default search space, trained as the default run "
             f"(2 folds, up to 15 epochs). Spearman rank correlation with the validation accuracy, and its "
             f"difference from the parameter count's with a 95 % bootstrap interval (2,000 resamples of the "
             f"networks):", "",
             "| score | Spearman ρ | p-value | ρ − ρ(parameter count) [95 % interval] |", "| --- | --- | --- | --- |"]
    params = [row["params"] for row in rows]
    scores = [("params", "parameter count", params), ("flops", "FLOPs", None),
              ("synflow", "synflow (at init)", None), ("naswot", "NASWOT (at init)", None),
              ("grad_norm", "grad_norm (at init)", None)]
    scores = [(label, values or [row[name] for row in rows]) for name, label, values in scores]
    scores += [(f"validation accuracy after {epochs} epoch{'s' if epochs > 1 else ''}",
                [accuracy_after(row, epochs) for row in rows]) for epochs in EARLY_EPOCHS]
    rng = np.random.default_rng(0)
    resamples = [rng.integers(0, len(rows), len(rows)) for _ in range(2000)]
    for label, values in scores:
        rho, p_value = spearmanr(values, accuracy)
        values, params_array, accuracy_array = np.asarray(values), np.asarray(params), np.asarray(accuracy)
        differences = [spearmanr(values[i], accuracy_array[i])[0] - spearmanr(params_array[i], accuracy_array[i])[0]
                       for i in resamples]
        low, high = np.nanpercentile(differences, [2.5, 97.5])
        lines.append(f"| {label} | {rho:+.3f} | {p_value:.2g} | {rho - spearmanr(params, accuracy)[0]:+.3f} "
                     f"[{low:+.3f}, {high:+.3f}] |")
    return "\n".join(lines)


def read_results(path):
    """index -> result row of the networks done so far (rows written without an index are in order)."""
    if not os.path.exists(path):
        return {}
    with open(path) as results_file:
        rows = [json.loads(line) for line in results_file if line.strip()]
    return {row.get("index", line_number): row for line_number, row in enumerate(rows)}


def halving_simulation(rows, group_size, min_epochs, halving_eta=3, n_groups=5000):
    """What successive halving would keep of random generations of group_size of these networks.

    A rung of e epochs is the first e epochs of the same seeded training (the same
    shuffles and steps), scored, as early stopping's restore does, by its best epoch
    (here: its best validation accuracy, an estimate). Returns (fraction of groups whose
    fully trained network is the group's best, mean accuracy lost to the group's best,
    epochs spent as a fraction of training every network fully)."""
    rng = np.random.default_rng(1)
    budgets = halving_lib.rung_epochs(min_epochs, halving_eta, max(len(h) for r in rows for h in r["epoch_val_accuracy"]))
    kept_best, lost, spent, full_cost = 0, [], 0, 0
    for _ in range(n_groups):
        group = [rows[i] for i in rng.choice(len(rows), group_size, replace=False)]
        full_cost += sum(len(history) for row in group for history in row["epoch_val_accuracy"])
        alive = list(range(group_size))
        for rung, budget in enumerate(budgets):
            if len(alive) == 1 or rung == len(budgets) - 1:
                spent += sum(len(history) for i in alive for history in group[i]["epoch_val_accuracy"])
                break
            spent += sum(min(budget, len(history)) for i in alive for history in group[i]["epoch_val_accuracy"])
            score = {i: np.mean([max(history[:budget]) for history in group[i]["epoch_val_accuracy"]]) for i in alive}
            alive = sorted(alive, key=lambda i: -score[i])[:halving_lib.n_promoted(len(alive), halving_eta)]
        winner = max(group[i]["val_accuracy"] for i in alive)
        best = max(row["val_accuracy"] for row in group)
        kept_best += winner == best
        lost.append(best - winner)
    return kept_best / n_groups, float(np.mean(lost)), spent / full_cost


def halving_table(rows):
    lines = ["Successive halving (halving_eta=3) simulated on these networks' own training histories, 5,000 random "
             "generations each:", "", "| generation | min_epochs | keeps the best network | accuracy lost (mean) "
             "| epochs spent |", "| --- | --- | --- | --- | --- |"]
    for group_size in (4, 6, 12):
        for min_epochs in (1, 2, 3, 5):
            kept, lost, spent = halving_simulation(rows, group_size, min_epochs)
            lines.append(f"| {group_size} networks | {min_epochs} | {kept:.1%} | {lost:.4f} | {spent:.1%} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=100)
    parser.add_argument("--results", default=os.path.join(PROJECT_DIR, "logs", "zero_cost_study", "results.jsonl"))
    parser.add_argument("--out", help="also write the table (Markdown) to this file")
    parser.add_argument("--part", type=int, default=0, help="this process trains networks part, part + parts, ...")
    parser.add_argument("--parts", type=int, default=1, help="processes sharing the study (one per core)")
    parser.add_argument("--tables-only", action="store_true", help="print the tables of the results so far")
    arguments = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    X_train, y_train, X_test, y_test = data_lib.load_and_preprocess_data(seed=0)
    folds = data_lib.fold_index(X_train, y_train, 5, seed=0)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    data = data_lib.SessionData(X_train, data_lib.one_hot(y_train, n_classes), X_test,
                                data_lib.one_hot(y_test, n_classes))
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(X_train), PROXY_BATCH, replace=False)
    batch, labels = data.X_train[chosen], data.Y_train[chosen]
    if arguments.tables_only:
        rows = [row for _, row in sorted(read_results(arguments.results).items())]
        print(table(rows) + "\n\n" + halving_table(rows))
        return
    with tempfile.TemporaryDirectory() as run_dir:
        tasks, _ = architectures_and_tasks(data, arguments.networks, 15, run_dir)
    os.makedirs(os.path.dirname(arguments.results), exist_ok=True)
    for index in range(arguments.part, arguments.networks, arguments.parts):
        if index in read_results(arguments.results):
            continue
        row = dict(score_and_train(tasks[index], data, folds, batch, labels), index=index)
        with open(arguments.results, "a") as results_file:  # one line per write: parts may share the file
            results_file.write(json.dumps(row) + "\n")
        print(f"{index + 1}/{arguments.networks}: val {row['val_accuracy']:.4f} params {row['params']} "
              f"synflow {row['synflow']:.2f} naswot {row['naswot']:.1f} grad_norm {row['grad_norm']:.3f} "
              f"({row['train_seconds']} s) {row['architecture_text']}", flush=True)
    done = read_results(arguments.results)
    if len(done) < arguments.networks:
        print(f"{len(done)} of {arguments.networks} networks done (the other parts are still running)")
        return
    rows = [done[index] for index in sorted(done)][:arguments.networks]
    text = table(rows) + "\n\n" + halving_table(rows)
    print("\n" + text)
    if arguments.out:
        with open(arguments.out, "w") as out_file:
            out_file.write(text + "\n")


if __name__ == "__main__":
    main()
