"""Runs that survive, part 2: one writer per run folder, resumes that cannot mix
experiments, stop signals, no orphaned workers, one-line messages for damaged files."""
import csv
import glob
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import pytest

from hwnas.common.overrides import ParameterError, check_run_name, parse_overrides

from hwnas.run.run_folder import LOCK_FILE_NAME, hold_run_folder, make_run_dir
from conftest import PROJECT_DIR, TINY_RUN, run_main
from library_nas import NAS, check_search_parameters
from hwnas.run.records import RecordsError


def copy_of_run(run_dir, destination):
    """A copy of a finished run folder (without its lock file) to damage or resume."""
    shutil.copytree(run_dir, destination, ignore=shutil.ignore_patterns(LOCK_FILE_NAME))
    return str(destination)


def snapshot(run_dir):
    """Every file of a run folder and its bytes, but the lock file (which only says who writes)."""
    files = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "**"), recursive=True)):
        if os.path.isfile(path) and os.path.basename(path) != LOCK_FILE_NAME:
            with open(path, "rb") as file:
                files[os.path.relpath(path, run_dir)] = file.read()
    return files


def start_main(*overrides):
    return subprocess.Popen([sys.executable, os.path.join(PROJECT_DIR, "B01_NAS.py"), *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT_DIR)


def children_of(pid):
    """The process ids whose parent is pid (from /proc)."""
    children = []
    for stat_path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat_path) as stat_file:
                fields = stat_file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat_path.split("/")[2]))
    return children


def is_running(pid):
    """True while pid is a live process (a zombie, ended but not yet reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for_worker(process, timeout=300):
    """Waits until the search started by process trains in a worker; returns the worker ids."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        workers = children_of(process.pid)
        if workers:
            return workers
        time.sleep(0.2)
    raise AssertionError("no worker process started")


# ----- one writer per run folder ------------------------------------------------------
def test_a_second_writer_is_refused_at_once_and_a_dead_writers_lock_is_taken_over(tmp_path, tiny_run):
    run_dir = copy_of_run(tiny_run[0], tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from hwnas.run.run_folder import hold_run_folder; hold_run_folder(sys.argv[1]); "
                               "print('held', flush=True); sys.stdin.read()", run_dir],
        cwd=PROJECT_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(run_dir)
        result = run_main(f"resume_from={run_dir}", "n_generations=3")
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert f"{run_dir} is in use by process {holder.pid}" in result.stderr
        assert snapshot(run_dir) == before
    finally:
        holder.kill()
        holder.wait()
    hold_run_folder(run_dir)  # the holder died: its lock is free
    with open(os.path.join(run_dir, LOCK_FILE_NAME)) as lock_file:
        assert lock_file.read().startswith(f"process {os.getpid()} ")


