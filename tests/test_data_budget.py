"""The data budget (max_search_sessions), the final training and the data kept as bytes: what a
candidate sees, what the saved model was trained on, and that neither depends on how it is run."""
import csv
import glob
import json
import os
import re
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from hwnas.data import idx as data_lib
from hwnas.data import samples
from conftest import TINY_RUN, real_run, run_main
from hwnas.data.metrics import compute_descriptors
from hwnas.search.final import FinalModel, choose

BUDGET_RUN = (*TINY_RUN, "max_search_sessions=60", "final_epochs=2", "final_candidates=5")


def test_a_stratified_sample_keeps_every_class_in_proportion_and_is_drawn_from_the_seed():
    labels = np.array([0] * 500 + [1] * 30 + [2] * 3 + [3] * 1)
    indices = np.arange(len(labels)) + 1000
    sample = samples.stratified_sample(indices, labels, 40, np.random.default_rng(7))
    assert len(sample) == 40 and len(set(sample)) == 40 and set(sample) <= set(indices)
    assert np.bincount(labels[sample - 1000]).tolist() == [35, 3, 1, 1]
    assert np.array_equal(sample, samples.stratified_sample(indices, labels, 40, np.random.default_rng(7)))
    assert samples.stratified_sample(indices, labels, None, np.random.default_rng(7)) is indices
    with pytest.raises(ValueError, match="cannot hold each of the 4 classes"):
        samples.stratified_sample(indices, labels, 3, np.random.default_rng(7))


def test_the_folds_a_candidate_sees_are_samples_of_each_part_the_same_for_a_seed(small_data):
    data, folds = small_data
    labels = data.Y_train.argmax(axis=1)
    sampled = samples.fold_samples(folds, labels, 50, seed=3)
    assert samples.fold_samples(folds, labels, None, seed=3) is folds
    for (train, validation), (train_sample, validation_sample) in zip(folds, sampled):
        assert len(train_sample) == len(validation_sample) == 50
        assert set(train_sample) <= set(train) and set(validation_sample) <= set(validation)
        assert set(labels[train_sample]) == set(labels[train])  # every class kept
    again = samples.fold_samples(folds, labels, 50, seed=3)
    assert all(np.array_equal(a, b) for fold, fold_again in zip(sampled, again) for a, b in zip(fold, fold_again))
    tested = samples.test_sample(data, 50, seed=3)
    assert len(tested.Y_test) == 50 and tested.X_train is data.X_train


def test_sessions_kept_as_bytes_train_and_measure_like_the_scaled_floats(small_data, demo_subset_files, tmp_path):
    from hwnas.evaluation.evaluate import evaluate
    from library_nas import NAS
    images_path, labels_path = demo_subset_files
    split = data_lib.load_and_preprocess_data(None, 0.2, images_path=images_path, labels_path=labels_path, seed=0,
                                              keep_bytes=True)
    assert split[0].dtype == np.uint8 and split[0].shape[1:] == (784, 1)
    data, folds = small_data
    as_bytes = data_lib.SessionData(split[0], data.Y_train, split[2], data.Y_test)
    assert np.array_equal(data_lib.scaled(as_bytes.X_train), data.X_train)
    # a run searched on float32 samples resumes on the same data kept as bytes
    assert data_lib.data_fingerprint(as_bytes, folds) == data_lib.data_fingerprint(data, folds)
    nas = NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, epochs=1, num_selected_folds=1)
    network = nas.space.smart_start_network()
    network.train_settings["seed"] = 5
    task = nas.search.task_of(network)
    scaled_result, bytes_result = evaluate(task, data, folds), evaluate(task, as_bytes, folds)
    for name in ("val_score", "test_metrics", "deployed"):
        assert getattr(scaled_result.state, name) == getattr(bytes_result.state, name), name
    assert scaled_result.state.deployed_model_bytes == bytes_result.state.deployed_model_bytes
    assert {"building", "training", "predicting", "keras_flops", "conversion", "tflm"} <= set(
        bytes_result.state.phase_seconds)


