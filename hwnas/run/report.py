"""What a person reads of a run: summary.json, best_architecture.txt, the two plots,
and loading a finished run back. Everything here reads the run folder's files, so
it works on any run, finished or not.
"""
import csv
import glob
import io
import json
import os
import statistics

import matplotlib

matplotlib.use("Agg")  # headless: the plots are files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hwnas.common.files import write_atomically  # noqa: E402
from hwnas.data.metrics import macro_average, per_class_descriptors  # noqa: E402
from hwnas.evaluation.evaluate import Status  # noqa: E402
from hwnas.network.figures import HardwareFigures  # noqa: E402
from hwnas.run.records import read_rows  # noqa: E402
from hwnas.strategy import objectives as objectives_lib  # noqa: E402

# children.csv columns read as numbers
NUMERIC_FIELDS = ("generation", *HardwareFigures.names(), "flash_measured", "ram_measured", "val_accuracy",
                  "test_accuracy", "deployed_test_accuracy", "train_seconds", "epochs_trained", "rung")


def read_records(run_dir, file_name="children.csv"):
    """The rows of run_dir/children.csv (or pareto.csv), numeric columns as numbers (None where empty)."""
    rows = read_rows(os.path.join(run_dir, file_name))
    for row in rows:
        for field in NUMERIC_FIELDS:
            row[field] = float(row[field]) if row.get(field) not in (None, "") else None
    return rows


def trained_records(run_dir):
    """The records of networks trained (or dry-run) with scores: no failures, no reused results, none
    stopped early by successive halving (their scores are of fewer epochs)."""
    return [row for row in read_records(run_dir)
            if row["val_accuracy"] is not None and row["status"] not in (Status.REUSED, Status.STOPPED)]


def pareto_front(points):
    """Indices of the points (cost, score) that no other point beats (lower cost and
    higher score), by increasing cost."""
    front = objectives_lib.first_front([(cost, -score) for cost, score in points])
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


FOREST_FILE = "reference_forest.json"  # the run's reference forest (hwnas.data.forest), as plain data


def reference_forest_of(run_dir):
    """The reference forest a run wrote ({"accuracy", "macro_f1", "per_class", ...}), or None."""
    return _read_json(os.path.join(run_dir, FOREST_FILE))


def write_summary(run_dir, elapsed_seconds, generations_done):
    """Writes run_dir/summary.json: parameters, the best network, its figures and metrics, counts and
    times, and the reference forest's test figures beside."""
    records = read_records(run_dir)
    parameters = _read_json(os.path.join(run_dir, "parameters.json"))
    best = _read_json(best_model_path(run_dir, ".json"))
    statuses = [row["status"] for row in records]
    summary = {
        "run_dir": os.path.abspath(run_dir),
        "generations_done": generations_done,
        "networks_evaluated": len(records),
        "networks_trained": len(records) - statuses.count(Status.REUSED),
        "networks_reused": statuses.count(Status.REUSED),
        "networks_failed": statuses.count(Status.FAILED),
        "networks_stopped_early": statuses.count(Status.STOPPED),
        "epochs_trained": sum(row.get("epochs_trained") or 0 for row in records),
        "pareto_front_size": len(read_records(run_dir, "pareto.csv")),
        "elapsed_seconds": round(elapsed_seconds, 1),
        "training_seconds": round(sum(row["train_seconds"] or 0.0 for row in records), 1),
        "best": best,
        # macro averaging weighs every class alike: what the papers' per-class tables average
        "test_macro_f1": ((best or {}).get("test_metrics") or {}).get("f1"),
        "deployed_test_macro_f1": ((best or {}).get("deployed_measured") or {}).get("test_f1"),
        # the best network trained again on every training session (hwnas.search.final), when it was
        "final_training": (best or {}).get("final_training"),
        "reference_forest": {name: value for name, value in (reference_forest_of(run_dir) or {}).items()
                             if name != "per_class"} or None,
        "parameters": parameters,
    }
    _write_json(os.path.join(run_dir, "summary.json"), summary)
    return summary


