"""The search's loop: a strategy proposes, an evaluator trains under a budget, the trials record,
the strategy selects, the best is kept, a checkpoint is written.

    population = start() or resume()
    while generations are left and time is left:
        children = strategy.propose(population, trials.keys)
        evaluate(children)                      # budget.run: the full budget or successive halving
        population = strategy.select(population, children)
        improved = update_best(children)
        end_generation(population, improved)    # listeners save, report, show; checkpoint

Every network gets its id and training seed when it is proposed, so the result does not depend
on how many networks train at once; an architecture already evaluated is never trained again.
What people see (log text, progress, plots, saved models) listens to the loop's events
(hwnas.run.listeners): the loop formats no text for them but the sentences of its decisions.
"""
import contextlib
import random

import numpy as np

from hwnas.data.samples import fold_samples
from hwnas.evaluation.evaluate import Status
from hwnas.run.records import ChildRecord, SearchState
from hwnas.search.trials import task_of
from hwnas.strategy.search_space import ConstraintError
from hwnas.strategy.strategies import SearchStopped


class Search:
    """One run's loop. pieces: a dict with settings (hwnas.search.settings' names), data, records
    (RunRecords), trials (Trials), space (SearchSpace), strategy, ranking and front_ranking
    (hwnas.strategy.objectives.Ranking), budget (hwnas.search.budget), clock (RunClock), stop
    (StopSignals), make_evaluator(folds), listeners (a list, called in order), predictor
    (hwnas.strategy.predictor.Predictor, or None without proposal_pool) and final
    (hwnas.search.final.FinalTraining, or None without final_training)."""

    def __init__(self, **pieces):
        self.__dict__.update(pieces)
        self.final_models = []  # the final training's FinalModels, the chosen finalist first
        self._folds_given = self.sampled_folds = None
        self.started_one = False  # whether a network of this session started (may_start)
        self.i_gen = 0
        self.absolute_best = None  # the best network by the first objective, trained to the full budget
        self.best_record = None  # its children.csv record, as the console shows it
        self.failures_in_a_row = 0
        self.evaluator = None
        self.population = []
        self.parents = {}  # child_id -> the evaluated networks the generation's children are made of

    # ----- events ------------------------------------------------------------------
    def emit(self, event, *arguments):
        for listener in self.listeners:
            getattr(listener, event)(self, *arguments)

    def say(self, text):
        """A sentence of the search's for the NAS log."""
        self.emit("message", text)

    # ----- the loop ------------------------------------------------------------------
    def run(self, folds):
        """Runs the search on folds to its last generation or its time budget; returns the
        last population (the mutation loop's: its parent). Raises ConstraintError, SearchStopped;
        a KeyboardInterrupt (Ctrl-C, SIGTERM) is told to the listeners and raised again."""
        try:
            with self.stop:
                population = self.resume() if self.records.has_checkpoint() else self.start(folds)
                while self.i_gen < self.settings["n_generations"] and not self.time_is_up():
                    self.i_gen += 1
                    next_population = self.generation(population, folds)
                    if next_population is None:
                        self.i_gen -= 1
                        break
                    population = next_population
                self.close_evaluator()  # its workers' memory goes before the final training's
                self.train_final()
        except ConstraintError as error:
            self.say(str(error))
            raise
        except KeyboardInterrupt:
            self.emit("interrupted")
            raise
        finally:
            self.close_evaluator()
        self.emit("ended", population)
        return population

    def close_evaluator(self):
        if self.evaluator is not None:
            self.evaluator.close()
            self.evaluator = None

    def train_final(self):
        """With final_training: the chosen networks trained again on every training session
        (hwnas.search.final.FinalTraining.train); the listeners save them."""
        if self.final is not None:
            self.final_models = self.final.train(self, self.clock.seconds_left())
            self.stop.check()
            self.emit("final_trained", self.final_models)

    def start(self, folds):
        """Generation 0: the strategy's first networks, evaluated; returns the first population."""
        if self.records.has_records():  # a run killed before its first checkpoint, or whose checkpoint went
            self.emit("restarted", *self.records.set_aside())
        self.clock.start()
        self.emit("started", folds)
        first = self.strategy.first_generation()
        self.ranking.check_on(first[0])
        self.front_ranking.check_on(first[0])
        first = self.evaluate(first, folds)
        population = self.strategy.first_population(first)
        if not population:
            raise SearchStopped(f"{self.strategy.first_generation_name} failed, so there is nothing to evolve; "
                                f"see why in {self.records.records_path}")
        # The best is the best by the first objective, not the first of NSGA-II's order
        # (with several objectives that is the least crowded network of the first front).
        self.absolute_best = self.ranking.best_by_first_objective(population)
        if self.absolute_best is None:  # successive halving's fully trained network(s) failed
            raise SearchStopped(f"no network of generation 0 finished its full training (the others were stopped "
                                f"early by successive halving); see why in {self.records.records_path}")
        self.end_generation(population, first, improved=True)
        return population

    def generation(self, population, folds):
        """One generation: the strategy's children, evaluated, then its selection. Returns the next population."""
        self.emit("generation_started")
        self.parents = {network.child_id: network for network in population}
        self.prepare_predictor()
        children = self.evaluate(self.strategy.propose(population, self.trials.keys), folds)
        if not children:  # the time budget ran out before its first network: no generation
            return None
        self.check_predictor(children)
        next_population = self.strategy.select(population, children, self.i_gen)
        improved = self.update_best(children)
        self.end_generation(next_population, children, improved)
        return next_population

    def end_generation(self, population, children, improved):
        """Tells the listeners (models saved, reports refreshed), then writes the checkpoint."""
        self.population = population
        self.emit("generation_ended", population, children, improved)
        self.save_checkpoint(population)

    def time_is_up(self):
        reserve = self.final.reserve_for(self) if self.final else 0.0
        if not self.clock.is_up(reserve):
            return False
        kept = f", {reserve:.0f} s of it kept for the final training" if reserve else ""
        self.say(f"\nTime budget of {self.clock.time_budget_s} s spent after generation {self.i_gen} "
                 f"({self.clock.elapsed_seconds():.0f} s{kept}): the search ends here.")
        return True

    def may_start(self):
        """Whether a network may start now: not once the time budget (less the final training's share)
        is spent, but for the search's first network (without one there is no search)."""
        first, self.started_one = not self.started_one, True
        return first or not self.clock.is_up(self.final.reserve_for(self) if self.final else 0.0)

    # ----- evaluating a generation -----------------------------------------------------
    def evaluate(self, children, folds):
        """Trains (or dry-runs) each child under the budget, measures its deployed model, and
        records it in id order as results come in. A child whose architecture was evaluated
        before takes that result (REUSED); a child that fails is recorded with the reason.
        Returns the children recorded: with a time budget, those that started before it ran out."""
        tasks, keys, results, keys_before = {}, [], {}, set(self.trials.keys)
        for index, child in enumerate(children):
            key = self.trials.open(child, self.i_gen)
            if key not in self.trials.keys:
                task = self.task_of(child)  # first: an inheriting child's epochs are cut, as its saved result says
                # Halving ranks the generation's networks together: a resumed generation trains them all again.
                saved = None if self.budget.trains_together else self.trials.saved_before_resume(child)
                if saved is not None:
                    results[index] = saved
                    self.say(f"{child.child_id} finished before the run was interrupted: its saved result is used, "
                             f"not trained again.")
                else:
                    tasks[index] = task
            self.trials.keys.add(key)
            keys.append(key)
        self.emit("evaluation_started", children)
        recorded = self.record_ready(children, keys, tasks, results, 0)
        try:
            with contextlib.closing(self.budget.run(tasks, lambda rung_tasks: self.evaluate_all(rung_tasks, folds, children),
                                                    lambda rung_results: self.ranked(children, rung_results),
                                                    on_rung=lambda *rung: self.emit("rung_started", children, *rung))) as finished:
                for index, result in finished:
                    results[index] = result
                    recorded = self.record_ready(children, keys, tasks, results, recorded)
        finally:
            self.emit("evaluation_ended")
        if recorded < len(children):  # the time budget ran out: the rest never started, and never was
            self.trials.forget(len(children) - recorded, keys_before | set(keys[:recorded]))
            self.say(f"The time budget ran out: {recorded} of the generation's {len(children)} networks started; "
                     f"it closes with {'them' if recorded > 1 else 'it'}.")
        return children[:recorded]

    def task_of(self, child):
        """child's Task (hwnas.search.trials.task_of: with inherit_weights, what its parents give it)."""
        return task_of(child, self.settings, self.parents)

    def evaluate_all(self, tasks, folds, children):
        """The evaluator's (index, Result) of tasks as they finish; with a budget that trains the
        generation together, stops after the network that finishes next when a stop was asked."""
        folds = self.sampled(folds)
        if self.evaluator is None or self.evaluator.folds is not folds:
            self.close_evaluator()
            self.evaluator = self.make_evaluator(folds)
        for index in self.evaluator.to_split(tasks):
            self.say(f"{children[index].child_id}: its {tasks[index].n_folds(folds)} folds train on separate workers "
                     f"(otherwise a worker would wait).")
        with contextlib.closing(self.evaluator.evaluate_all(tasks, self.may_start)) as finished:  # leaving early ends them
            for index, result in finished:
                self.emit("network_finished")
                if self.budget.trains_together:
                    self.stop.check()
                yield index, result

    def sampled(self, folds):
        """folds as candidates use them: each part a stratified sample of at most max_search_sessions
        (hwnas.data.samples.fold_samples), drawn once per run from the seed."""
        if self._folds_given is not folds:
            labels = self.data.Y_train.argmax(axis=1)
            self._folds_given = folds
            self.sampled_folds = fold_samples(folds, labels, self.settings["max_search_sessions"], self.settings["seed"])
        return self.sampled_folds

    def ranked(self, children, results):
        """The indices of results {index: Result} that have scores, best first by the ranking."""
        scored = {}
        for index, result in results.items():
            if result.status != Status.FAILED and result.state is not None:
                children[index].take_results(result.state)
                if self.ranking.fitness(children[index]) is not None:
                    scored[id(children[index])] = index
        ranked = [scored[id(child)] for child in self.ranking.ranked([children[i] for i in sorted(scored.values())])]
        self.emit("ranked", children, ranked)
        return ranked

    def record_ready(self, children, keys, tasks, results, recorded):
        """Records the children whose results are in, in id order (a child waits for those
        before it). Returns how many are recorded."""
        while recorded < len(children) and (recorded not in tasks or recorded in results):
            self.record(children[recorded], keys[recorded], results.get(recorded))
            recorded += 1
        return recorded

    def record(self, child, key, result):
        """Gives child its result (None: reuse), writes its record, tells the listeners, and
        stops the search when asked or when too many failed in a row."""
        status, reason, flops_keras_flops = self.trials.close(child, key, result)
        record = ChildRecord.of(child, self.i_gen, status, reason, flops_keras_flops, self.constraints.figures(child))
        self.records.append(record)
        fitness = self.ranking.fitness(child)
        if fitness is not None and not child.stopped_early and (
                self.best_record is None or fitness > self.best_record["fitness"]):
            self.best_record = dict(record.row(), fitness=fitness)  # (plain data: the checkpoint keeps it)
        self.emit("network_recorded", child, record, flops_keras_flops)
        self.stop.check()
        if status == Status.REUSED:
            return
        self.failures_in_a_row = self.failures_in_a_row + 1 if status == Status.FAILED else 0
        if self.failures_in_a_row >= self.settings["max_failures_in_a_row"]:
            message = (f"{self.failures_in_a_row} networks in a row failed (the last: {reason}); "
                       f"stopping. Every failure and its reason is in {self.records.records_path}")
            self.say(message)
            raise SearchStopped(message)

    # ----- the predictor in front of training ---------------------------------------------
    def prepare_predictor(self):
        """With proposal_pool: once predictor_warmup networks are trained, the predictor, fitted on
        every network trained to the full budget, chooses of each pool of candidates the one it
        ranks first (before: the first drawn)."""
        if self.predictor is not None:
            trained = [(network, self.ranking.fitness(network)) for _, network in self.trials.trained()]
            self.space.chooser = self.predictor.chooser([(network, score) for network, score in trained
                                                         if score is not None], self.settings["predictor_warmup"])

    def check_predictor(self, children):
        """Tells the listeners how well the predictor ranked this generation's children (Spearman's
        correlation of its predictions and their measured first objective)."""
        if self.predictor is not None and self.space.chooser is not None:
            self.emit("predictor_checked", *self.predictor.checked(children, self.ranking))

    # ----- the best and the front -------------------------------------------------------
    def update_best(self, children):
        """Makes the best of children (by the first objective) the absolute best if it beats it.
        Returns True when it did."""
        best_child = self.ranking.best_by_first_objective(children)
        if best_child is None or self.ranking.fitness(best_child) <= self.ranking.fitness(self.absolute_best):
            return False
        self.absolute_best = best_child
        return True

    def front_members(self):
        """The Pareto front over the front objectives of every trained network: a list of
        (child_id, network without weights, objective values), best first objective first."""
        return self.front_ranking.front(self.trials.trained())

    # ----- checkpoint and resume ---------------------------------------------------------
    def save_checkpoint(self, population):
        self.records.save_checkpoint(SearchState(
            self.i_gen, self.trials.n_evaluated, self.trials.n_trained, self.space.rng.getstate(), random.getstate(),
            np.random.get_state(), [network.to_state().light().as_dict() for network in population],
            self.absolute_best.to_state().light().as_dict(), self.best_record, self.failures_in_a_row,
            self.clock.elapsed_seconds()))

    def resume(self):
        """Restores the search from its checkpoint; drops the records of the unfinished
        generation (its networks are proposed again, identically, and those that finished are
        taken from their network files). Returns the population."""
        state = self.records.load_checkpoint()
        self.i_gen, self.trials.n_evaluated, self.trials.n_trained = state.i_gen, state.n_evaluated, state.n_trained
        self.space.rng.setstate(state.search_rng)
        random.setstate(state.python_random)
        np.random.set_state(state.numpy_random)
        self.best_record, self.failures_in_a_row = state.best_record, state.failures_in_a_row
        self.clock.start(state.elapsed_seconds)
        if state.history is None:
            self.trials.rebuild(self.records.first_records(state.n_evaluated))
        else:
            self.trials.adopt_history(state.history)
        population = [self.trials.network_with_weights(network_state) for network_state in state.population]
        best = self.trials.network_with_weights(state.absolute_best)
        self.absolute_best = next((network for network in population if network.child_id == best.child_id), best)
        self.records.keep_first(state.n_evaluated)
        self.population = population
        self.emit("resumed", population)
        return population
