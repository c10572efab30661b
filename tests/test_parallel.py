"""Many networks at once: the same result whatever the parallelism, and faults that cost a try only."""
import csv
import dataclasses
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest

from conftest import PROJECT_DIR, TINY_RUN, real_run
from hwnas.evaluation.evaluate import Status
from hwnas.evaluation.evaluators import LocalEvaluator
from library_nas import NAS

ray = pytest.importorskip("ray")

# What must not depend on how networks are trained at once (timings may).
COMPARED_COLUMNS = ("child_id", "generation", "status", "mutation", "parents", "architecture", "flops_keras_flops",
                    "flash_measured", "ram_measured", "val_accuracy", "val_f1", "test_accuracy",
                    "deployed_test_accuracy", "reason", "inherited_from", "layers_inherited")


def compared(run_dir):
    with open(os.path.join(run_dir, "children.csv"), newline="") as records:
        return [{name: row[name] for name in COMPARED_COLUMNS} for row in csv.DictReader(records)]


def test_local_one_worker_and_ray_two_workers_give_the_same_children_csv(tmp_path_factory, demo_subset_files):
    # Two folds: generation 0's lone network and generation 1's third network train them on both Ray workers;
    # generation 1's children start from their parent's weights of each fold, which travel with their tasks.
    settings = (*TINY_RUN, "n_generations=1", "n_child=3", "num_selected_folds=2", "threads_per_worker=1",
                "inherit_weights=True")
    one_worker, _, _, _ = real_run(tmp_path_factory, demo_subset_files, "local_1",
                                   (*settings, "executor=local", "n_workers=1"))
    ray_two, stdout, _, _ = real_run(tmp_path_factory, demo_subset_files, "ray_2",
                                     (*settings, "executor=ray", "n_workers=2"))
    rows = compared(one_worker)
    assert len(rows) == 4 and all(row["status"] == Status.OK for row in rows)
    assert any(row["inherited_from"] == "g000_c0001" and int(row["layers_inherited"]) > 0 for row in rows)
    assert compared(ray_two) == rows
    log_text = open(os.path.join(ray_two, "nas_log.txt")).read()
    assert "ray executor (Ray at a new local instance), 2 networks at once" in log_text
    # generation 0's one network and generation 1's third of three (2 workers): each fold on a worker of its own
    assert "g000_c0001: its 2 folds train on separate workers (otherwise a worker would wait)." in log_text
    assert "g001_c0004: its 2 folds train on separate workers" in log_text
    assert "g001_c0002: its" not in log_text and "g001_c0003: its" not in log_text
    assert "networks/h" in stdout


def tiny_task_and_data(small_data, tmp_path, epochs=2, num_selected_folds=1):
    data, folds = small_data
    nas = NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, epochs=epochs, patience=epochs,
              num_selected_folds=num_selected_folds, seed=0)
    network = nas.space.smart_start_network()
    network.train_settings["seed"] = 1
    return nas.search.task_of(network), data, folds


def kill_each_worker_process(evaluator, n_kills, delay_s):
    """Kills the evaluator's worker process delay_s after each start, n_kills times (a thread)."""
    def killer():
        killed = set()
        while len(killed) < n_kills:
            process = evaluator.workers[0].process
            if process is not None and process.pid not in killed:
                time.sleep(delay_s)
                process.kill()
                killed.add(process.pid)
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return thread


def test_a_worker_killed_while_it_works_costs_one_try_and_the_result_is_the_same(small_data, tmp_path):
    task, data, folds = tiny_task_and_data(small_data, tmp_path, epochs=14)  # some 10 s of training
    evaluator = LocalEvaluator(data, folds, n_workers=1, threads_per_worker=1, max_tries=3)
    try:
        ((_, undisturbed),) = list(evaluator.evaluate_all({0: task}))
        evaluator.workers[0].close()
        killer = kill_each_worker_process(evaluator, n_kills=1, delay_s=7)  # start-up takes about 5 s
        ((_, retried),) = list(evaluator.evaluate_all({0: task}))
        killer.join(timeout=60)
    finally:
        evaluator.close()
    assert not killer.is_alive()
    assert undisturbed.status == retried.status == Status.OK
    assert retried.state.val_score == undisturbed.state.val_score


