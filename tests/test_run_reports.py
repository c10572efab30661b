"""What a run tells beside its networks: the reference forest (in the log's header, summary.json,
per_class.csv and the plots, with a warning when the labels sit in a few bytes) and TensorBoard's
event files (every network an HParams session, read back with TensorBoard's own reader)."""
import csv
import glob
import json
import os

import pytest

from conftest import TINY_RUN, run_main, write_idx1, write_idx3
from hwnas.data import idx as data_lib


def test_every_run_has_its_reference_forest_beside_the_network(tiny_run):
    run_dir, stdout, _, _ = tiny_run
    forest = json.load(open(os.path.join(run_dir, "reference_forest.json")))
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["reference_forest"]["accuracy"] == forest["accuracy"] and 0 < forest["accuracy"] <= 1
    header = open(os.path.join(run_dir, "nas_log.txt")).read().split("== Generation 0")[0]
    line = f"test accuracy {forest['accuracy']:.4f}, macro-F1 {forest['macro_f1']:.4f}."
    assert "Reference forest (200 trees on the 480 training sessions" in header and line in header
    assert line in stdout
    rows = list(csv.DictReader(open(os.path.join(run_dir, "per_class.csv"))))
    assert [float(row["forest_f1"]) for row in rows[:-1]] == pytest.approx(forest["per_class"]["f1"], abs=1e-4)
    assert float(rows[-1]["forest_f1"]) == pytest.approx(forest["macro_f1"], abs=1e-4)
    assert "Warning" not in header  # the demo traffic is anonymised: no byte gives the label away


def test_a_forest_that_reads_the_labels_from_a_few_bytes_is_warned_about(tmp_path, demo_subset_files):
    images_path, labels_path = demo_subset_files
    images, labels = data_lib.read_idx3(images_path).copy(), data_lib.read_idx1(labels_path)
    images.reshape(len(images), -1)[:, 24:32] = (labels * 40)[:, None]  # 8 bytes name the class, as addresses would
    write_idx3(tmp_path / "leaky.idx3", images)
    write_idx1(tmp_path / "leaky.idx1", labels)
    result = run_main(f"images_path={tmp_path / 'leaky.idx3'}", f"labels_path={tmp_path / 'leaky.idx1'}",
                      f"logs_dir={tmp_path / 'logs'}", *TINY_RUN, "n_generations=0", "final_training=False")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = glob.glob(str(tmp_path / "logs" / "*"))
    warning = "the reference forest scores 1.0000 on the test split: the labels may be readable from a few bytes"
    log = open(os.path.join(run_dir, "nas_log.txt")).read()
    assert warning in log and warning in result.stdout
    positions = json.load(open(os.path.join(run_dir, "reference_forest.json")))["top_positions"]
    assert positions[0] in range(24, 32)
    assert f"it relies most on byte positions {', '.join(map(str, positions))}." in log


def test_every_network_of_a_run_is_a_tensorboard_session_with_its_figures(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util.tensor_util import make_ndarray
    run_dir = tiny_run[0]
    rows = list(csv.DictReader(open(os.path.join(run_dir, "children.csv"))))
    sessions = sorted(os.listdir(os.path.join(run_dir, "tensorboard")))
    assert sessions == sorted([row["child_id"] for row in rows] + ["search"])
    for row in rows:
        events = EventAccumulator(os.path.join(run_dir, "tensorboard", row["child_id"]))
        events.Reload()
        for name in ("val_accuracy", "test_accuracy", "deployed_test_accuracy", "n_params", "flash_measured",
                     "ram_measured", "latency_ms"):
            (event,) = events.Tensors(name)
            assert float(make_ndarray(event.tensor_proto)) == pytest.approx(float(row[name]), rel=1e-6)
        content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        assert start.hparams["status"].string_value == row["status"]
        assert start.hparams["input_encoding"].string_value == row["input_encoding"]
        assert int(start.hparams["depth"].number_value) == int(row["depth"])
    search = EventAccumulator(os.path.join(run_dir, "tensorboard", "search"))
    search.Reload()
    best = [float(make_ndarray(event.tensor_proto)) for event in search.Tensors("best_val_accuracy")]
    assert len(best) == 3 and best == sorted(best)  # generations 0 to 2, never worse
    assert best[-1] == pytest.approx(max(float(row["val_accuracy"]) for row in rows), rel=1e-6)


def test_a_byte_table_is_searched_only_on_bytes_unless_asked_for(small_data, tmp_path):
    from library_nas import NAS
    data, _ = small_data
    features = data._replace(X_train=data.X_train * 0.5 + 0.001, X_test=data.X_test * 0.5 + 0.001)  # not bytes
    nas = NAS(run_dir=str(tmp_path / "run"), preloaded_data=features, epochs=1)
    assert nas.space.input_choices["encoding"] == ["scaled"]
    assert nas.space.inputs_note == "embedding left out of the inputs searched: the samples are not bytes " \
                                   "(not byte values / 255)"
    with pytest.raises(ValueError, match="input_encoding_choices includes 'embedding': the embedding encoding reads "
                                         "bytes"):
        NAS(run_dir=str(tmp_path / "asked"), preloaded_data=features, input_encoding_choices=["embedding", "scaled"])
    on_bytes = NAS(run_dir=str(tmp_path / "bytes"), preloaded_data=data)
    assert on_bytes.space.input_choices["encoding"] == ["embedding", "scaled"] and not on_bytes.space.inputs_note