# ----- what a resume may change -------------------------------------------------------------
def test_resume_refuses_overrides_that_change_the_experiment_and_changes_nothing(tmp_path, tiny_run):
    run_dir = copy_of_run(tiny_run[0], tmp_path / "run")
    before = snapshot(run_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # resume_from, like the other paths, is relative to the project folder, wherever the command runs
    result = subprocess.run([sys.executable, os.path.join(PROJECT_DIR, "B01_NAS.py"),
                             f"resume_from={os.path.relpath(run_dir, PROJECT_DIR)}", "images_path=other.idx3",
                             "seed=1", "filters_choices=[4]", "n_generations=3", "num_folds=3"],
                            capture_output=True, text=True, timeout=120, cwd=elsewhere)
    # (n_generations may change; num_folds is the run's own value)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    message = result.stderr
    assert "images_path='other.idx3'" in message and "seed=1 (the run has 0)" in message
    assert "filters_choices=[4]" in message and "n_generations=3" not in message and "num_folds" not in message.split("Only")[0]
    assert snapshot(run_dir) == before


def test_resume_refuses_other_data_or_another_split_by_the_recorded_fingerprint(tmp_path, tiny_run, small_data):
    data, folds = small_data  # the tiny run's data and split
    settings = dict(preloaded_data=data, num_selected_folds=1, n_generations=2, n_child=2, epochs=2)
    run_dir = copy_of_run(tiny_run[0], tmp_path / "run")
    recorded = json.load(open(os.path.join(run_dir, "data.json")))
    assert recorded["training_samples"] == list(data.X_train.shape) and recorded["num_folds"] == 3
    NAS(run_dir=run_dir, **settings).claim_run_folder(folds)  # the same data and split: accepted
    other_split = [(validation, train) for train, validation in folds]
    with pytest.raises(RecordsError, match="was searched on other data or another split"):
        NAS(run_dir=run_dir, **settings).claim_run_folder(other_split)
    changed = data._replace(X_train=data.X_train.copy())
    changed.X_train[0, 0, 0] += 1 / 255  # one byte of one session
    with pytest.raises(RecordsError, match="sha256"):
        NAS(run_dir=run_dir, **dict(settings, preloaded_data=changed)).claim_run_folder(folds)
    assert json.load(open(os.path.join(run_dir, "data.json"))) == recorded


# ----- damaged records: one line that names the file --------------------------------------
def damage_checkpoint(content):
    def damage(run_dir):
        with open(os.path.join(run_dir, "checkpoint.pkl"), "wb") as checkpoint_file:
            checkpoint_file.write(content(open(os.path.join(run_dir, "checkpoint.pkl"), "rb").read()))
    return damage


def cut_short(path):
    content = open(path, "rb").read()
    open(path, "wb").write(content[:len(content) // 3])


def repeat_a_record(run_dir):  # what two writers at once left before there was a lock
    path = os.path.join(run_dir, "children.csv")
    lines = open(path).read().splitlines(keepends=True)
    open(path, "w").write("".join(lines[:3] + [lines[2]] + lines[3:]))


@pytest.mark.parametrize("damage, message", [
    (damage_checkpoint(lambda content: b""), r"checkpoint.pkl: cannot be read as a checkpoint"),
    (damage_checkpoint(lambda content: content[:len(content) // 2]), r"checkpoint.pkl: cannot be read as a checkpoint"),
    (damage_checkpoint(lambda content: b"\x80\x04garbage" * 20), r"checkpoint.pkl: cannot be read as a checkpoint"),
    (damage_checkpoint(lambda content: pickle.dumps({"i_gen": 2})), r"checkpoint.pkl: not a checkpoint .*n_evaluated"),
    (lambda run_dir: os.remove(os.path.join(run_dir, "children.csv")), r"children.csv is missing"),
    (repeat_a_record, r"children.csv records g001_c0002 more than once"),
    (lambda run_dir: os.remove(os.path.join(run_dir, "networks", "g001_c0002.pkl")),
     r"networks/g001_c0002.pkl is missing; children.csv records g001_c0002 as evaluated"),
    (lambda run_dir: cut_short(os.path.join(run_dir, "networks", "g001_c0003.pkl")),
     r"networks/g001_c0003.pkl: cannot read the network's results"),
], ids=["empty", "truncated", "garbage", "not-a-checkpoint", "no-children-csv", "repeated-record",
        "network-file-deleted", "network-file-truncated"])
def test_damaged_records_are_named_before_anything_changes(tmp_path, tiny_run, small_data, damage, message):
    data, folds = small_data
    run_dir = copy_of_run(tiny_run[0], tmp_path / "run")
    damage(run_dir)
    before = snapshot(run_dir)
    nas = NAS(run_dir=run_dir, preloaded_data=data, num_selected_folds=1, n_generations=2, n_child=2, epochs=2)
    with pytest.raises(RecordsError, match=message):
        nas.claim_run_folder(folds)
    assert snapshot(run_dir) == before


def test_a_record_cut_short_by_a_crash_is_dropped_when_the_run_goes_on(tmp_path, tiny_run, small_data):
    data, folds = small_data
    run_dir = copy_of_run(tiny_run[0], tmp_path / "run")
    path = os.path.join(run_dir, "children.csv")
    whole = open(path).read()
    with open(path, "a") as records_file:  # a kill in the middle of appending a record
        records_file.write('g003_c0006,3,ok,add_block,g002_c0005,3,gap,1234,"C8k3s1 | unterminat')
    nas = NAS(run_dir=run_dir, preloaded_data=data, num_selected_folds=1, n_generations=2, n_child=2, epochs=2)
    nas.run_NAS(folds)  # the run had finished: resuming it only tidies up
    assert open(path).read() == whole


@pytest.mark.parametrize("damage", [
    lambda run_dir: os.remove(os.path.join(run_dir, "networks", "g001_c0002.pkl")),
    lambda run_dir: cut_short(os.path.join(run_dir, "networks", "g001_c0003.pkl"))], ids=["deleted", "truncated"])
def test_a_resume_refused_for_a_network_file_changes_nothing(tmp_path, tiny_run, damage):
    run_dir = copy_of_run(tiny_run[0], tmp_path / "run")
    damage(run_dir)
    before = snapshot(run_dir)
    result = run_main(f"resume_from={run_dir}", "n_generations=3")
    assert result.returncode != 0 and "Traceback" not in result.stderr and "networks/g001_c000" in result.stderr
    assert snapshot(run_dir) == before  # parameters.json and nas_log.txt included


def test_a_deleted_checkpoint_starts_again_keeping_the_records_and_saying_so(tmp_path, tiny_run):
    run_dir = copy_of_run(tiny_run[0], tmp_path / "run")
    earlier = open(os.path.join(run_dir, "children.csv")).read()
    os.remove(os.path.join(run_dir, "checkpoint.pkl"))
    result = run_main(f"resume_from={run_dir}", "n_generations=0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert open(os.path.join(run_dir, "children_earlier.csv")).read() == earlier
    assert "No checkpoint in" in result.stdout and "the 5 networks recorded before are kept in" in result.stdout
    assert "== Started again: the run folder has no checkpoint" in open(os.path.join(run_dir, "nas_log.txt")).read()


def test_a_path_parameter_given_a_number_and_a_setting_that_does_nothing_are_named(tmp_path, demo_subset_files):
    result = run_main("test_images_path=5", f"logs_dir={tmp_path}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "B01_NAS.py: test_images_path=5: must be a path (text) or None"
    images_path, labels_path = demo_subset_files
    result = run_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}", *TINY_RUN,
                      "n_generations=0", "search_strategy=random", "population_size=2", "inherit_weights=True")
    assert result.returncode == 0, result.stderr[-3000:]
    notice = "inherit_weights=True does nothing under search_strategy='random'"
    assert result.stdout.count(notice) == 1
    (run_dir,) = glob.glob(str(tmp_path / "*"))
    assert open(os.path.join(run_dir, "nas_log.txt")).read().count(notice) == 1


def test_the_script_names_a_damaged_checkpoint_in_one_line_and_changes_nothing(tmp_path, tiny_run):
    run_dir = copy_of_run(tiny_run[0], tmp_path / "run")
    damage_checkpoint(lambda content: content[:100])(run_dir)
    before = snapshot(run_dir)
    result = run_main(f"resume_from={run_dir}", "n_generations=3")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"B01_NAS.py: {os.path.join(run_dir, 'checkpoint.pkl')}: cannot be read as a checkpoint")
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("edit, message", [
    (lambda text: text[:40], "parameters.json: cannot be read as the run's parameters"),
    (lambda text: json.dumps(dict(json.loads(text), colour="red")), "parameters.json: unknown parameter colour"),
    (lambda text: json.dumps(dict(json.loads(text), epochs="many")), "parameters.json: epochs='many': expected int"),
], ids=["not-json", "unknown-name", "wrong-type"])
def test_a_damaged_parameters_file_is_named_in_one_line(tmp_path, tiny_run, edit, message):
    run_dir = copy_of_run(tiny_run[0], tmp_path / "run")
    path = os.path.join(run_dir, "parameters.json")
    edited = edit(open(path).read())
    open(path, "w").write(edited)
    result = run_main(f"resume_from={run_dir}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert message in result.stderr and path in result.stderr


def test_bad_values_are_named_and_numbers_are_read_as_people_write_them(tmp_path):
    defaults = {"flops_thr": 2_000_000, "ram_thr": 16_000, "epochs": 15, "num_classes": None}
    assert parse_overrides(["flops_thr=2e6", "ram_thr=15999.5", "epochs=2e1"], defaults) == \
        {"flops_thr": 2_000_000, "ram_thr": 15999.5, "epochs": 20}
    with pytest.raises(ParameterError, match="epochs='2.5': expected int, got float"):
        parse_overrides(["epochs=2.5"], defaults)
    for parameters, text in (({"seed": -1}, "seed must be an integer from 0"),
                             ({"verbose": 5}, "verbose must be 0, 1 or 2"),
                             ({"flops_thr": 2e6, "ram_thr": 15999.5}, None)):
        if text is None:
            check_search_parameters(parameters)
        else:
            with pytest.raises(ValueError, match=text):
                check_search_parameters(parameters)
    for run_name in ("../elsewhere", "a/b", ".."):
        with pytest.raises(ParameterError, match="run_name="):
            check_run_name(run_name)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(ParameterError, match=f"logs_dir={not_a_folder}: cannot make the run folder"):
        make_run_dir(str(not_a_folder), "nas")
    result = run_main("run_name=../outside", f"logs_dir={tmp_path}")
    assert result.returncode != 0 and "run_name='../outside'" in result.stderr and "Traceback" not in result.stderr


def test_a_run_that_fails_before_its_first_network_leaves_no_run_folder(tmp_path, demo_subset_files):
    images_path, labels_path = demo_subset_files
    result = run_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}",
                      *TINY_RUN, "params_thr=10", "max_attempts=20")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "params_thr" in result.stderr
    assert os.listdir(tmp_path) == []


def test_a_finished_run_whose_models_were_deleted_gets_them_back_on_resume(tmp_path, tiny_run):
    run_dir = copy_of_run(tiny_run[0], tmp_path / "run")
    shutil.rmtree(os.path.join(run_dir, "models"))
    result = run_main(f"resume_from={run_dir}")
    assert result.returncode == 0, result.stderr
    for name in ("best_model.keras", "best_model_int8.tflite", "best_model.json", "parent.keras"):
        assert os.path.exists(os.path.join(run_dir, "models", name)), name
    assert "was missing from" in open(os.path.join(run_dir, "nas_log.txt")).read()


# ----- stop signals and orphans ---------------------------------------------------------------
def long_run(tmp_path, demo_subset_files):
    """A search whose first network trains for minutes (so a test can stop it in the middle)."""
    images_path, labels_path = demo_subset_files
    return start_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}",
                      *TINY_RUN, "epochs=500", "patience=500", "run_name=long")


def test_sigterm_records_the_network_in_training_then_stops_and_says_how_to_resume(tmp_path, demo_subset_files):
    images_path, labels_path = demo_subset_files
    process = start_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}",
                         *TINY_RUN, "run_name=terminated")
    try:
        wait_for_worker(process)
        time.sleep(2)  # the initial parent is in training (the worker is still starting TensorFlow)
        process.send_signal(signal.SIGTERM)  # what a scheduler or a container sends
        stdout, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode != 0 and "Traceback" not in stderr
    assert "SIGTERM: stopping once the next network is recorded" in stdout
    (run_dir,) = glob.glob(os.path.join(tmp_path, "*_terminated"))
    assert f"resume_from={run_dir}" in stderr
    with open(os.path.join(run_dir, "children.csv")) as records_file:
        rows = list(csv.DictReader(records_file))
    assert [(row["child_id"], row["status"]) for row in rows] == [("g000_c0001", "ok")]  # recorded, then stopped
    assert "Interrupted during generation 0" in open(os.path.join(run_dir, "nas_log.txt")).read()