def test_a_network_whose_worker_dies_on_every_try_is_failed_and_the_next_one_trains(small_data, tmp_path):
    task, data, folds = tiny_task_and_data(small_data, tmp_path)
    evaluator = LocalEvaluator(data, folds, n_workers=1, threads_per_worker=1, max_tries=2)
    try:
        killer = kill_each_worker_process(evaluator, n_kills=2, delay_s=3)
        ((_, failed),) = list(evaluator.evaluate_all({0: task}))
        killer.join(timeout=60)
        ((_, next_one),) = list(evaluator.evaluate_all({1: task}))
    finally:
        evaluator.close()
    assert failed.status == Status.FAILED and failed.state is None
    assert failed.reason.startswith("WorkerDied:") and "on each of 2 tries" in failed.reason
    assert next_one.status == Status.OK


def assert_same_evaluation(split, whole):
    assert split.status == whole.status == Status.OK
    for name in ("val_score", "val_metrics", "test_metrics", "epoch_val_accuracy", "epochs_trained",
                 "deployed", "deployed_model_bytes"):
        assert getattr(split.state, name) == getattr(whole.state, name), name
    for split_weights, whole_weights in zip(split.state.layer_weights + [split.state.head_weights],
                                            whole.state.layer_weights + [whole.state.head_weights]):
        for split_array, whole_array in zip(split_weights, whole_weights):
            np.testing.assert_array_equal(split_array, whole_array)
    assert split.flops_keras_flops == whole.flops_keras_flops


def test_a_lone_network_trains_its_folds_on_two_workers_with_the_result_it_has_on_one(small_data, tmp_path):
    """Fewer networks than workers: each fold trains, is scored and measured on a worker of its
    own, and the network's result is put together from its folds; nothing differs from training
    them in turn, also when the network continues a successive-halving rung, or when its training fails."""
    task, data, folds = tiny_task_and_data(small_data, tmp_path, epochs=3, num_selected_folds=2)
    rung = dataclasses.replace(task, train_settings=dict(task.train_settings, epochs=1), measure=False,
                               keep_training_state=True)
    diverging = dataclasses.replace(task, train_settings=dict(task.train_settings, learning_rate=float("nan")))
    results = {}
    for n_workers in (1, 2):
        evaluator = LocalEvaluator(data, folds, n_workers=n_workers, threads_per_worker=1)
        try:
            ((_, rung_result),) = list(evaluator.evaluate_all({0: rung}))
            tasks_run = sum(worker.tasks_done for worker in evaluator.workers)
            last_rung = dataclasses.replace(task, continue_from=rung_result.training_state)  # 2 more epochs, then measured
            ((_, last_result),) = list(evaluator.evaluate_all({0: last_rung}))
            ((_, failed),) = list(evaluator.evaluate_all({0: diverging}))
        finally:
            evaluator.close()
        results[n_workers] = rung_result, tasks_run, last_result, failed
    (rung_whole, tasks_whole, whole, failed_whole), (rung_split, tasks_split, split, failed_split) = \
        results[1], results[2]
    assert (tasks_whole, tasks_split) == (1, 2)  # on two workers: fold 0 and fold 1, each on its own
    assert_same_evaluation(rung_split, rung_whole)
    assert rung_split.state.train_seconds > 0
    for i_fold in (0, 1):
        for split_array, whole_array in zip(rung_split.training_state["folds"][i_fold]["model_variables"],
                                            rung_whole.training_state["folds"][i_fold]["model_variables"]):
            np.testing.assert_array_equal(split_array, whole_array)
    assert_same_evaluation(split, whole)
    assert whole.state.epochs_trained == 2 * 3 and whole.flops_keras_flops > 0
    assert whole.state.deployed["flash_bytes"] > 0
    assert split.training_state is None  # not asked for: the last rung
    assert failed_whole.status == failed_split.status == Status.FAILED
    assert failed_split.reason == failed_whole.reason  # the first fold's, as in turn
    assert failed_split.reason.startswith("TrainingFailed: fold 0")


