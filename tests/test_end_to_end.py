"""One tiny real run of B01_NAS.py: the files a user reads, and the saved model's test accuracy."""
import csv
import glob
import json
import os

import keras
import numpy as np
import pytest

from hwnas.data import idx as data_lib
from conftest import run_main
from hwnas.data.metrics import compute_descriptors


def test_run_leaves_log_records_parameters_and_models(tiny_run):
    run_dir, stdout, _, _ = tiny_run
    for name in ("nas_log.txt", "children.csv", "parameters.json", "models/best_model.keras",
                 "models/best_model.json", "models/parent.keras", "models/best_model_int8.tflite",
                 "models/best_model_int8.h", "summary.json", "best_architecture.txt", "progress.png",
                 "tradeoff.png"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    with open(os.path.join(run_dir, "children.csv")) as records:
        rows = list(csv.DictReader(records))
    assert [row["child_id"] for row in rows] == ["g000_c0001", "g001_c0002", "g001_c0003",
                                                 "g002_c0004", "g002_c0005"]
    assert all(row["status"] == "ok" and row["flops"] == row["flops_keras_flops"] for row in rows)
    for row in rows:  # every child's int8 model was measured, and the estimates hold
        assert abs(int(row["flash_size"]) - int(row["flash_measured"])) <= 0.05 * int(row["flash_measured"])
        assert abs(int(row["ram_size"]) - int(row["ram_measured"])) <= 0.10 * int(row["ram_measured"])
    log = open(os.path.join(run_dir, "nas_log.txt")).read()
    assert "== Generation 2 of 2 ==" in log and "Absolute best:" in log and "test accuracy" in log
    assert json.load(open(os.path.join(run_dir, "parameters.json")))["n_child"] == 2
    assert "[g002_c0005]" in stdout and "Best network:" in stdout


def test_saved_best_model_reproduces_the_reported_test_accuracy(tiny_run):
    run_dir, _, images_path, labels_path = tiny_run
    record = json.load(open(os.path.join(run_dir, "models", "best_model.json")))
    _, _, X_test, y_test = data_lib.load_and_preprocess_data(
        None, 0.2, images_path=images_path, labels_path=labels_path, seed=0)
    model = keras.models.load_model(os.path.join(run_dir, "models", "best_model.keras"))
    metrics = compute_descriptors(y_test, model.predict(X_test, verbose=0))
    assert metrics["accuracy"] == pytest.approx(record["test_metrics"]["accuracy"])
    log = open(os.path.join(run_dir, "nas_log.txt")).read()
    assert f"test accuracy {metrics['accuracy']:.4f}" in log
    deployed = record["deployed_measured"]
    assert deployed["flash_bytes"] == os.path.getsize(os.path.join(run_dir, "models", "best_model_int8.tflite"))
    assert f"test accuracy of the deployed model run by TFLM: {deployed['test_accuracy']:.4f}" in log
    best_row = [row for row in csv.DictReader(open(os.path.join(run_dir, "children.csv")))
                if row["child_id"] == record["child_id"]][0]
    assert float(best_row["val_accuracy"]) == max(float(row["val_accuracy"])
                                                  for row in csv.DictReader(open(os.path.join(run_dir, "children.csv"))))


def test_rebuilt_network_with_loaded_weights_predicts_like_the_saved_model(tiny_run, small_data):
    from hwnas.network.net import net_from_architecture
    run_dir, _, _, _ = tiny_run
    data, folds = small_data
    record = json.load(open(os.path.join(run_dir, "models", "best_model.json")))
    net = net_from_architecture(record["architecture"], None, data, dict(epochs=1))
    net.proxy_train_routine(True, folds, 1)
    rebuilt = net.ins_keras_model(load_weigths=True)
    net.save_keras(os.path.join(run_dir, "rebuilt.keras"))
    loaded = keras.models.load_model(os.path.join(run_dir, "rebuilt.keras"))
    assert np.allclose(rebuilt.predict(data.X_test, verbose=0), loaded.predict(data.X_test, verbose=0), atol=1e-6)


def test_unknown_or_mistyped_override_is_rejected_with_valid_names():
    result = run_main("n_generation=3")
    assert result.returncode != 0
    assert "unknown parameter 'n_generation'" in result.stderr and "n_generations" in result.stderr
    result = run_main("n_child=two")
    assert result.returncode != 0 and "n_child='two'" in result.stderr


def test_summary_and_load_best_model_give_the_run_in_three_lines(tiny_run):
    from hwnas.run import report
    run_dir, _, images_path, labels_path = tiny_run
    model, summary = report.load_best_model(run_dir)
    assert summary["generations_done"] == 2 and summary["networks_evaluated"] == 5
    assert summary["parameters"]["n_child"] == 2
    assert model.count_params() == summary["best"]["n_params"]
    table = open(os.path.join(run_dir, "best_architecture.txt")).read()
    assert summary["best"]["child_id"] in table and "classifier" in table and "Dense" in table
    for name in ("progress.png", "tradeoff.png"):
        with open(os.path.join(run_dir, name), "rb") as image:
            assert image.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not glob.glob(os.path.join(run_dir, "**", "*.partial*"), recursive=True)


def test_pareto_front_keeps_only_undominated_points():
    from hwnas.run import report
    points = [(10, 0.5), (20, 0.9), (15, 0.4), (30, 0.95), (25, 0.9)]  # (cost, score)
    assert report.pareto_front(points) == [0, 1, 3]


def test_each_network_is_stored_once_and_the_checkpoint_holds_no_weights(tiny_run):
    import pickle
    run_dir = tiny_run[0]
    with open(os.path.join(run_dir, "children.csv")) as records:
        rows = list(csv.DictReader(records))
    stored = sorted(name[:-len(".pkl")] for name in os.listdir(os.path.join(run_dir, "networks")))
    best_id = json.load(open(os.path.join(run_dir, "models", "best_model.json")))["child_id"]
    # every network evaluated, and the best's final training (networks/final_<child_id>.pkl)
    assert stored == sorted([f"final_{best_id}", *(row["child_id"] for row in rows if row["status"] != "reused")])
    for name in stored:  # each file holds that network's weights and deployed model
        with open(os.path.join(run_dir, "networks", f"{name}.pkl"), "rb") as network_file:
            result = pickle.load(network_file)
        assert result["state"]["child_id"] == name.replace("final_", "") and result["state"]["deployed_model_bytes"]
        assert all(weights for weights in result["state"]["layer_weights"])  # (a network file holds plain data)
    with open(os.path.join(run_dir, "checkpoint.pkl"), "rb") as checkpoint_file:
        checkpoint = pickle.load(checkpoint_file)
    held = [checkpoint["absolute_best"], *checkpoint["population"]]
    assert all("layer_weights" not in state and "deployed_model_bytes" not in state for state in held)
    assert "evaluated_results" not in checkpoint  # the history is children.csv and the network files


def macro_f1_everywhere(run_dir):
    """The best model's test macro-F1 as per_class.csv, summary.json and nas_log.txt give it."""
    import re
    rows = list(csv.DictReader(open(os.path.join(run_dir, "per_class.csv"))))
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    log = open(os.path.join(run_dir, "nas_log.txt")).read()
    (logged,) = re.findall(r"recall [\d.]+, macro-F1 ([\d.]+) \(Keras, float32\)", log)
    return rows, float(rows[-1]["f1"]), summary["test_macro_f1"], float(logged), log


@pytest.mark.parametrize("case", ["a label without sessions", "a test pair of fewer classes"])
def test_one_macro_f1_in_every_file_when_a_class_has_no_test_session(tmp_path, demo_subset_files, case):
    from conftest import TINY_RUN, write_idx1, write_idx3
    images_path, labels_path = demo_subset_files
    images, labels = data_lib.read_idx3(images_path), data_lib.read_idx1(labels_path)
    overrides = [f"logs_dir={tmp_path / 'logs'}", *TINY_RUN, "n_generations=0", "final_epochs=1"]
    if case == "a label without sessions":  # labels 0, 1 and 3: four classes, label 2 empty
        kept = np.isin(labels, [0, 1, 3])
        write_idx3(tmp_path / "s.idx3", images[kept])
        write_idx1(tmp_path / "l.idx1", labels[kept])
        overrides += [f"images_path={tmp_path / 's.idx3'}", f"labels_path={tmp_path / 'l.idx1'}"]
    else:  # six classes to train on, a test pair of classes 0 to 3 only
        more_images = data_lib.read_idx3(data_lib.DEFAULT_IMAGES_PATH)[600:900]
        more_labels = data_lib.read_idx1(data_lib.DEFAULT_LABELS_PATH)[600:900]
        kept = more_labels < 4
        write_idx3(tmp_path / "t.idx3", more_images[kept])
        write_idx1(tmp_path / "tl.idx1", more_labels[kept])
        overrides += [f"images_path={images_path}", f"labels_path={labels_path}",
                      f"test_images_path={tmp_path / 't.idx3'}", f"test_labels_path={tmp_path / 'tl.idx1'}"]
    result = run_main(*overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = glob.glob(str(tmp_path / "logs" / "*"))
    rows, per_class_f1, summary_f1, logged_f1, log = macro_f1_everywhere(run_dir)
    assert per_class_f1 == pytest.approx(summary_f1, abs=5e-5) and logged_f1 == pytest.approx(summary_f1, abs=5e-5)
    if case == "a label without sessions":
        assert "Label 2 has no session" in log and "Label 2 has no session" in result.stdout
        assert rows[-1]["class"] == "macro average (the 3 classes with test sessions)"
    else:
        assert rows[-1]["class"] == "macro average (the 4 classes with test sessions)"
        assert "(macro averages over the 4 of 6 classes with test sessions)" in log
