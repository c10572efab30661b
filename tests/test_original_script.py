"""A script written for the original toolkit runs here unchanged, and the main script's
parameter block takes a user's own variables."""
import ast
import csv
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import library_load_and_split_data as data_lib
from conftest import PROJECT_DIR, TINY_RUN
from hwnas.network import deploy
from library_compute_stats import compute_descriptors

# The original toolkit's main script, line for line (its module names are this project's),
# on a slice of the demo data so that the test is quick: 1 generation, 2 children, 1 epoch.
ORIGINAL_SCRIPT = '''
import json
from datetime import datetime
from keras.utils import to_categorical
import library_load_and_split_data
import library_nas

num_classes = 6
test_size = 0.1
X_train_val, y_train_val, X_test, y_test = library_load_and_split_data.load_and_preprocess_data(num_classes, test_size, encode_labels=False)
X_train_val, y_train_val, X_test, y_test = X_train_val[:300], y_train_val[:300], X_test[:100], y_test[:100]
folds = library_load_and_split_data.fold_index(X_train_val, y_train_val)
y_train_val = to_categorical(y_train_val, num_classes); y_test = to_categorical(y_test, num_classes)
preloaded_data = (X_train_val, y_train_val, X_test, y_test)
timestamp = datetime.now().strftime("%Y%m%d_%H%M%S")
nas_saver_name = f"NAS_logger_test_original_{timestamp}"
partial_saver_name = f"Partial_saver_logger_{timestamp}"
nas = library_nas.NAS(is_train_proxy=True, is_train=False, max_depth_father=5, max_depth=5, check_hw=True,
                      params_thr=120000, flops_thr=11000000, flash_thr=480000, ram_thr=88000, max_tens_thr=22000,
                      n_generations=1, n_child=2, n_mutations=2, partial_save_steps=5, smart_start=True,
                      is_random_walk=True, nas_saver_name=nas_saver_name, partial_saver_name=partial_saver_name,
                      preloaded_data=preloaded_data, use_full_training=False, epochs=1)
generated_net, best_absolute = nas.run_NAS(folds)
print(json.dumps({"run_dir": nas.run_dir, "partial_saver_name": partial_saver_name,
                  "parent": [generated_net.child_id, generated_net.trained, generated_net.val_score],
                  "best": [best_absolute.child_id, best_absolute.trained, best_absolute.val_score,
                           best_absolute.test_metrics["accuracy"]]}))
'''


def test_a_script_written_for_the_original_toolkit_runs_unchanged(tmp_path):
    script = tmp_path / "original_B01_NAS.py"
    script.write_text(ORIGINAL_SCRIPT)
    environment = dict(os.environ, PYTHONPATH=PROJECT_DIR)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900,
                            cwd=PROJECT_DIR, env=environment)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    run_dir = outcome["run_dir"]
    try:
        # the run folder is made under logs/ and named from nas_saver_name
        assert os.path.dirname(run_dir) == os.path.join(PROJECT_DIR, "logs")
        assert re.search(r"\d{8}-\d{6}_NAS_logger_test_original_\d{8}_\d{6}$", run_dir)
        parent_id, parent_trained, _ = outcome["parent"]
        best_id, best_trained, best_val, best_test = outcome["best"]
        assert parent_trained and best_trained  # both Nets carry their trained weights
        with open(os.path.join(run_dir, "children.csv")) as records_file:
            rows = list(csv.DictReader(records_file))
        assert len(rows) == 3 and parent_id in {row["child_id"] for row in rows if row["generation"] == "1"}
        assert best_val == max(float(row["val_accuracy"]) for row in rows)
        # the partial saves are named from partial_saver_name; the saved best model reproduces its test accuracy
        model_path = os.path.join(run_dir, "models", f"{outcome['partial_saver_name']}_best_model.keras")
        model = keras.models.load_model(model_path)
        X_train_val, y_train_val, X_test, y_test = data_lib.load_and_preprocess_data(6, 0.1, encode_labels=False)
        metrics = compute_descriptors(y_test[:100], model.predict(X_test[:100], verbose=0))
        assert metrics["accuracy"] == pytest.approx(best_test)
        assert os.path.exists(os.path.join(run_dir, "models", f"{outcome['partial_saver_name']}_parent.keras"))
        from hwnas.run import report
        loaded, summary = report.load_best_model(run_dir)
        assert summary["best"]["child_id"] == best_id and loaded.count_params() == model.count_params()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def test_a_plain_variable_of_the_users_above_the_rule_line_does_not_break_the_script(tmp_path, demo_subset_files):
    images_path, labels_path = demo_subset_files
    script = open(os.path.join(PROJECT_DIR, "B01_NAS.py")).read()
    rule = script.index("# ------")
    script = script[:rule] + "my_notes = 'baseline of Monday'  # a variable of the user's\n" + script[rule:]
    (tmp_path / "B01_NAS.py").write_text(script)
    result = subprocess.run([sys.executable, str(tmp_path / "B01_NAS.py"), f"images_path={images_path}",
                             f"labels_path={labels_path}", f"logs_dir={tmp_path / 'logs'}", "n_generations=0",
                             *[override for override in TINY_RUN if not override.startswith("n_generations")]],
                            capture_output=True, text=True, timeout=900, cwd=PROJECT_DIR,
                            env=dict(os.environ, PYTHONPATH=PROJECT_DIR))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (run_dir,) = glob.glob(str(tmp_path / "logs" / "*"))
    assert json.load(open(os.path.join(run_dir, "parameters.json")))["my_notes"] == "baseline of Monday"


def readme_block(heading):
    """The first ```python block after a README heading."""
    readme = open(os.path.join(PROJECT_DIR, "README.md")).read()
    section = readme[readme.index(heading):]
    return section[section.index("```python") + len("```python"):section.index("```", section.index("```python") + 3)]


def test_readmes_load_the_best_model_example_reproduces_the_recorded_test_metrics(tiny_run, capsys, monkeypatch):
    run_dir = tiny_run[0]
    code = readme_block("## Load the best model")
    code = re.sub(r'run_dir = .*', f"run_dir = {run_dir!r}", code, count=1)
    monkeypatch.chdir(PROJECT_DIR)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    printed = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])
    recorded = json.load(open(os.path.join(run_dir, "models", "best_model.json")))["test_metrics"]
    assert printed == pytest.approx(recorded)


def test_exporting_a_saved_model_gives_the_deployed_models_figures(tiny_run, small_data, tmp_path):
    run_dir = tiny_run[0]
    data, _ = small_data
    record = json.load(open(os.path.join(run_dir, "models", "best_model.json")))
    model_bytes = deploy.export_keras_file(os.path.join(run_dir, "models", "best_model.keras"),
                                           data.X_train[:200], str(tmp_path / "exported_int8"))
    assert len(model_bytes) == record["deployed_measured"]["flash_bytes"]
    assert deploy.tflm_arena(model_bytes)["total"] == record["deployed_measured"]["arena_bytes"]
    assert os.path.getsize(tmp_path / "exported_int8.tflite") == len(model_bytes)
    assert "exported_int8_arena_bytes" in (tmp_path / "exported_int8.h").read_text()
    predictions = deploy.tflm_predict(model_bytes, data.X_test)
    assert np.isfinite(predictions).all() and predictions.shape == (len(data.X_test), data.num_classes)
