"""Evaluating networks in a separate process, recycled every few networks.

Keras with the TensorFlow backend keeps about 5 MB per model.fit() even after
keras.backend.clear_session(), so a search that trains thousands of networks in
one process grows until it dies. Each network is instead evaluated by a worker
process (library_net.evaluate_network, a pure function) that is replaced after
`tasks_per_worker` networks; what it leaked goes with it. The same function can
later run on a pool of workers or Ray.
"""
import os
import pickle
import subprocess
import sys
import weakref

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))


class WorkerDied(RuntimeError):
    """The worker process ended before it returned a result (killed, out of memory, crashed)."""


class EvaluationWorker:
    """Runs library_net.evaluate_network(task, data, folds) in a worker process.

    data, folds: what every task is evaluated on (sent once per worker).
    quiet: silence TensorFlow's native and Python messages in the worker.
    tasks_per_worker: networks per worker process. A worker grows by some 20 MB
    per network trained; a new one costs a few seconds of TensorFlow start-up,
    small beside the networks' training.
    """

    def __init__(self, data, folds, quiet=True, tasks_per_worker=10):
        self.data, self.folds, self.quiet = data, folds, quiet
        self.tasks_per_worker = tasks_per_worker
        self.process, self.results, self.tasks_done = None, None, 0
        self._finalizer = weakref.finalize(self, _stop, [None, None])

    def evaluate(self, task):
        """The worker's result for task; raises WorkerDied if the worker ended without one."""
        if self.process is None or self.tasks_done >= self.tasks_per_worker:
            self._start()
        try:
            pickle.dump(task, self.process.stdin)
            self.process.stdin.flush()
            result = pickle.load(self.results)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError) as error:
            exit_code = self.process.wait()
            self._forget()
            raise WorkerDied(f"the evaluation process ended (exit code {exit_code}) without a result") from error
        self.tasks_done += 1
        return result

    def close(self):
        """Ends the worker process (it finishes nothing further)."""
        self._finalizer.detach()
        _stop([self.process, self.results])
        self._forget()

    def _start(self):
        self.close()
        read_fd, write_fd = os.pipe()
        command = [sys.executable, "-c", f"import library_worker; library_worker.serve({write_fd}, {self.quiet})"]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, pass_fds=(write_fd,), cwd=PROJECT_DIR)
        os.close(write_fd)
        self.results = os.fdopen(read_fd, "rb")
        self.tasks_done = 0
        self._finalizer = weakref.finalize(self, _stop, [self.process, self.results])
        pickle.dump((self.data, self.folds), self.process.stdin)
        self.process.stdin.flush()

    def _forget(self):
        self.process, self.results = None, None


def _stop(handles):
    process, results = handles
    if process is not None:
        try:
            process.stdin.close()  # the worker ends when its input ends
            process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
    if results is not None:
        results.close()


def serve(result_fd, quiet):
    """The worker's loop: reads (data, folds), then tasks from stdin; writes each result to result_fd."""
    import gc
    import signal

    import library_config
    # Ctrl-C in a terminal reaches the whole process group; the search decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with library_config.quiet_native_output(enabled=quiet):
        import keras
        import library_net
    if quiet:
        library_config.quiet_tensorflow_logs()
    tasks, results = sys.stdin.buffer, os.fdopen(result_fd, "wb")
    data, folds = pickle.load(tasks)
    while True:
        try:
            task = pickle.load(tasks)
        except EOFError:
            return
        keras.backend.clear_session()
        gc.collect()
        pickle.dump(library_net.evaluate_network(task, data, folds), results)
        results.flush()
