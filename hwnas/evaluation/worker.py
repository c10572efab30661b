"""Evaluating networks in a separate process, recycled every few networks.

Keras with the TensorFlow backend keeps about 5 MB per model.fit() even after
keras.backend.clear_session(), so a search that trains thousands of networks in
one process grows until it dies. Each network is instead evaluated by a worker
process (hwnas.evaluation.evaluate.evaluate, a pure function) that is replaced after
`tasks_per_worker` networks; what it leaked goes with it. A worker is a new
Python process (never a fork of one that imported TensorFlow), its TensorFlow
thread counts set before TensorFlow runs anything. hwnas.evaluation.evaluators runs
several of them at once, or the same function as Ray tasks (evaluate_in_ray_task).
"""
import os
import pickle
import subprocess
import sys
import weakref

from hwnas import PROJECT_DIR


class WorkerDied(RuntimeError):
    """The worker process ended before it returned a result (killed, out of memory, crashed)."""


class EvaluationWorker:
    """Runs hwnas.evaluation.evaluate.evaluate(task, data, folds) in a worker process.

    data: the hwnas.evaluation.shared_data.SharedData every task is evaluated on (its file is mapped
    by the worker, not copied); folds: the folds (sent once per worker).
    quiet: silence TensorFlow's native and Python messages in the worker.
    tasks_per_worker: networks per worker process. A worker grows by some 20 MB
    per network trained; a new one costs a few seconds of TensorFlow start-up,
    small beside the networks' training.
    threads: TensorFlow's intra- and inter-op threads in the worker (None: TensorFlow's default).
    """

    def __init__(self, data, folds, quiet=True, tasks_per_worker=10, threads=None):
        self.data, self.folds, self.quiet = data, folds, quiet
        self.tasks_per_worker, self.threads = tasks_per_worker, threads
        self.process, self.results, self.lifeline, self.tasks_done = None, None, None, 0
        self._finalizer = weakref.finalize(self, _stop, [None, None, None])

    def evaluate(self, task):
        """The worker's result for task; raises WorkerDied if the worker ended without one."""
        try:
            if self.process is None or self.tasks_done >= self.tasks_per_worker:
                self._start()  # a worker can die in start-up too, while it is sent the data
            pickle.dump(task, self.process.stdin)
            self.process.stdin.flush()
            result = pickle.load(self.results)
        except (EOFError, OSError, pickle.UnpicklingError) as error:  # OSError: BrokenPipeError and kin
            process = self.process
            self.close()
            exit_code = process.returncode if process is not None else None
            raise WorkerDied(f"the evaluation process ended (exit code {exit_code}) without a result") from error
        self.tasks_done += 1
        return result

    def kill(self):
        """Ends the worker process at once, even in the middle of a network (evaluate then
        raises WorkerDied in the thread that waits for it)."""
        process = self.process
        if process is not None:
            process.kill()

    def close(self):
        """Ends the worker process (it finishes nothing further)."""
        self._finalizer.detach()
        _stop([self.process, self.results, self.lifeline])
        self._forget()

    def _start(self):
        self.close()
        read_fd, write_fd = os.pipe()
        # The lifeline: the worker never reads anything from it but its end, which comes when
        # this process closes it or ends in any way (kill -9 included); the worker then ends too.
        lifeline_read, lifeline_write = os.pipe()
        command = [sys.executable, "-c", f"from hwnas.evaluation import worker; worker.serve("
                   f"{write_fd}, {lifeline_read}, {self.data.fd}, {self.quiet}, {self.threads})"]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                        pass_fds=(write_fd, lifeline_read, self.data.fd), cwd=PROJECT_DIR)
        os.close(write_fd)
        os.close(lifeline_read)
        self.results, self.lifeline = os.fdopen(read_fd, "rb"), lifeline_write
        self.tasks_done = 0
        self._finalizer = weakref.finalize(self, _stop, [self.process, self.results, self.lifeline])
        pickle.dump((self.data.layout, self.folds), self.process.stdin)
        self.process.stdin.flush()

    def _forget(self):
        self.process, self.results, self.lifeline = None, None, None


def _stop(handles):
    """Ends a worker at once: its lifeline's end makes it exit whatever it is doing."""
    process, results, lifeline = handles
    if lifeline is not None:
        os.close(lifeline)
    if process is not None:
        try:
            process.stdin.close()
        except OSError:  # BrokenPipeError: it has ended already
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if results is not None:
        results.close()


def serve(result_fd, lifeline_fd, data_fd, quiet, threads):
    """The worker's loop: maps the data of data_fd as the layout it reads first says, reads the
    folds, then tasks from stdin; writes each result to result_fd. Ends as soon as lifeline_fd
    ends (the search closed it, or the search's process is gone)."""
    import signal
    import threading

    from hwnas.evaluation.shared_data import open_shared

    # Ctrl-C in a terminal and a scheduler's SIGTERM reach the whole process group; the
    # search decides when to stop, and its end ends this worker through the lifeline.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_end_with_the_search, args=(lifeline_fd,), daemon=True).start()
    prepare_process(quiet, threads)
    tasks, results = sys.stdin.buffer, os.fdopen(result_fd, "wb")
    layout, folds = pickle.load(tasks)
    data = open_shared(data_fd, layout)
    while True:
        try:
            task = pickle.load(tasks)
        except EOFError:
            return
        pickle.dump(evaluate_here(task, data, folds), results)
        results.flush()


def _end_with_the_search(lifeline_fd):
    os.read(lifeline_fd, 1)  # returns (empty) only when every writing end is closed
    os._exit(0)


_prepared = False


def prepare_process(quiet, threads):
    """Imports TensorFlow quietly and sets its thread counts, once per process, before it runs anything."""
    global _prepared
    if _prepared:
        return
    from hwnas.common.quiet import quiet_native_output, quiet_tensorflow_logs
    with quiet_native_output(enabled=quiet):
        import tensorflow as tf

        from hwnas.network.keras_flops import import_keras_flops
        import_keras_flops()  # keras-flops' registrations, made once
    if quiet:
        quiet_tensorflow_logs()
    if threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    _prepared = True


def evaluate_here(task, data, folds):
    """hwnas.evaluation.evaluate.evaluate in this process, on a clean Keras session."""
    import gc

    import keras

    from hwnas.evaluation.evaluate import evaluate
    keras.backend.clear_session()
    gc.collect()
    return evaluate(task, data, folds)


def evaluate_in_ray_task(task, data_and_folds, quiet, threads):
    """A network's evaluation as a Ray task; data_and_folds is put in Ray's object store once
    and read by each node from there."""
    prepare_process(quiet, threads)
    data, folds = data_and_folds
    return evaluate_here(task, data, folds)
