"""Do zero-cost proxies rank networks better than counting parameters? (a measured study, not a test)

    python tests/study_zero_cost.py [--networks 100] [--out FILE]

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
with the final one (what successive halving's min_epochs relies on). Results go to
logs/zero_cost_study/results.jsonl one network at a time, so an interrupted
study continues where it stopped. One TensorFlow thread: it can run beside
other work (it times nothing).
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import library_config  # noqa: E402

with library_config.quiet_native_output():
    import keras  # noqa: E402
    import numpy as np  # noqa: E402
    import tensorflow as tf  # noqa: E402
    from scipy.stats import spearmanr  # noqa: E402

    import library_load_and_split_data as data_lib  # noqa: E402
    from library_net import net_from_architecture  # noqa: E402
    from benchmark_throughput import architectures_and_tasks  # noqa: E402
library_config.quiet_tensorflow_logs()

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
             f"(2 folds, up to 15 epochs). Spearman rank correlation with the validation accuracy:", "",
             "| score | Spearman ρ | p-value |", "| --- | --- | --- |"]
    for name, label in (("params", "parameter count"), ("flops", "FLOPs"), ("synflow", "synflow (at init)"),
                        ("naswot", "NASWOT (at init)"), ("grad_norm", "grad_norm (at init)")):
        rho, p_value = spearmanr([row[name] for row in rows], accuracy)
        lines.append(f"| {label} | {rho:+.3f} | {p_value:.2g} |")
    for epochs in EARLY_EPOCHS:
        rho, p_value = spearmanr([accuracy_after(row, epochs) for row in rows], accuracy)
        lines.append(f"| validation accuracy after {epochs} epoch{'s' if epochs > 1 else ''} | {rho:+.3f} "
                     f"| {p_value:.2g} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=100)
    parser.add_argument("--results", default=os.path.join(PROJECT_DIR, "logs", "zero_cost_study", "results.jsonl"))
    parser.add_argument("--out", help="also write the table (Markdown) to this file")
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
    with tempfile.TemporaryDirectory() as run_dir:
        tasks, _ = architectures_and_tasks(data, arguments.networks, 15, run_dir)
    os.makedirs(os.path.dirname(arguments.results), exist_ok=True)
    done = []
    if os.path.exists(arguments.results):
        with open(arguments.results) as results_file:
            done = [json.loads(line) for line in results_file if line.strip()]
    for index in range(len(done), arguments.networks):
        row = score_and_train(tasks[index], data, folds, batch, labels)
        done.append(row)
        with open(arguments.results, "a") as results_file:
            results_file.write(json.dumps(row) + "\n")
        print(f"{index + 1}/{arguments.networks}: val {row['val_accuracy']:.4f} params {row['params']} "
              f"synflow {row['synflow']:.2f} naswot {row['naswot']:.1f} grad_norm {row['grad_norm']:.3f} "
              f"({row['train_seconds']} s) {row['architecture_text']}", flush=True)
    text = table(done)
    print("\n" + text)
    if arguments.out:
        with open(arguments.out, "w") as out_file:
            out_file.write(text + "\n")


if __name__ == "__main__":
    main()