# The `ray` command of this Python (beside it when its folder is not on PATH).
RAY_CLI = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray") or "ray"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_node(arguments, environment):
    """A Ray node in its own process group (`ray start --block`), so that it can be killed whole."""
    command = [RAY_CLI, "start", "--block",
               "--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *arguments]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=environment)


def kill_node(node):
    try:
        os.killpg(node.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    node.wait(timeout=30)


def kill_processes_mentioning(text):
    """Kills every process whose command line contains text (this test's Ray temp folder);
    a Ray cluster of someone else's on this machine is left alone."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if text.encode() in cmdline.read():
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def wait_until(condition, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s} s")
        time.sleep(0.5)


def test_a_search_on_a_two_node_ray_cluster_survives_losing_a_node(tmp_path, demo_subset_files):
    """A real two-node Ray cluster on loopback: its second node is killed in the middle of the
    run; the networks it was training are retried on the head, and every network is recorded."""
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay short
    address = f"127.0.0.1:{port}"
    # Ray >= 2.59 authenticates by token: the same one for the nodes and the driver, as on a real cluster.
    environment = dict(os.environ, RAY_TMPDIR=temp_dir, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    head = start_node(["--head", f"--port={port}", f"--temp-dir={temp_dir}"], environment)
    second = None
    driver = None
    try:
        def nodes_alive():
            status = subprocess.run([RAY_CLI, "status", f"--address={address}"], capture_output=True, text=True,
                                    env=environment)
            return status.returncode == 0 and status.stdout.count("node_") >= 2
        wait_until(lambda: subprocess.run([RAY_CLI, "status", f"--address={address}"], capture_output=True,
                                          env=environment).returncode == 0, 120, "the head node started")
        second = start_node([f"--address={address}"], environment)
        wait_until(nodes_alive, 120, "the second node joined")
        images_path, labels_path = demo_subset_files
        logs_dir = tmp_path / "logs"
        output = open(tmp_path / "driver_output.txt", "w")
        driver = subprocess.Popen(
            [sys.executable, os.path.join(PROJECT_DIR, "B01_NAS.py"), f"images_path={images_path}",
             f"labels_path={labels_path}", f"logs_dir={logs_dir}", *TINY_RUN, "n_generations=1", "n_child=2",
             "executor=ray",
             f"ray_address={address}", "n_workers=2", "threads_per_worker=1", "run_name=cluster"],
            cwd=PROJECT_DIR, stdout=output, stderr=subprocess.STDOUT, env=environment)

        def records_written():
            paths = glob.glob(os.path.join(logs_dir, "*_cluster", "children.csv"))
            return len(open(paths[0]).read().splitlines()) - 1 if paths else 0
        wait_until(lambda: records_written() >= 1 or driver.poll() is not None, 400, "generation 0 recorded")
        assert driver.poll() is None, open(output.name).read()
        time.sleep(3)  # generation 1's first two networks are being trained, one on each node
        kill_node(second)
        driver.wait(timeout=600)
    finally:
        for process in (driver, second, head):
            if process is not None and process.poll() is None:
                kill_node(process) if process is not driver else process.kill()
        kill_processes_mentioning(temp_dir)  # anything of this cluster that left its process group
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert driver.returncode == 0, open(output.name).read()
    (run_dir,) = glob.glob(os.path.join(logs_dir, "*_cluster"))
    rows = compared(run_dir)
    assert [row["child_id"] for row in rows] == ["g000_c0001", "g001_c0002", "g001_c0003"]
    assert all(row["status"] == Status.OK for row in rows), [row["reason"] for row in rows]