def write_best_architecture(run_dir, net, device=None):
    """Writes run_dir/best_architecture.txt: the best network's blocks, its Keras layer table,
    and with device (hwnas.devices.TargetDevice) its estimated latency per layer there."""
    model = net.ins_keras_model()
    rows = [("layer", "type", "output shape", "params")]
    for layer in model.layers:
        rows.append((layer.name, type(layer).__name__, str(tuple(layer.output.shape)), str(layer.count_params())))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = [f"Best network {net.child_id}: {net.architecture_text()}",
             f"input: {net.input_stage.describe()}; {net.num_classes} classes", ""]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) if column < 3 else cell.rjust(width)
                               for column, (cell, width) in enumerate(zip(row, widths))))
    figures = net.figures()
    lines += ["", f"params {figures.n_params}, largest tensor {figures.max_tens} elements, FLOPs {figures.flops}",
              f"{net.deploy_precision} deployment: flash {figures.flash_size} B, RAM {figures.ram_size} B (estimated)"]
    if net.deployed:
        lines.append(f"measured: flash {net.deployed['flash_bytes']} B, TFLM arena {net.deployed['arena_bytes']} B")
    if device is not None:
        latency_ms = device.latency_ms(net)
        lines += ["", f"on {device.describe()}:",
                  f"  latency {latency_ms:.3f} ms, energy {device.energy_mj(latency_ms):.4f} mJ (estimated)"]
        lines += [f"  {name:<16} {ms:9.3f} ms" for name, ms in device.layer_latencies_ms(net)]
    write_atomically(os.path.join(run_dir, "best_architecture.txt"), "\n".join(lines) + "\n")
    del model


def plot_progress(run_dir):
    """progress.png: best and median validation accuracy per generation, and the best so far."""
    records = trained_records(run_dir)
    if not records:
        return None
    generations = sorted({int(row["generation"]) for row in records})
    scores = {g: [row["val_accuracy"] for row in records if int(row["generation"]) == g] for g in generations}
    best = [max(scores[g]) for g in generations]
    median = [statistics.median(scores[g]) for g in generations]
    best_so_far = [max(best[:i + 1]) for i in range(len(best))]
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    axes.plot(generations, best, "o-", label="best of the generation")
    axes.plot(generations, median, "s--", label="median of the generation")
    axes.plot(generations, best_so_far, "k:", label="best so far")
    _forest_line(axes, run_dir)
    axes.set_xlabel("generation (0 = initial parent)")
    axes.set_ylabel("validation accuracy")
    axes.set_xticks(generations)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    axes.set_title("Search progress")
    return _save_figure(figure, os.path.join(run_dir, "progress.png"))


