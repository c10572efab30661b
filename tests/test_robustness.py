"""Runs that survive: exact resume after SIGKILL, SIGTERM and Ctrl-C, failing networks, bad parameters and data."""
import csv
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from hwnas.data import idx as data_lib
from conftest import PROJECT_DIR, TINY_RUN, run_main, write_idx1, write_idx3
from hwnas.evaluation.evaluate import Result
from library_nas import NAS, SearchStopped, check_search_parameters


def records(run_dir):
    with open(os.path.join(run_dir, "children.csv"), newline="") as records_file:
        return list(csv.DictReader(records_file))


def start_main(*overrides):
    return subprocess.Popen([sys.executable, os.path.join(PROJECT_DIR, "B01_NAS.py"), *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT_DIR)


def wait_for_rows(logs_dir, n_rows, process, timeout=600):
    """Waits until the run's children.csv holds n_rows networks; returns the run folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be interrupted"
        for run_dir in glob.glob(os.path.join(logs_dir, "*")):
            path = os.path.join(run_dir, "children.csv")
            if os.path.exists(path) and len(open(path).read().splitlines()) - 1 >= n_rows:
                return run_dir
        time.sleep(0.05)
    raise AssertionError("the run did not reach the point to interrupt it")


def test_resume_after_sigkill_ends_like_an_uninterrupted_run(tmp_path, tiny_run):
    uninterrupted_dir, _, images_path, labels_path = tiny_run
    process = start_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}",
                         *TINY_RUN, "run_name=killed")
    # 1 parent + 2 children of generation 1 + 1 child of generation 2: killed inside generation 2
    run_dir = wait_for_rows(tmp_path, 4, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert os.path.exists(os.path.join(run_dir, "checkpoint.pkl"))
    # Two resumes started together: one writes, the other is refused at once.
    resumes = [start_main(f"resume_from={run_dir}") for _ in range(2)]
    outputs = [resume.communicate(timeout=600) for resume in resumes]
    assert sorted(resume.returncode != 0 for resume in resumes) == [False, True], outputs
    (refused_stderr,) = [stderr for resume, (_, stderr) in zip(resumes, outputs) if resume.returncode != 0]
    assert f"{run_dir} is in use by " in refused_stderr and "Traceback" not in refused_stderr
    def key_columns(rows):
        return [(row["child_id"], row["architecture"], row["val_accuracy"], row["test_accuracy"],
                 row["flash_measured"], row["ram_measured"]) for row in rows]
    assert key_columns(records(run_dir)) == key_columns(records(uninterrupted_dir))
    log = open(os.path.join(run_dir, "nas_log.txt")).read()
    assert "== Resumed after generation 1 (3 networks evaluated) ==" in log
    # the network recorded before the kill is not trained again
    assert "g002_c0004 finished before the run was interrupted: its saved result is used" in log
    best_line = [line for line in log.splitlines() if line.startswith("Absolute best:")]
    assert best_line == [line for line in open(os.path.join(uninterrupted_dir, "nas_log.txt")).read().splitlines()
                         if line.startswith("Absolute best:")]


def test_a_resume_with_inheritance_trains_no_finished_network_again(tmp_path, demo_subset_files):
    """An inheriting child trains fewer epochs than the settings say; its saved result says so, and a
    resume that proposes it again finds it."""
    images_path, labels_path = demo_subset_files
    process = start_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}",
                         *TINY_RUN, "search_strategy=mutation", "inherit_weights=True", "inherit_epochs=1",
                         "run_name=inheriting")
    run_dir = wait_for_rows(tmp_path, 4, process)  # killed inside generation 2, after its first child
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = records(run_dir)[3]
    assert before["child_id"] == "g002_c0004" and before["inherited_from"]  # it inherited from its parent
    assert int(before["epochs_trained"]) == 1  # inherit_epochs of its one fold
    resumed = run_main(f"resume_from={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = open(os.path.join(run_dir, "nas_log.txt")).read()
    assert "g002_c0004 finished before the run was interrupted: its saved result is used, not trained again." in log
    after = records(run_dir)[3]
    assert {k: v for k, v in after.items() if k != "train_seconds"} == {k: v for k, v in before.items()
                                                                       if k != "train_seconds"}


def test_ctrl_c_exits_non_zero_and_says_how_to_resume(tmp_path, demo_subset_files):
    images_path, labels_path = demo_subset_files
    process = start_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}",
                         *TINY_RUN, "run_name=interrupted")
    run_dir = wait_for_rows(tmp_path, 2, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode != 0
    assert f"resume_from={run_dir}" in stderr
    assert len(records(run_dir)) >= 2  # what was written stays readable
    assert "Interrupted during generation" in open(os.path.join(run_dir, "nas_log.txt")).read()


def test_diverging_networks_are_recorded_and_too_many_in_a_row_stop_the_search(tmp_path, small_data):
    data, folds = small_data
    # A learning rate of 1e12 makes the loss NaN within the first steps.
    nas = NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, learning_rate=1e12, epochs=2, num_selected_folds=1, n_child=3,
              max_failures_in_a_row=3, seed=0)
    parent = nas.initial_parent()
    children = nas.new_generation(parent, data)
    gen_per, _ = nas.train_generation(children[:2], folds)
    assert gen_per == [None, None]
    rows = records(str(tmp_path / "run"))
    assert [row["status"] for row in rows] == ["failed", "failed"]
    assert "TrainingFailed" in rows[0]["reason"] and "nan" in rows[0]["reason"]
    assert nas.best_child_selection(children[:2], gen_per, [None, None]) == (None, None)
    with pytest.raises(SearchStopped, match="3 networks in a row failed"):
        nas.train_generation(children[2:], folds)


def test_failed_initial_parent_stops_the_run_with_a_clear_message(demo_subset_files, tmp_path):
    images_path, labels_path = demo_subset_files
    result = run_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}",
                      *TINY_RUN, "learning_rate=1e12")
    assert result.returncode != 0
    assert "the initial parent failed" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("parameters, message", [
    ({"flash_thr": 0}, "flash_thr must be a positive number"),
    ({"ram_thr": -5}, "ram_thr must be a positive number"),
    ({"n_child": 0}, "n_child must be an integer >= 1"),
    ({"max_depth": 0}, "max_depth must be an integer >= 1"),
    ({"max_depth_father": 4, "max_depth": 3}, "max_depth_father .4. must not exceed max_depth .3."),
    ({"learning_rate": 0}, "learning_rate must be a positive number"),
    ({"deploy_precision": "int4"}, "deploy_precision must be one of"),
    ({"activation_choices": ["gelu"]}, "activation_choices must be a non-empty list"),
])
def test_bad_search_parameters_are_named(parameters, message):
    with pytest.raises(ValueError, match=message):
        check_search_parameters(parameters)


def test_num_selected_folds_larger_than_folds_is_rejected():
    with pytest.raises(ValueError, match=r"num_selected_folds \(4\) is larger than the number of folds \(3\)"):
        check_search_parameters({"num_selected_folds": 4}, n_folds=3)


def test_bad_parameters_stop_the_script_before_any_run_folder(tmp_path):
    for override, message in (("test_size=1.5", "test_size must be in (0, 1)"),
                              ("num_selected_folds=9", "num_selected_folds (9) is larger"),
                              ("max_depth_father=9", "max_depth_father (9) must not exceed")):
        result = run_main(override, f"logs_dir={tmp_path}")
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []


def test_a_class_too_small_for_the_folds_or_the_split_is_named(tmp_path):
    images = np.zeros((41, 2, 2))
    labels = np.array([0] * 20 + [1] * 20 + [2])  # class 2 has one session
    write_idx3(tmp_path / "x.idx3", images)
    write_idx1(tmp_path / "y.idx1", labels)
    with pytest.raises(data_lib.DataFileError, match=r"classes \[2\] have fewer than 2 samples"):
        data_lib.load_and_preprocess_data(None, 0.2, images_path=str(tmp_path / "x.idx3"),
                                          labels_path=str(tmp_path / "y.idx1"))
    y = np.array([0] * 20 + [1] * 3)
    with pytest.raises(ValueError, match="class 1 has 3 training samples, fewer than the 5 folds need"):
        data_lib.fold_index(np.zeros((23, 4, 1)), y, 5)


def test_script_names_the_labels_file_when_a_class_is_too_small_for_the_folds(tmp_path):
    labels = np.array([0] * 30 + [1] * 25 + [2] * 5)  # class 2 keeps 4 training sessions after the split
    write_idx3(tmp_path / "x.idx3", np.random.default_rng(0).integers(0, 255, (60, 4, 4)))
    write_idx1(tmp_path / "y.idx1", labels)
    result = run_main(f"images_path={tmp_path / 'x.idx3'}", f"labels_path={tmp_path / 'y.idx1'}",
                      "test_size=0.2", "num_folds=5", f"logs_dir={tmp_path / 'logs'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert str(tmp_path / "y.idx1") in result.stderr and "fewer than the 5 folds need" in result.stderr
    assert not os.path.exists(tmp_path / "logs")


def test_resume_cuts_children_csv_by_records_when_a_reason_spans_lines(tmp_path, small_data, monkeypatch):
    data, folds = small_data
    settings = dict(run_dir=str(tmp_path / "run"), preloaded_data=data, is_train_proxy=False, n_child=2,
                    n_generations=3, num_selected_folds=1, seed=0)
    nas = NAS(**settings)
    population = nas.search.start(folds)  # generation 0, checkpointed
    real_evaluator = nas.search.evaluator

    class FailingEvaluator:  # fails the networks `fails` picks, with a multi-line reason; the real one trains the rest
        folds = real_evaluator.folds

        def __init__(self, fails, reason):
            self.fails, self.reason = fails, reason

        def to_split(self, tasks):
            return []  # dry runs: nothing to train apart

        def evaluate_all(self, tasks, may_start=None):
            for index, task in tasks.items():
                if self.fails(task):
                    yield index, Result.failed(self.reason)
            yield from real_evaluator.evaluate_all({i: t for i, t in tasks.items() if not self.fails(t)})

        def close(self):
            real_evaluator.close()

    # errors of TensorFlow often span several lines; the second network (seed 2) fails
    nas.search.evaluator = FailingEvaluator(lambda task: task.train_settings["seed"] == 2,
                                            "InvalidArgumentError: the first line\n  and the second line, \"quoted\"")
    nas.search.i_gen = 1
    population = nas.search.generation(population, folds)  # generation 1, checkpointed
    checkpointed = records(settings["run_dir"])
    assert [row["status"] for row in checkpointed] == ["dry_run", "failed", "dry_run"]
    nas.search.i_gen = 2  # generation 2 dies after one network, whose reason spans lines too
    nas.search.evaluator = FailingEvaluator(lambda task: True, "Error:\nkilled here")
    nas.train_generation(nas.new_generation(population[0], data)[:1], folds)
    assert len(records(settings["run_dir"])) == 4
    nas.search.evaluator.close()

    resumed = NAS(**settings)
    resumed_population = resumed.search.resume()
    assert records(settings["run_dir"]) == checkpointed
    assert [network.child_id for network in resumed_population] == [network.child_id for network in population]
    # The history is rebuilt from the records: the networks of the lost generation are not in it.
    assert len(resumed.evaluated_keys) == 3 and resumed.evaluated_keys < nas.evaluated_keys
    assert [earlier.status for earlier in resumed.search.trials.results.values()] == ["dry_run", "failed", "dry_run"]
    assert checkpointed[1]["reason"] == "InvalidArgumentError: the first line\n  and the second line, \"quoted\""
