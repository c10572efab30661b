"""The final training: after the search, the networks it chose trained once more on every
training session.

The search scores candidates on samples of at most max_search_sessions sessions per fold
(hwnas.data.samples.fold_samples), so that a network costs the same however large the
data set is. The network it chooses (and with save_pareto_models each network of the Pareto
front) is then trained again from its own seed on every training session but a stratified tenth
held out for early stopping (holdout_split), for at most final_epochs, on every core the search
used, and tested on the whole test split, as int8 on TFLM too: that model is what the run saves
as its best. Like any evaluation it is a Task in, a Result out (hwnas.evaluation.evaluate), run by an
evaluator of its own; each one's result is kept in the run folder (networks/final_<child_id>.pkl)
as it finishes, so a resumed run does not train it again.
"""
import dataclasses
from typing import NamedTuple

from hwnas.data.samples import holdout_split
from hwnas.evaluation.evaluate import Status, Task
from hwnas.network.net import Net

HOLDOUT_FRACTION = 0.1  # of the training split, held out for the final training's early stopping
# With a time budget, the final training is part of it: at most this share is kept for it (less when the
# best network's own training says it needs less), and it stops, with its best weights, when the budget is spent.
FINAL_SHARE = 0.25


class FinalModel(NamedTuple):
    """A network of the search (with its search scores) and the same architecture trained again on
    every training session (final); sessions and holdout_sessions: what the final training saw."""
    searched: Net
    final: Net
    sessions: int
    holdout_sessions: int


class FinalTraining:
    """data: the whole SessionData of the search; settings: the search's (hwnas.search.settings'
    names); make_evaluator(data, folds, n_workers, threads): an evaluator; records: the run's
    RunRecords; say(text): the NAS log."""

    def __init__(self, data, settings, make_evaluator, records, say):
        self.data, self.settings, self.make_evaluator = data, settings, make_evaluator
        self.records, self.say = records, say
        self.folds = [holdout_split(data.Y_train, HOLDOUT_FRACTION, settings["seed"])]

    def task_of(self, network, seconds_left=None):
        """network's final Task: its architecture and seed, final_epochs, the one holdout fold, and
        the time budget's seconds left (None: no limit)."""
        return Task(network.architecture(), dict(network.train_settings, epochs=self.settings["final_epochs"]),
                    network.deploy_precision, use_full_training=True, is_train=True, num_selected_folds=1,
                    progress=f"final training of {network.child_id}", time_limit_s=seconds_left)

    def reserve_for(self, search):
        """reserve_s of a search (0 without a time budget)."""
        budget = search.clock.time_budget_s
        return 0.0 if budget is None else self.reserve_s(budget, search.absolute_best, search.sampled_folds)

    def reserve_s(self, time_budget_s, best, search_folds):
        """Seconds of a time budget to keep for the final training: its share at most; less when the
        best network so far, trained at its measured pace on the search's samples (search_folds),
        would need less for final_epochs epochs of every training session."""
        share = FINAL_SHARE * time_budget_s
        if best is None or not best.train_seconds or not best.epochs_trained or search_folds is None:
            return share
        sessions_per_fold_epoch = len(search_folds[0][0]) + len(search_folds[0][1])
        pace = best.train_seconds / best.epochs_trained / sessions_per_fold_epoch  # seconds per session and epoch
        return min(share, pace * len(self.data.Y_train) * self.settings["final_epochs"])

    def train(self, search, seconds_left=None):
        """The final training of a search's best network (and with save_pareto_models, its front's
        others), when they were trained (a dry run has nothing to train again), within seconds_left of
        the time budget (None: no limit). Returns their FinalModels."""
        networks = [search.absolute_best]
        if self.settings["save_pareto_models"]:
            networks += [search.trials.network_with_weights(network.to_state()) for child_id, network, _
                         in search.front_members() if child_id != search.absolute_best.child_id]
        networks = [network for network in networks if network.trained]
        if not networks:
            self.say("No final training: no network of the search was trained (a dry run).")
            return []
        return self.run(networks, seconds_left)

    def run(self, networks, seconds_left=None):
        """Trains each of networks (evaluated Nets of the search, trained) again on every training
        session; returns their FinalModels, in order (a network whose final training failed: none)."""
        train, holdout = self.folds[0]
        tasks, results = {}, {}
        for index, network in enumerate(networks):
            task = self.task_of(network, None if seconds_left is None else seconds_left / len(networks))
            saved = self._saved(network, task)
            if saved is not None:
                results[index] = saved
                self.say(f"Final training of {network.child_id}: finished before the run was interrupted, not "
                         f"trained again.")
            else:
                tasks[index] = task
                limit = "" if seconds_left is None else f" or {task.time_limit_s:.0f} s (the rest of the time budget)"
                self.say(f"Final training of {network.child_id}: on all {len(train)} training sessions (early "
                         f"stopping on a stratified {len(holdout)} held out), at most {task.train_settings['epochs']} "
                         f"epochs{limit}, {self._threads()} threads.")
        if tasks:
            evaluator = self.make_evaluator(self.data, self.folds, 1, self._threads())
            try:
                for index, result in evaluator.evaluate_all(tasks):
                    network = networks[index]
                    if result.state is not None:
                        result = result.with_state(child_id=network.child_id, mutation=network.mutation)
                    self.records.save_network(final_id(network), result)
                    results[index] = result
            finally:
                evaluator.close()
        finals = []
        for index, network in enumerate(networks):
            result = results[index]
            if result.status != Status.OK:
                self.say(f"Final training of {network.child_id} failed ({result.reason}); the search's model stays.")
                continue
            final = Net.from_state(result.state, None, self.data)  # (its child_id and mutation: the network's)
            final.parent_ids = network.parent_ids
            finals.append(FinalModel(network, final, len(train), len(holdout)))
        return finals

    def _threads(self):
        # One network at a time on every core the search's workers used.
        return self.settings["n_workers"] * self.settings["threads_per_worker"]

    def _saved(self, network, task):
        """The final Result a run that was interrupted saved for network, when it is of this task."""
        if not self.records.has_network(final_id(network)):
            return None
        saved = self.records.load_network(final_id(network))
        same = (saved.status == Status.OK and saved.state.train_settings == task.train_settings
                and saved.state.architecture == task.architecture)
        return dataclasses.replace(saved) if same else None


def final_id(network):
    """The name of network's final result in the run folder's networks/."""
    return f"final_{network.child_id}"
