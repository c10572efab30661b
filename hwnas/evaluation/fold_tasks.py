"""A network's folds as tasks of their own, so that no worker waits while another trains.

When a batch of networks would leave workers waiting at its end (the
specification loop's generation 0, successive halving's lone survivor of a
rung, 3 networks on 2 workers), the networks that would train while workers
wait (the last len(batch) mod n_workers; all of them when fewer than the
workers) are split: each of their folds is a task of its own
(hwnas.evaluation.evaluate.evaluate with only_fold): it trains that fold, scores
it, and measures the network with that fold's weights when the network's task
asks for measures. When every fold of a network is back, its result is put
together here, without TensorFlow, as evaluate would have made it from
the same folds trained in turn: the mean of the folds' validation metrics, the
best fold's weights, test metrics and measures, every fold's epochs and seconds.

A fold trains from its own seed whether it trains alone or after the network's
other folds (a test checks it), so the network's result does not depend on how
its folds were spread: the same seed gives the same scores, weights and deployed
bytes on one worker or many.
"""
import dataclasses

from hwnas.data.metrics import best_fold, mean_over_folds
from hwnas.evaluation.evaluate import Status


def to_split(tasks, folds, n_workers):
    """The ids of tasks {id: Task} whose folds are worth training apart: of the last
    len(tasks) mod n_workers (those that would otherwise train while workers wait, the
    evaluators running tasks in id order), the ones with training and more than one fold."""
    n_left_over = len(tasks) % n_workers
    left_over = sorted(tasks)[len(tasks) - n_left_over:]
    return [task_id for task_id in left_over if tasks[task_id].is_train and tasks[task_id].n_folds(folds) > 1]


def fold_tasks(task, folds):
    """{fold index: the Task that trains only that fold of task's network}, each continuing
    that fold's state when task continues a previous evaluation (successive halving)."""
    previous = task.continue_from
    tasks = {}
    for i_fold in range(task.n_folds(folds)):
        continue_from = None if previous is None else dict(previous, folds={i_fold: previous["folds"][i_fold]})
        tasks[i_fold] = dataclasses.replace(task, only_fold=i_fold, continue_from=continue_from)
    return tasks


def network_result(task, fold_results):
    """task's Result (as hwnas.evaluation.evaluate.evaluate returns it) from the results of its fold
    tasks, {fold index: Result}: the first failed fold's result when one failed, as when the
    folds train in turn."""
    ordered = [fold_results[i_fold] for i_fold in sorted(fold_results)]
    for result in ordered:
        if result.status != Status.OK:
            return result  # a failed evaluation carries no training state
    states = [result.state for result in ordered]
    fold_metrics = [state.val_metrics for state in states]
    best = best_fold(fold_metrics)
    seconds_before = (task.continue_from or {}).get("train_seconds", 0.0)
    # Each fold's seconds include those of the rungs before (its continue_from): counted once.
    seconds = seconds_before + sum(state.train_seconds - seconds_before for state in states)
    val_metrics = mean_over_folds(fold_metrics)
    # The best fold's weights, test metrics and deployed model are the network's; the scores are all folds'.
    phase_seconds = {}
    for state in states:
        for phase, phase_time in (state.phase_seconds or {}).items():
            phase_seconds[phase] = phase_seconds.get(phase, 0.0) + phase_time
    state = states[best].replaced(val_metrics=val_metrics, val_score=val_metrics["accuracy"], train_seconds=seconds,
                                  phase_seconds=phase_seconds, epochs_trained=sum(state.epochs_trained for state in states),
                                  epoch_val_accuracy=[state.epoch_val_accuracy[0] for state in states],
                                  fold_weights={fold: weights for state in states
                                                for fold, weights in state.fold_weights.items()})
    training = None
    if task.keep_training_state:
        training = {"folds": {i_fold: fold_results[i_fold].training_state["folds"][i_fold]
                              for i_fold in sorted(fold_results)}, "train_seconds": seconds}
    return dataclasses.replace(ordered[best], state=state, training_state=training)