def plot_tradeoff(run_dir, flash_thr=None, ram_thr=None, device_panels=()):
    """tradeoff.png: validation accuracy against flash and against RAM for every evaluated
    network, and against each of device_panels: (figure name, threshold or None, axis label),
    e.g. ("latency_ms", 50, "latency on STM32F746 (ms)").

    Thresholds are drawn as dashed lines, the best network as a star, and the
    Pareto front (no other network is both smaller and more accurate) as a step line.
    """
    records = trained_records(run_dir)
    if not records:
        return None
    best_record = _read_json(best_model_path(run_dir, ".json"))
    best_id = best_record.get("child_id") if best_record else None
    panels = [("flash", flash_thr, "flash (bytes)", " B"), ("ram", ram_thr, "RAM: TFLM arena (bytes)", " B"),
              *((field, threshold, label, {"latency_ms": " ms", "energy_mj": " mJ"}.get(field, ""))
                for field, threshold, label in device_panels)]
    figure, axes_list = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), sharey=True)
    for axes, (field, threshold, label, unit) in zip(axes_list, panels):
        if field in ("flash", "ram"):  # the measured value where there is one, else the estimate
            costs = [row[f"{field}_measured"] or row[f"{field}_size"] for row in records]
        else:
            costs = [row[field] for row in records]
        scores = [row["val_accuracy"] for row in records]
        axes.scatter(costs, scores, s=18, alpha=0.6, label="evaluated networks")
        front = pareto_front(list(zip(costs, scores)))
        axes.step([costs[i] for i in front], [scores[i] for i in front], where="post", color="tab:orange",
                  label="Pareto front")
        for i, row in enumerate(records):
            if row["child_id"] == best_id:
                axes.scatter([costs[i]], [scores[i]], marker="*", s=220, color="tab:red", zorder=3,
                             label=f"best ({best_id})")
        if threshold is not None:
            axes.axvline(threshold, color="gray", linestyle="--", label=f"threshold {threshold}{unit}")
        axes.set_xlabel(label)
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right", fontsize=8)
    for axes in axes_list:
        _forest_line(axes, run_dir)
    axes_list[0].set_ylabel("validation accuracy")
    figure.suptitle("Accuracy against the device's memory" + (" and time" if device_panels else ""))
    return _save_figure(figure, os.path.join(run_dir, "tradeoff.png"))


def _forest_line(axes, run_dir):
    """The reference forest's test accuracy as a horizontal line, when the run has one."""
    forest = reference_forest_of(run_dir)
    if forest is not None:
        axes.axhline(forest["accuracy"], color="tab:green", linestyle="-.", linewidth=1,
                     label=f"reference forest, test {forest['accuracy']:.3f}")
        axes.legend(loc="lower right", fontsize=8)


def best_model_path(run_dir, extension=".keras"):
    """Path of the run's best model file with that extension: models/best_model<extension>,
    or <partial_saver_name>_best_model<extension> for a run that named its saves."""
    default = os.path.join(run_dir, "models", f"best_model{extension}")
    if os.path.exists(default):
        return default
    named = sorted(glob.glob(os.path.join(run_dir, "models", f"*_best_model{extension}")))
    return named[0] if named else default


def load_best_model(run_dir):
    """Loads a run's best network: returns (Keras model, summary dict).

    The summary is summary.json when the run wrote one, else the best model's .json record.
    Raises FileNotFoundError naming what is missing.
    """
    import keras
    model_path = best_model_path(run_dir)
    if not os.path.exists(model_path):
        raise FileNotFoundError(f"{model_path}: no saved best model (a dry run, or not a run folder)")
    summary = _read_json(os.path.join(run_dir, "summary.json")) or {
        "best": _read_json(best_model_path(run_dir, ".json"))}
    return keras.models.load_model(model_path), summary


def _read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as file:
        return json.load(file)


def _write_json(path, content):
    write_atomically(path, json.dumps(content, indent=2))


def _save_figure(figure, path):
    temporary_path = path + ".partial.png"
    figure.tight_layout()
    figure.savefig(temporary_path, dpi=100)
    plt.close(figure)
    os.replace(temporary_path, path)
    return path


PER_CLASS_FIELDS = ("label", "class", "support", "precision", "recall", "f1", "deployed_precision",
                    "deployed_recall", "deployed_f1", "forest_precision", "forest_recall", "forest_f1")


KINDS = (("float", ""), ("deployed", "deployed_"), ("forest", "forest_"))  # per_class.csv's columns by model


