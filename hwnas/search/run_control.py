"""When a search stops: its clock (the time budget, across the sessions of a resumed run) and the
stop signals (Ctrl-C, SIGTERM), which ask it to stop at the next safe point."""
import signal
import threading
import time

from tqdm import tqdm


class RunClock:
    """Seconds the search has run over all its sessions, and its time budget (None: no limit)."""

    def __init__(self, time_budget_s):
        self.time_budget_s = time_budget_s
        self.elapsed_before = 0.0
        self.started = time.perf_counter()

    def start(self, elapsed_before=0.0):
        """Starts this session's count, after elapsed_before seconds of earlier sessions."""
        self.started, self.elapsed_before = time.perf_counter(), elapsed_before

    def elapsed_seconds(self):
        return self.elapsed_before + time.perf_counter() - self.started

    def is_up(self, reserve_s=0.0):
        """True when the time budget is set and spent, but for reserve_s seconds kept for later."""
        return self.time_budget_s is not None and self.elapsed_seconds() >= self.time_budget_s - reserve_s

    def seconds_left(self):
        """Seconds of the time budget left (None: no budget; 0 when it is spent)."""
        return None if self.time_budget_s is None else max(0.0, self.time_budget_s - self.elapsed_seconds())


class StopSignals:
    """Makes Ctrl-C (SIGINT) and SIGTERM (what schedulers and containers send) ask the search to
    stop at its next safe point (requested). A KeyboardInterrupt raised at an arbitrary point
    can be swallowed (inside a finalizer during garbage collection) or cut a write short, so the
    first signal only asks; a second one stops at once (the networks in training are ended).
    Used as a context manager around the search; off the main thread it catches nothing."""

    def __init__(self):
        self.requested = False
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {number: signal.signal(number, self._request) for number in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc_info):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}
        return False

    def _request(self, signal_number, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        name = "Ctrl-C" if signal_number == signal.SIGINT else signal.Signals(signal_number).name
        tqdm.write(f"{name}: stopping once the next network is recorded (Ctrl-C again: at once).")

    def check(self):
        """Raises KeyboardInterrupt when a stop was asked for (the caller is at a safe point)."""
        if self.requested:
            raise KeyboardInterrupt