def test_a_second_stop_signal_stops_at_once_and_leaves_no_worker(tmp_path, demo_subset_files):
    process = long_run(tmp_path, demo_subset_files)
    try:
        workers = wait_for_worker(process)
        time.sleep(3)  # the worker is training now
        process.send_signal(signal.SIGTERM)  # asks: stop once the network in training is recorded
        time.sleep(1)
        process.send_signal(signal.SIGINT)  # the second: at once
        stdout, stderr = process.communicate(timeout=30)  # the network alone would take minutes
    finally:
        process.kill()
    assert process.returncode != 0
    assert "SIGTERM: stopping once the next network is recorded" in stdout
    (run_dir,) = glob.glob(os.path.join(tmp_path, "*_long"))
    assert f"resume_from={run_dir}" in stderr
    deadline = time.monotonic() + 10
    while any(map(is_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(is_running, workers))


def test_workers_end_when_the_search_is_killed(tmp_path, demo_subset_files):
    process = long_run(tmp_path, demo_subset_files)
    try:
        workers = wait_for_worker(process)
        time.sleep(3)
        process.kill()  # kill -9: the search cannot tell its workers anything
        process.wait()
        deadline = time.monotonic() + 30
        while any(map(is_running, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(is_running, workers)), "a worker outlived the search"
    finally:
        process.kill()
        for worker in workers:
            if is_running(worker):
                os.kill(worker, signal.SIGKILL)


def ray_session_processes():
    """{session name: pids} of the Ray sessions running on this machine (their processes name them)."""
    import re
    import psutil
    sessions = {}
    for process in psutil.process_iter(["cmdline"]):
        match = re.search(r"session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_\d+", " ".join(process.info["cmdline"] or []))
        if match:
            sessions.setdefault(match.group(0), []).append(process.pid)
    return sessions


def test_a_killed_ray_search_leaves_no_ray_process_behind(tmp_path, demo_subset_files):
    pytest.importorskip("ray")
    before = set(ray_session_processes())
    images_path, labels_path = demo_subset_files
    process = start_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}",
                         *TINY_RUN, "epochs=500", "patience=500", "executor=ray", "run_name=ray_killed")
    session = None
    try:
        deadline = time.monotonic() + 120
        while not (set(ray_session_processes()) - before) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.2)
        (session,) = set(ray_session_processes()) - before
        time.sleep(10)  # Ray's agents and the first network are up
        process.kill()  # kill -9: nothing of the search runs any more
        process.wait()
        deadline = time.monotonic() + 20
        while session in ray_session_processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert session not in ray_session_processes(), "processes of the search's Ray session outlived it"
    finally:
        process.kill()
        for pid in ray_session_processes().get(session, []):  # (what the test found, so the machine stays clean)
            os.kill(pid, signal.SIGKILL)
