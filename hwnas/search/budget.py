"""How long each network of a generation trains: the full budget, or successive halving. One call,
whatever the kind, so the search's loop has no branch for it:

    for index, result in budget.run(tasks, evaluate_all, rank):

FullBudget: every network trains the full epochs, and its result comes back as it finishes.

SuccessiveHalving: train every candidate a little, the best longer.
    rung 0:  every candidate trains min_epochs epochs
    rung 1:  the best 1/halving_eta of them train min_epochs x halving_eta epochs
    ...      until the last rung, which trains the full budget (epochs)
A promoted candidate continues its training where its previous rung ended (its weights,
optimizer and early-stopping state: hwnas.network.training_state), so the epochs of the rungs below
are not trained again and the outcome depends on nothing but the seeds (not on how many
networks train at once); a candidate that reaches the last rung has trained the full budget,
though not bit for bit as it would have in one go (its later epochs are shuffled from seeds of
their own). When one candidate is left it goes straight to the last rung: with nobody to
compare it with, the rungs in between would decide nothing. The candidates that stop below the
last rung are STOPPED: their scores are of fewer epochs, so the search ranks them after every
fully trained network and never makes one of them the best. Below the last rung networks are
only trained and scored: keras-flops and the deployed model (int8 conversion, TFLM) are
measured at the last rung, so a network stopped early is recorded with the cost model's
figures only. The results come back once the last rung is over.
"""
import dataclasses
import math

from hwnas.evaluation.evaluate import Status


class FullBudget:
    """Every network trains the full budget; results as they finish."""

    trains_together = False  # a network's result stands alone: one saved before a resume is used as it is

    def describe(self):
        return None

    def run(self, tasks, evaluate_all, rank, on_rung=None):
        """(index, Result) of each of tasks {index: Task}, as evaluate_all(tasks) yields them."""
        yield from evaluate_all(tasks)


class SuccessiveHalving:
    """Rungs of min_epochs x halving_eta^i epochs below epochs, then epochs; the best
    1/halving_eta of each rung go on."""

    trains_together = True  # a generation's networks are ranked together: a resumed generation trains them all

    def __init__(self, min_epochs, halving_eta, epochs):
        self.halving_eta = halving_eta
        self.budgets = rung_epochs(min_epochs, halving_eta, epochs)

    def describe(self):
        return (f"Successive halving: rungs of {', '.join(map(str, self.budgets))} epochs; the best 1/"
                f"{self.halving_eta:g} of each rung continue their training; those stopped early are recorded as "
                f"'stopped' and never become the best or a parent.")

    def run(self, tasks, evaluate_all, rank, on_rung=None):
        """Runs the rungs over tasks {index: Task}: evaluate_all(rung tasks) yields (index, Result)
        as the evaluator finishes them; rank(results) returns the indices of the results that
        have scores, best first; on_rung(rung, budget, indices, last) is told of each rung. Yields,
        once the last rung is over, (index, the candidate's Result at the last rung it trained
        at), its state extended with rung (its index in the budgets) and stopped_early (its
        epochs_trained and train_seconds count every rung: each continues the last); a
        candidate stopped early has the status STOPPED and the reason."""
        final, alive, rung = {}, sorted(tasks), 0
        while alive:
            last = rung == len(self.budgets) - 1 or len(alive) == 1
            rung_trained = len(self.budgets) - 1 if last else rung  # a lone survivor trains at the last rung
            budget = self.budgets[rung_trained]
            if on_rung is not None:
                on_rung(rung_trained, budget, alive, last)
            # Below the last rung only the scores matter: keras-flops and the deployed model wait for the last.
            rung_tasks = {index: dataclasses.replace(
                tasks[index], measure=last, keep_training_state=not last,
                continue_from=final[index].training_state if index in final else None,
                train_settings=dict(tasks[index].train_settings, epochs=min(budget, tasks[index].train_settings["epochs"])))
                for index in alive}
            results = dict(evaluate_all(rung_tasks))
            final.update(results)
            out_of_time = any(index not in results for index in alive)  # the search's time budget ran out
            ranked = [] if last or out_of_time else rank(results)
            promoted = ranked[:n_promoted(len(alive), self.halving_eta)]
            for index in alive:
                if index not in final:
                    continue  # it never started (the time budget ran out): no result, the search leaves it out
                result = final[index]
                if out_of_time and not (last and index in results) and result.status != Status.FAILED:
                    rung_state = {"rung": rung_trained} if index in results else {}  # else: the rung it last trained at
                    final[index] = dataclasses.replace(
                        result.with_state(stopped_early=True, **rung_state), status=Status.STOPPED,
                        reason=f"the search's time budget ran out before its full budget (rung {rung})")
                    continue
                stopped = index in ranked[len(promoted):]
                if result.state is not None:
                    result = result.with_state(rung=rung_trained, stopped_early=stopped)
                if stopped:
                    result = dataclasses.replace(result, status=Status.STOPPED, reason=(
                        f"successive halving: not among the best {len(promoted)} of {len(alive)} after {budget} "
                        f"epochs (rung {rung})"))
                final[index] = result
            alive, rung = ([] if out_of_time else sorted(promoted)), rung + 1
        # The training states (weights and optimizer state of every fold) are not needed past the last rung.
        for index in sorted(final):
            yield index, dataclasses.replace(final[index], training_state=None)


def rung_epochs(min_epochs, halving_eta, epochs):
    """The epoch budget of each rung: min_epochs x halving_eta^i below epochs, then epochs."""
    budgets, budget = [], min_epochs
    while budget < epochs:
        budgets.append(budget)
        budget = math.ceil(budget * halving_eta)
    return budgets + [epochs]


def n_promoted(n_candidates, halving_eta):
    """How many of n_candidates go on to the next rung: the best 1/halving_eta, at least one."""
    return max(1, math.floor(n_candidates / halving_eta))


def budget_of(settings, training):
    """The budget of a search's settings: successive halving when halving_eta is set and the
    networks train (training False: a dry run), else the full budget."""
    if settings["halving_eta"] is None or not training:
        return FullBudget()
    return SuccessiveHalving(settings["min_epochs"], settings["halving_eta"], settings["epochs"])
