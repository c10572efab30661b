"""Successive halving inside a generation: train every candidate a little, the best longer.

    rung 0:  every candidate trains min_epochs epochs
    rung 1:  the best 1/halving_eta of them train min_epochs x halving_eta epochs
    ...      until the last rung, which trains the full budget (epochs)

A promoted candidate continues its training where its previous rung ended (its
weights, optimizer and early-stopping state: library_training_state), so the
epochs of the rungs below are not trained again and the outcome depends on
nothing but the seeds (not on how many networks train at once); a candidate
that reaches the last rung has trained the full budget, though not bit for bit
as it would have in one go (its later epochs are shuffled from seeds of their
own). When one candidate is left
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
    state extended with rung (the index in budgets of that rung) and stopped_early
    (its epochs_trained and train_seconds count every rung: each continues the last);
    a candidate stopped early gets the status "stopped" and the reason.
    """
    final, alive, rung = {}, sorted(tasks), 0
    while alive:
        last = rung == len(budgets) - 1 or len(alive) == 1
        rung_trained = len(budgets) - 1 if last else rung  # a lone survivor trains at the last rung
        budget = budgets[rung_trained]
        if on_rung is not None:
            on_rung(rung_trained, budget, alive)
        # Below the last rung only the scores matter: keras-flops and the deployed model wait for the last.
        rung_tasks = {index: dict(tasks[index], measure=last, keep_training_state=not last,
                                  continue_from=final.get(index, {}).get("training_state"),
                                  train_settings=dict(tasks[index]["train_settings"], epochs=budget))
                      for index in alive}
        results = dict(evaluate_all(rung_tasks))
        final.update(results)
        ranked = [] if last else order(results)
        promoted = ranked[:n_promoted(len(alive), halving_eta)]
        stopped = ranked[len(promoted):]
        for index in alive:
            state = final[index]["state"]
            if state is not None:
                state.update(rung=rung_trained, stopped_early=index in stopped)
            if index in stopped:
                final[index] = dict(final[index], status="stopped", reason=(
                    f"successive halving: not among the best {len(promoted)} of {len(alive)} after {budget} "
                    f"epochs (rung {rung})"))
        alive, rung = sorted(promoted), rung + 1
    # The training states (weights and optimizer state of every fold) are not needed past the last rung.
    return {index: dict(result, training_state=None) for index, result in final.items()}
