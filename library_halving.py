"""Successive halving inside a generation: train every candidate a little, the best longer.

    rung 0:  every candidate trains min_epochs epochs
    rung 1:  the best 1/halving_eta of them train min_epochs x halving_eta epochs
    ...      until the last rung, which trains the full budget (epochs)

Each rung trains its candidates from scratch with that rung's epoch budget and
the candidate's own seed, so a candidate that reaches the last rung gets exactly
the result it would get without halving, and the outcome depends on nothing but
the seeds (not on how many networks train at once). When one candidate is left
it goes straight to the last rung: with nobody to compare it with, the rungs in
between would decide nothing. The candidates that stop below the last rung are
marked stopped_early: their scores are of fewer epochs, so the search ranks them
after every fully trained network and never makes one of them the best. Below
the last rung networks are only trained and scored: keras-flops and the deployed
model (int8 conversion, TFLM) are measured at the last rung, so a network
stopped early is recorded with the cost model's figures only.
"""
import math


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


def successive_halving(tasks, evaluate_all, order, budgets, halving_eta, on_rung=None):
    """Runs the rungs of budgets over tasks (index -> library_net.evaluate_network task).

    evaluate_all(tasks) yields (index, result) as the evaluator finishes them;
    order(results) returns the indices of those results (index -> result) that have
    scores, best first (the search's ranking). on_rung(rung, budget, indices) is
    called before each rung (the rung's index in budgets), for the log.
    Returns index -> the candidate's result at the last rung it trained at, its
    state extended with rung (the index in budgets of that rung), stopped_early, and
    epochs_trained and train_seconds summed over the rungs (what the candidate cost);
    a candidate stopped early gets the status "stopped" and the reason.
    """
    final, spent_epochs, spent_seconds = {}, dict.fromkeys(tasks, 0), dict.fromkeys(tasks, 0.0)
    alive, rung = sorted(tasks), 0
    while alive:
        last = rung == len(budgets) - 1 or len(alive) == 1
        rung_trained = len(budgets) - 1 if last else rung  # a lone survivor trains at the last rung
        budget = budgets[rung_trained]
        if on_rung is not None:
            on_rung(rung_trained, budget, alive)
        # Below the last rung only the scores matter: keras-flops and the deployed model wait for the last.
        rung_tasks = {index: dict(tasks[index], measure=last,
                                  train_settings=dict(tasks[index]["train_settings"], epochs=budget))
                      for index in alive}
        results = dict(evaluate_all(rung_tasks))
        for index, result in results.items():
            state = result["state"]
            if state is not None:
                spent_epochs[index] += state.get("epochs_trained") or 0
                spent_seconds[index] += state.get("train_seconds") or 0.0
            final[index] = result
        ranked = [] if last else order(results)
        promoted = ranked[:n_promoted(len(alive), halving_eta)]
        stopped = ranked[len(promoted):]
        for index in alive:
            state = final[index]["state"]
            if state is not None:
                state.update(rung=rung_trained, stopped_early=index in stopped,
                             epochs_trained=spent_epochs[index], train_seconds=spent_seconds[index])
            if index in stopped:
                final[index] = dict(final[index], status="stopped", reason=(
                    f"successive halving: not among the best {len(promoted)} of {len(alive)} after {budget} "
                    f"epochs (rung {rung})"))
        alive, rung = sorted(promoted), rung + 1
    return final
