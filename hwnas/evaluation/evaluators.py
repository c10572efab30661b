"""Evaluating many networks at once: worker processes on this machine, or Ray tasks.

An evaluator takes tasks {task id: hwnas.evaluation.evaluate.Task} (architecture, settings
and the network's seed) and yields (task id, hwnas.evaluation.evaluate.Result) as
each network finishes, in whatever order they finish; the search records them
in id order, so the result of a search does not depend on how many networks
run at once. The data set is in memory once per machine, whatever the number of
workers: mapped by each worker process from one shared file (local,
hwnas.evaluation.shared_data) or read from Ray's object store (once per node); it never
travels with a task.

Networks that would train while workers wait (fewer networks than workers,
the last of an uneven batch) train their folds on separate workers
(hwnas.evaluation.fold_tasks), with the same result as on one.

A worker process or Ray node that dies in the middle of a network costs that
try only: the network is tried again, up to max_tries times in all, then
recorded as failed with the reason.
"""
import contextlib
import os
import queue
import subprocess
import sys
import threading

from hwnas import PROJECT_DIR
from hwnas.evaluation import EXECUTORS  # noqa: F401  (the executors make_evaluator knows)
from hwnas.evaluation import fold_tasks as fold_tasks_lib
from hwnas.evaluation.evaluate import Result
from hwnas.evaluation.shared_data import SharedData
from hwnas.evaluation.worker import EvaluationWorker, WorkerDied, evaluate_in_ray_task

MAX_TRIES = 3  # tries per network when its worker or node dies
TASKS_PER_WORKER = 10  # networks per worker process before it is replaced (TensorFlow's memory growth)
# What Ray ships to every node: the project's code, not its data, runs or history.
# (Its excludes are gitignore patterns: "/data" is the project's data folder, not hwnas/data/.)
RAY_RUNTIME_ENV = {"working_dir": PROJECT_DIR,
                   "excludes": ["/.git", "/logs", "/data", "/docs", "/tests", "__pycache__", ".pytest_cache"],
                   "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3"}}


def make_evaluator(executor, data, folds, n_workers, threads_per_worker, ray_address=None, quiet=True):
    """The evaluator of `executor` ("local" or "ray") for networks trained on data and folds."""
    if executor == "ray":
        return RayEvaluator(data, folds, n_workers, threads_per_worker, ray_address, quiet)
    return LocalEvaluator(data, folds, n_workers, threads_per_worker, quiet)


class Evaluator:
    """What the evaluators share: tasks in, (task id, result) out as each network finishes,
    a network's folds spread over workers that would otherwise wait. A subclass runs the
    tasks themselves (_evaluate_each) on its n_workers."""

    def to_split(self, tasks):
        """The ids of tasks {id: task} whose folds evaluate_all trains on separate workers."""
        return fold_tasks_lib.to_split(tasks, self.folds, self.n_workers)

    def evaluate_all(self, tasks, may_start=None):
        """Yields (task id, result) for each of tasks {id: task} as it finishes. Leaving the
        loop early ends the networks still in training. may_start(): asked before each network
        starts (None: all start); once it says no, no network starts and those not started give
        no result (the folds of a network started all train)."""
        split = self.to_split(tasks)
        # (id, -1): a whole network; (id, i): fold i of a split one, assembled when its last fold is back.
        each = {(task_id, -1): task for task_id, task in tasks.items() if task_id not in split}
        for task_id in split:
            each.update({(task_id, i_fold): fold_task
                         for i_fold, fold_task in fold_tasks_lib.fold_tasks(tasks[task_id], self.folds).items()})
        fold_results = {task_id: {} for task_id in split}
        with contextlib.closing(self._evaluate_each(each, StartGate(may_start))) as finished:
            for (task_id, i_fold), result in finished:
                if i_fold == -1:
                    yield task_id, result
                    continue
                fold_results[task_id][i_fold] = result
                if len(fold_results[task_id]) == tasks[task_id].n_folds(self.folds):
                    yield task_id, fold_tasks_lib.network_result(tasks[task_id], fold_results[task_id])


class StartGate:
    """Which networks may start: a fold of a network already started always (its other folds
    complete it), any other as may_start() says (None: all), and none once it said no. Safe to ask
    from several threads."""

    def __init__(self, may_start=None):
        self.may_start, self.started, self.closed = may_start, set(), False
        self.lock = threading.Lock()

    def admits(self, network_id):
        with self.lock:
            if network_id in self.started:
                return True
            if self.closed or (self.may_start is not None and not self.may_start()):
                self.closed = True
                return False
            self.started.add(network_id)
            return True


