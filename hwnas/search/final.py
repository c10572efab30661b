"""The final training: after the search, the networks it chose trained once more on every
training session.

The search scores candidates on samples of at most max_search_sessions sessions per fold
(hwnas.data.samples.fold_samples), so that a network costs the same however large the
data set is. A sample ranks well, but not perfectly: a network that learns fast on little data
can beat, there, one that needs more data and does better with it, and a child that inherited its
parent's weights scores higher than its architecture trained from scratch. So the search's best
final_candidates distinct architectures (the finalists) are each trained again from their own seed
on every training session but a stratified tenth held out (holdout_split, copies of a session on
one side), for at most final_epochs with early stopping on that tenth, and the finalist that scores
best on it is chosen: that model, tested on the whole test split (as int8 on TFLM too), is what
the run saves as its best. With save_pareto_models each network of the Pareto front is trained
again too. Like any evaluation it is a Task in, a Result out (hwnas.evaluation.evaluate), run by an
evaluator of its own; each one's result is kept in the run folder (networks/final_<child_id>.pkl)
as it finishes, so a resumed run does not train it again.
"""
import dataclasses
import math
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
    every training session (final); sessions and holdout_sessions: what the final training saw;
    chosen: the finalist the run saves as its best; n_finalists: how many it was chosen from."""
    searched: Net
    final: Net
    sessions: int
    holdout_sessions: int
    chosen: bool = False
    n_finalists: int = 1


class FinalTraining:
    """data: the whole SessionData of the search; settings: the search's (hwnas.search.settings'
    names); make_evaluator(data, folds, n_workers, threads): an evaluator; records: the run's
    RunRecords; say(text): the NAS log."""

    def __init__(self, data, settings, make_evaluator, records, say):
        self.data, self.settings, self.make_evaluator = data, settings, make_evaluator
        self.records, self.say = records, say
        self.folds = [holdout_split(data.Y_train, HOLDOUT_FRACTION, settings["seed"], data.X_train)]

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
        finalists, trained at the best network's measured pace on the search's samples (search_folds),
        would need less for final_epochs epochs of every training session."""
        share = FINAL_SHARE * time_budget_s
        if best is None or not best.train_seconds or not best.epochs_trained or search_folds is None:
            return share
        sessions_per_fold_epoch = len(search_folds[0][0]) + len(search_folds[0][1])
        pace = best.train_seconds / best.epochs_trained / sessions_per_fold_epoch  # seconds per session and epoch
        rounds = self._rounds(self.settings["final_candidates"])
        return min(share, rounds * pace * len(self.data.Y_train) * self.settings["final_epochs"])

    def finalists(self, search):
        """The search's best final_candidates distinct architectures by its first objective, its
        absolute best first (networks without weights: the final training starts from scratch)."""
        best = search.absolute_best
        others = [network for _, network in search.trials.trained()
                  if network.architecture_key() != best.architecture_key()
                  and search.ranking.fitness(network) is not None]
        others.sort(key=search.ranking.fitness, reverse=True)  # a stable sort: equals in the search's order
        return [best] + others[:self.settings["final_candidates"] - 1]

    def train(self, search, seconds_left=None):
        """The final training of a search's finalists (and with save_pareto_models, its front's
        others), when they were trained (a dry run has nothing to train again), within seconds_left of
        the time budget (None: no limit). Returns their FinalModels, the chosen finalist first."""
        finalists = [network for network in self.finalists(search) if network.trained]
        if not finalists:
            self.say("No final training: no network of the search was trained (a dry run).")
            return []
        networks = list(finalists)
        if self.settings["save_pareto_models"]:
            keys = {network.architecture_key() for network in finalists}
            networks += [network for _, network, _ in search.front_members()
                         if network.trained and network.architecture_key() not in keys]
        if len(finalists) > 1:
            self.say(f"Finalists: {', '.join(network.child_id for network in finalists)} (the search's best "
                     f"{len(finalists)} architectures by {search.ranking.objectives.names[0]}); each is trained again "
                     f"on every training session, and the one that scores best on the held-out sessions is kept.")
        return choose(self.run(networks, seconds_left), len(finalists))

    def run(self, networks, seconds_left=None):
        """Trains each of networks (evaluated Nets of the search, trained) again on every training
        session; returns (index in networks, FinalModel) of each, in order (a network whose final training
        failed: none)."""
        train, holdout = self.folds[0]
        results = {}
        for index, network in enumerate(networks):
            saved = self._saved(network, self.task_of(network))
            if saved is not None:
                results[index] = saved
                self.say(f"Final training of {network.child_id}: finished before the run was interrupted, not "
                         f"trained again.")
        to_train = [index for index in range(len(networks)) if index not in results]
        # Several train side by side, one after another in rounds: each round gets its share of the time left.
        limit_s = None if seconds_left is None or not to_train else seconds_left / self._rounds(len(to_train))
        tasks = {index: self.task_of(networks[index], limit_s) for index in to_train}
        if tasks:
            limit = "" if limit_s is None else f" or {limit_s:.0f} s (the rest of the time budget)"
            workers, threads = self._workers(len(tasks)), self._threads(len(tasks))
            self.say(f"Final training of {', '.join(networks[index].child_id for index in tasks)}: on all {len(train)} "
                     f"training sessions (early stopping on a stratified {len(holdout)} held out), at most "
                     f"{self.settings['final_epochs']} epochs{limit} each, {workers} at a time on {threads} "
                     f"thread{'s' * (threads > 1)} each.")
            evaluator = self.make_evaluator(self.data, self.folds, workers, threads)
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
                self.say(f"Final training of {network.child_id} failed ({result.reason}); it is left out (when every "
                         f"finalist's fails, the search's model stays).")
                continue
            final = Net.from_state(result.state, None, self.data)  # (its child_id and mutation: the network's)
            final.parent_ids = network.parent_ids
            finals.append((index, FinalModel(network, final, len(train), len(holdout))))
        return finals

    def _workers(self, n_networks):
        return max(1, min(n_networks, self.settings["n_workers"]))

    def _threads(self, n_networks):
        # The search's workers' cores: a lone network gets them all, several share them out.
        cores = self.settings["n_workers"] * self.settings["threads_per_worker"]
        return max(1, cores // self._workers(n_networks))

    def _rounds(self, n_networks):
        """How many networks one after the other the final training of n_networks takes."""
        return math.ceil(n_networks / self._workers(n_networks))

    def _saved(self, network, task):
        """The final Result a run that was interrupted saved for network, when it is of this task."""
        if not self.records.has_network(final_id(network)):
            return None
        saved = self.records.load_network(final_id(network))
        same = (saved.status == Status.OK and saved.state.train_settings == task.train_settings
                and saved.state.architecture == task.architecture)
        return dataclasses.replace(saved) if same else None


def choose(finals, n_finalists):
    """finals [(index in the networks trained, FinalModel)], the finalists' indices below n_finalists:
    the FinalModels in order, the finalist with the best score on the held-out sessions first and
    chosen (the first of equals: the search's better)."""
    candidates = [(index, model) for index, model in finals if index < n_finalists]
    if not candidates:
        return [model for _, model in finals]
    best_index, best = max(candidates, key=lambda pair: (pair[1].final.val_score, -pair[0]))
    best = best._replace(chosen=True, n_finalists=n_finalists)
    return [best] + [model for index, model in finals if index != best_index]


def final_id(network):
    """The name of network's final result in the run folder's networks/."""
    return f"final_{network.child_id}"
