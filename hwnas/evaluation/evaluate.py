"""Evaluating one network, a pure function: a Task in, a Result out.

    evaluate(task, data, folds) -> Result

A Task holds everything that decides the outcome (architecture, training settings with the
network's seed, deployment precision, which folds, how long), so the same task gives the same
result on any worker, process or Ray node. A Result is what comes back: the network's state
(scores, measured figures, trained weights, deployed bytes: hwnas.network.net.Net.to_state), its
Status, the reason of a failure, keras-flops' count, and where training ended when asked (for
successive halving's next rung). Both are frozen (Optuna's FrozenTrial is the model): a step
that changes one makes a new one (dataclasses.replace).
"""
import dataclasses
import enum


class Status(enum.StrEnum):
    """What became of an evaluated network (children.csv's status column holds the value)."""
    OK = "ok"  # trained and measured
    DRY_RUN = "dry_run"  # evaluated untrained (is_train False)
    FAILED = "failed"  # training diverged or raised: recorded with the reason, never selected
    REUSED = "reused"  # its architecture was evaluated before: that result, not trained again
    STOPPED = "stopped"  # successive halving stopped it below the full budget: scores of fewer epochs


@dataclasses.dataclass(frozen=True)
class Task:
    """One network to evaluate. architecture: Net.architecture(); train_settings: epochs,
    batch_size, patience, learning_rate, seed, verbose; is_train False: a dry run;
    num_selected_folds: proxy training's folds (use_full_training: every fold).
    measure: count FLOPs with keras-flops and measure the deployed model (successive halving's
    lower rungs only need the scores); continue_from: a previous evaluation's training_state to
    train on from, up to train_settings' epochs; keep_training_state: return where training
    ended; only_fold: train, score and measure with that fold alone (hwnas.evaluation.fold_tasks)."""
    architecture: dict
    train_settings: dict
    deploy_precision: str
    use_full_training: bool
    is_train: bool
    num_selected_folds: int
    measure: bool = True
    continue_from: object = None
    keep_training_state: bool = False
    only_fold: object = None
    inherit: object = None  # {"from": parents' child_ids, "weights": {fold: {layer: weights}}} (hwnas.strategy.inheritance)
    progress: object = None  # a name to print a line per epoch under (a long training), or None: silent
    time_limit_s: object = None  # seconds its training may take at most (it stops with its best weights), or None

    def n_folds(self, folds):
        """How many folds evaluate trains for this task on folds."""
        return len(folds) if self.use_full_training else self.num_selected_folds


@dataclasses.dataclass(frozen=True)
class Result:
    """What an evaluation gives. state: a NetworkState (None when there is none: a worker that
    died); training_state: {"folds": {i_fold: hwnas.network.training_state's saved fold},
    "train_seconds"} when the task kept it, else None."""
    state: object
    status: Status
    reason: str = ""
    flops_keras_flops: object = None
    training_state: object = None

    @classmethod
    def failed(cls, reason):
        """The result of a network that could not be evaluated (no state: it keeps its own)."""
        return cls(None, Status.FAILED, reason)

    def with_state(self, **changes):
        """This result with its state's fields changed."""
        return dataclasses.replace(self, state=dataclasses.replace(self.state, **changes))


def evaluate(task, data, folds):
    """Evaluates one network: trains (or dry-runs) it on the task's folds and, with task.measure,
    counts its FLOPs with keras-flops and measures its deployed model. An error is a FAILED
    result with the reason, never an exception: one bad candidate must not end a long search."""
    from hwnas.network.net import net_from_architecture
    net = net_from_architecture(task.architecture, None, data, task.train_settings, task.deploy_precision)
    net.continue_from = task.continue_from
    if task.progress is not None:
        from hwnas.network.training import EpochProgress
        net.callbacks = [EpochProgress(task.progress, task.train_settings["epochs"])]
    if task.time_limit_s is not None:
        import time
        net.deadline = time.monotonic() + task.time_limit_s
    if task.inherit is not None:
        net.inherit, net.inherited_from = task.inherit["weights"], tuple(task.inherit["from"])
        net.layers_inherited = len(next(iter(task.inherit["weights"].values()), {}))
    status, reason, flops_keras_flops = Status.OK, "", None
    try:
        if task.only_fold is not None:  # one fold of a network trained apart (hwnas.evaluation.fold_tasks)
            net.cross_validate(task.is_train, folds, [task.only_fold])
        elif task.use_full_training:
            net.train_routine(task.is_train, folds)
        else:
            net.proxy_train_routine(task.is_train, folds, task.num_selected_folds)
        if not net.trained:
            status = Status.DRY_RUN
        if task.measure:
            flops_keras_flops = net.keras_flops()
            net.measure_deployed()
    except Exception as error:
        status, reason = Status.FAILED, f"{type(error).__name__}: {error}"
        net.val_score = net.test_metrics = None
    training = ({"folds": net.fold_states, "train_seconds": net.train_seconds}
                if task.keep_training_state and status == Status.OK else None)
    return Result(net.to_state(), status, reason, flops_keras_flops, training)