class LocalEvaluator(Evaluator):
    """n_workers worker processes on this machine, each training one network (or one of its
    folds) at a time with threads_per_worker TensorFlow threads."""

    def __init__(self, data, folds, n_workers=1, threads_per_worker=None, quiet=True, max_tries=MAX_TRIES,
                 tasks_per_worker=TASKS_PER_WORKER):
        self.folds, self.n_workers = folds, n_workers
        self.shared_data = SharedData(data)
        self.workers = [EvaluationWorker(self.shared_data, folds, quiet, tasks_per_worker, threads_per_worker)
                        for _ in range(n_workers)]
        self.max_tries = max_tries
        self.stopping = threading.Event()

    def _evaluate_each(self, tasks, gate):
        waiting, finished = queue.SimpleQueue(), queue.SimpleQueue()
        for item in sorted(tasks.items()):  # in id order, a network's folds together
            waiting.put(item)

        def drive(worker):
            try:
                while not self.stopping.is_set():
                    try:
                        task_id, task = waiting.get_nowait()
                    except queue.Empty:
                        return
                    if not gate.admits(task_id[0]):
                        continue  # not started: no result
                    try:
                        result = self._evaluate(worker, task)
                    except Exception as error:  # never leave the search waiting for a result
                        result = Result.failed(f"{type(error).__name__}: {error}")
                    finished.put((task_id, result))
            finally:
                finished.put(None)  # this worker takes no more

        threads = [threading.Thread(target=drive, args=(worker,), daemon=True)
                   for worker in self.workers[:len(tasks)]]
        for thread in threads:
            thread.start()
        try:
            n_done = 0
            while n_done < len(threads):
                item = finished.get()
                if item is None:
                    n_done += 1
                else:
                    yield item
        finally:
            if any(thread.is_alive() for thread in threads):  # left early: stop what still trains
                self.stopping.set()
                for worker in self.workers:
                    worker.kill()
                for thread in threads:
                    thread.join()
                self.stopping.clear()

    def _evaluate(self, worker, task):
        for _ in range(self.max_tries):
            try:
                return worker.evaluate(task)
            except WorkerDied as error:
                if self.stopping.is_set():
                    return Result.failed("stopped")
                last_error = error
        return Result.failed(f"WorkerDied: {last_error} (on each of {self.max_tries} tries)")

    def close(self):
        for worker in self.workers:
            worker.close()
        self.shared_data.close()


class RayEvaluator(Evaluator):
    """Ray tasks, at most n_workers at once, each asking Ray for threads_per_worker CPUs.

    ray_address: None starts Ray on this machine (ended by close); "auto" or
    "host:port" joins a running cluster. The project's code is shipped to every
    node (RAY_RUNTIME_ENV); the data set is put in the object store once. Ray
    retries a task whose worker or node died (max_tries in all) and replaces
    each worker process after tasks_per_worker networks.
    """

    def __init__(self, data, folds, n_workers, threads_per_worker, ray_address=None, quiet=True,
                 max_tries=MAX_TRIES, tasks_per_worker=TASKS_PER_WORKER):
        import ray
        self.ray, self.folds = ray, folds
        self.started_ray = not ray.is_initialized()
        self.session_watch = None
        if self.started_ray:
            ray.init(address=ray_address, runtime_env=RAY_RUNTIME_ENV, include_dashboard=False,
                     log_to_driver=not quiet, logging_level="ERROR" if quiet else "INFO")
            if ray_address is None:  # a session of this process's own: it must not outlive it
                self.session_watch = watch_ray_session(ray._private.worker._global_node.session_name)
        self.data_ref = ray.put((data, folds))
        # A task asking for more CPUs than any node has would wait for ever: at most the largest node's.
        largest_node = max((node["Resources"].get("CPU", 1) for node in ray.nodes() if node["Alive"]), default=1)
        threads = min(threads_per_worker or 1, max(1, int(largest_node)))
        self.n_workers, self.threads, self.quiet, self.max_tries = n_workers, threads, quiet, max_tries
        self.remote = ray.remote(num_cpus=threads, max_retries=max_tries - 1,
                                 max_calls=tasks_per_worker)(evaluate_in_ray_task)

    def _evaluate_each(self, tasks, gate):
        ray = self.ray
        waiting, running = sorted(tasks.items()), {}
        try:
            while waiting or running:
                while waiting and len(running) < self.n_workers:
                    task_id, task = waiting.pop(0)
                    if gate.admits(task_id[0]):
                        running[self.remote.remote(task, self.data_ref, self.quiet, self.threads)] = task_id
                if not running:
                    break
                done, _ = ray.wait(list(running), num_returns=1)
                for reference in done:
                    task_id = running.pop(reference)
                    try:
                        result = ray.get(reference)
                    except ray.exceptions.RayError as error:  # its worker or node died on every try
                        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
                        result = Result.failed(f"{type(error).__name__}: {first_line} "
                                               f"(on each of {self.max_tries} tries)")
                    yield task_id, result
        finally:
            for reference in running:
                ray.cancel(reference, force=True)

    def close(self):
        if self.started_ray:
            self.ray.shutdown()
        if self.session_watch is not None:
            os.close(self.session_watch)
            self.session_watch = None


def watch_ray_session(session_name):
    """Starts a small process that ends the local Ray session's processes once this process ends, in
    any way (kill -9 included): left alone, Ray's dashboard and runtime-env agents outlive a killed
    driver by minutes. Returns the descriptor whose closing (or this process's end) sets it off."""
    lifeline_read, lifeline_write = os.pipe()
    subprocess.Popen([sys.executable, "-c", f"from hwnas.evaluation import evaluators; evaluators.end_ray_session("
                      f"{lifeline_read}, {session_name!r})"], pass_fds=(lifeline_read,), cwd=PROJECT_DIR,
                     start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    os.close(lifeline_read)
    return lifeline_write


def end_ray_session(lifeline_fd, session_name):
    """Waits for the lifeline's end, then kills every process of the Ray session (its command line
    names the session) and their children."""
    import psutil
    os.read(lifeline_fd, 1)  # returns (empty) only when the search's end of the pipe is closed
    session = [process for process in psutil.process_iter(["cmdline"])
               if session_name in " ".join(process.info["cmdline"] or [])]
    for process in session:
        try:
            for member in [*process.children(recursive=True), process]:
                member.kill()
        except psutil.Error:  # it ended by itself meanwhile
            pass