def write_class_results(folder, prefix, Y_test, predictions, class_names, deploy_precision="int8", forest=None):
    """Per-class results of a network on the test split: <folder>/<prefix>per_class.csv (precision,
    recall, F1 and support per class, of the Keras model and of the deployed model run by TFLM,
    then their macro averages) and <prefix>confusion.png (both confusion matrices).

    Y_test: one-hot test labels; predictions: {"float": outputs, "deployed": outputs or None};
    class_names: a name per label; forest: the run's reference forest (reference_forest_of), whose
    columns stand beside when it was scored on the same sessions. The macro row averages over the
    classes with test sessions (hwnas.data.metrics.compute_descriptors' macro-F1, the log's and
    summary.json's). Returns the paths written."""
    n_classes = Y_test.shape[1]
    results = {kind: per_class_descriptors(Y_test, outputs, n_classes)
               for kind, outputs in predictions.items() if outputs is not None}
    if forest is not None and forest["per_class"]["support"] == results["float"][0]["support"]:
        results["forest"] = (forest["per_class"], None)
    lines = io.StringIO()
    writer = csv.DictWriter(lines, fieldnames=PER_CLASS_FIELDS, lineterminator="\n")
    writer.writeheader()
    for label in range(n_classes):
        row = {"label": label, "class": class_names[label], "support": results["float"][0]["support"][label]}
        for kind, prefix_text in KINDS:
            if kind in results:
                row.update({f"{prefix_text}{name}": round(results[kind][0][name][label], 4)
                            for name in ("precision", "recall", "f1")})
        writer.writerow(row)
    support = results["float"][0]["support"]
    n_present = sum(n > 0 for n in support)
    macro = {"label": "", "class": "macro average" if n_present == n_classes else
             f"macro average (the {n_present} classes with test sessions)", "support": int(sum(support))}
    for kind, prefix_text in KINDS:
        if kind in results:
            macro.update({f"{prefix_text}{name}": round(macro_average(results[kind][0][name], support), 4)
                          for name in ("precision", "recall", "f1")})
    results.pop("forest", None)  # (no confusion matrix of its own on the figure)
    writer.writerow(macro)
    csv_path = os.path.join(folder, f"{prefix}per_class.csv")
    write_atomically(csv_path, lines.getvalue())
    titles = {"float": "Keras model (float32)", "deployed": f"deployed {deploy_precision} model (TFLM)"}
    figure, axes_list = plt.subplots(1, len(results), figsize=(5.2 * len(results) + 1, 4.8), squeeze=False)
    for axes, (kind, (_, matrix)) in zip(axes_list[0], results.items()):
        shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)  # each true class's row sums to 1
        axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for true_class in range(n_classes):
            for predicted in range(n_classes):
                if matrix[true_class, predicted]:
                    axes.text(predicted, true_class, str(matrix[true_class, predicted]), ha="center", va="center",
                              fontsize=7, color="white" if shares[true_class, predicted] > 0.5 else "black")
        axes.set_xticks(range(n_classes), class_names, rotation=60, ha="right", fontsize=7)
        axes.set_yticks(range(n_classes), class_names, fontsize=7)
        axes.set_xlabel("predicted class")
        axes.set_ylabel("true class")
        axes.set_title(titles[kind], fontsize=9)
    figure.suptitle("Test split: sessions per true and predicted class")
    png_path = _save_figure(figure, os.path.join(folder, f"{prefix}confusion.png"))
    return csv_path, png_path


def over_classes(net):
    """' (macro averages over the N classes with test sessions)' when some class has none, else ''."""
    present, n_classes = int((net.data.Y_test.sum(axis=0) > 0).sum()), net.data.num_classes
    return "" if present == n_classes else f" (macro averages over the {present} of {n_classes} classes with test sessions)"


def empty_labels_text(data):
    """A sentence on the labels num_classes counts that no session has ('' when there is none)."""
    empty = data.empty_labels()
    if not empty:
        return ""
    return (f" Label{'s' * (len(empty) > 1)} {', '.join(map(str, empty))} ha{'ve' if len(empty) > 1 else 's'} no "
            f"session: the networks have an output for {'them' if len(empty) > 1 else 'it'} that nothing trains or "
            f"tests, and the macro averages leave {'them' if len(empty) > 1 else 'it'} out.")