def test_worker_processes_map_one_copy_of_the_data(small_data):
    from hwnas.evaluation.shared_data import SharedData, open_shared
    data, _ = small_data
    as_bytes = data._replace(X_train=(data.X_train * 255).round().astype(np.uint8))
    shared = SharedData(as_bytes)
    try:
        mapped = open_shared(shared.fd, shared.layout)
        for original, view in zip(as_bytes, mapped):
            assert view.dtype == original.dtype and np.array_equal(view, original)
            assert not view.flags.writeable  # read-only: no process can change what the others read
    finally:
        shared.close()


@pytest.mark.parametrize("override, message", [
    ("max_search_sessions=3", "max_search_sessions=3 is below the data's 6 classes"),
    ("max_search_sessions=0", "max_search_sessions must be an integer >= 2, got 0"),
    ("final_epochs=0", "final_epochs must be an integer >= 1, got 0"),
    ("final_epochs=-2", "final_epochs must be an integer >= 1, got -2"),
])
def test_bad_budget_or_final_epochs_are_named_in_one_line(override, message, demo_subset_files, tmp_path):
    images_path, labels_path = demo_subset_files
    result = run_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}", override)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not os.listdir(tmp_path)  # no run folder is left behind


@pytest.fixture(scope="session")
def budget_run(tmp_path_factory, demo_subset_files):
    return real_run(tmp_path_factory, demo_subset_files, "budget", BUDGET_RUN)


def test_candidates_train_on_the_budget_and_the_saved_model_on_every_session(budget_run, small_data):
    run_dir, stdout, images_path, labels_path = budget_run
    log = open(os.path.join(run_dir, "nas_log.txt")).read()
    # 480 training sessions in 3 folds: 320 / 160 per fold; 120 test sessions
    assert ("Data budget (max_search_sessions=60): a candidate trains on 60 of a fold's 320 training sessions, is "
            "validated on 60 of its 160 and tested on 60 of the 120 test sessions") in log
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    final = summary["final_training"]
    assert final["sessions"] == 432 and final["holdout_sessions"] == 48 and final["max_search_sessions"] == 60
    record = json.load(open(os.path.join(run_dir, "models", "best_model.json")))
    rows = list(csv.DictReader(open(os.path.join(run_dir, "children.csv"))))
    best_row = next(row for row in rows if row["child_id"] == record["child_id"])
    assert final["search_val_accuracy"] == pytest.approx(float(best_row["val_accuracy"]))
    # the saved model is the final one: tested on the whole test split, its file gives its figures
    _, _, X_test, y_test = data_lib.load_and_preprocess_data(None, 0.2, images_path=images_path,
                                                             labels_path=labels_path, seed=0)
    model = keras.models.load_model(os.path.join(run_dir, "models", "best_model.keras"))
    assert compute_descriptors(y_test, model.predict(X_test, verbose=0)) == pytest.approx(record["test_metrics"])
    assert summary["test_macro_f1"] == record["test_metrics"]["f1"]
    per_class = list(csv.DictReader(open(os.path.join(run_dir, "per_class.csv"))))
    assert per_class[-1]["support"] == "120"
    # the saved model is the finalist best on the held-out sessions, each finalist's score there in the log
    finalists = re.search(r"Finalists: ([\w, ]+) \(the search's best (\d) architectures", log)
    assert finalists and finalists[2] == "5" and len(finalists[1].split(", ")) == 5
    held_out = dict(re.findall(r"Final model of (\w+)(?: \([^)]*\))?: trained on 432 sessions, .*accuracy there ([\d.]+)\)", log))
    assert sorted(held_out) == sorted(finalists[1].split(", "))
    assert float(held_out[record["child_id"]]) == max(map(float, held_out.values()))
    assert final["holdout_val_accuracy"] == pytest.approx(float(held_out[record["child_id"]]), abs=1e-4)
    assert re.search(rf"Final model of {record['child_id']} \([^)]*chosen: the best of the 5 finalists", log)
    assert (f"final:  test accuracy {record['test_metrics']['accuracy']:.4f} (Keras, float32), "
            f"{record['deployed_measured']['test_accuracy']:.4f} as int8 on TFLM") in log
    assert os.path.exists(os.path.join(run_dir, "networks", f"final_{record['child_id']}.pkl"))
    assert f"final training of {record['child_id']}: epoch 1/2" in stdout


def test_a_resume_keeps_the_sample_and_a_later_final_training(budget_run, tmp_path, demo_subset_files):
    """First one generation without the final training, then resumed to two with it: the same
    networks and scores as the run that went on uninterrupted, and its final model."""
    images_path, labels_path = demo_subset_files
    first = run_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}",
                     *BUDGET_RUN, "n_generations=1", "final_training=False", "run_name=budget")
    assert first.returncode == 0, first.stderr[-3000:]
    (run_dir,) = glob.glob(str(tmp_path / "*_budget"))
    assert "Final model of" not in open(os.path.join(run_dir, "nas_log.txt")).read()
    resumed = run_main(f"resume_from={run_dir}", "n_generations=2", "final_training=True")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    columns = ("child_id", "architecture", "val_accuracy", "test_accuracy", "deployed_test_accuracy")
    def compared(folder):
        return [{name: row[name] for name in columns} for row in csv.DictReader(open(os.path.join(folder, "children.csv")))]
    assert compared(run_dir) == compared(budget_run[0])
    final_here = json.load(open(os.path.join(run_dir, "summary.json")))["best"]
    final_there = json.load(open(os.path.join(budget_run[0], "summary.json")))["best"]
    assert final_here["test_metrics"] == final_there["test_metrics"]
    assert final_here["final_training"]["holdout_val_accuracy"] == final_there["final_training"]["holdout_val_accuracy"]


def test_the_held_out_tenth_keeps_a_sessions_copies_on_one_side():
    """Captures repeat sessions byte for byte: a copy on each side would flatter the score the
    finalists are chosen by. Without copies the split is the plain stratified one."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (300, 40, 1), dtype=np.uint8)
    Y = data_lib.one_hot(np.arange(300) % 3, 3)
    plain = samples.holdout_split(Y, 0.1, seed=4)
    assert all((a == b).all() for a, b in zip(plain, samples.holdout_split(Y, 0.1, seed=4, X=X)))
    X_twice, Y_twice = np.concatenate([X, X[:150]]), np.concatenate([Y, Y[:150]])
    train, held_out = samples.holdout_split(Y_twice, 0.1, seed=4, X=X_twice)
    assert len(train) + len(held_out) == 450 and not set(train) & set(held_out)
    assert not {X_twice[i].tobytes() for i in train} & {X_twice[i].tobytes() for i in held_out}
    assert set(Y_twice[held_out].argmax(axis=1)) == {0, 1, 2} and 30 <= len(held_out) <= 60


def test_the_finalist_best_on_the_held_out_sessions_is_chosen_the_search_order_breaking_ties():
    def finalist(name, held_out):
        return FinalModel(SimpleNamespace(child_id=name), SimpleNamespace(val_score=held_out), 90, 10)
    models = [finalist("first", 0.80), finalist("second", 0.90), finalist("third", 0.90), finalist("front", 0.99)]
    chosen = choose(list(enumerate(models)), n_finalists=3)  # "front": a Pareto network, not a finalist
    assert [model.searched.child_id for model in chosen] == ["second", "first", "third", "front"]
    assert chosen[0].chosen and chosen[0].n_finalists == 3 and not any(model.chosen for model in chosen[1:])
    assert choose([(1, models[1])], n_finalists=3)[0].chosen  # the other finalists' final training failed
    assert not choose([(3, models[3])], n_finalists=3)[0].chosen  # every finalist's failed: none chosen
