"""Successive halving: the rung schedule, who goes on, what a stopped network is
recorded as, and that the search never takes a network stopped early for the best."""
import csv
import os

import pytest

from hwnas.search import budget as budget_lib
from hwnas.evaluation.evaluate import Result, Status, Task
from hwnas.network.state import NetworkState
from library_nas import NAS, check_search_parameters
from test_search_strategies import TIGHT, make_nas, scored_population


def fake_training(true_quality, log):
    """An evaluate_all whose score of network i after e epochs is true_quality[i] x e / (e + 1)
    (the ranking is the same at every budget), yielding in reverse order like a busy pool;
    it logs (network, epochs it continues from, epochs it trains up to)."""
    def evaluate_all(tasks):
        for index in sorted(tasks, reverse=True):
            task = tasks[index]
            epochs = task.train_settings["epochs"]
            log.append((index, (task.continue_from or {"epochs": 0})["epochs"], epochs))
            score = true_quality[index] * epochs / (epochs + 1)
            yield index, Result(NetworkState(val_score=score or None, epochs_trained=epochs, train_seconds=epochs),
                                Status.FAILED if score == 0 else Status.OK, "",
                                training_state={"epochs": epochs} if task.keep_training_state else None)
    return evaluate_all


def order_by_score(results):
    scored = [index for index, result in results.items() if result.state.val_score is not None]
    return sorted(scored, key=lambda index: (-results[index].state.val_score, index))


def test_rung_budgets_and_promotions():
    assert budget_lib.rung_epochs(1, 3, 15) == [1, 3, 9, 15]
    assert budget_lib.rung_epochs(3, 2, 15) == [3, 6, 12, 15]
    assert budget_lib.rung_epochs(5, 3, 5) == [5]
    assert budget_lib.rung_epochs(2, 1.5, 5) == [2, 3, 5]
    assert [budget_lib.n_promoted(n, 3) for n in (1, 2, 3, 8, 9)] == [1, 1, 1, 2, 3]


def test_the_best_go_on_and_the_rest_are_stopped_with_their_rung_and_cost():
    quality = [0.5, 0.9, 0.0, 0.7, 0.8, 0.6, 0.3, 0.4, 0.95]  # network 2 fails
    log = []
    tasks = {i: Task({}, {"epochs": 15, "seed": i}, "int8", False, True, 2) for i in range(9)}
    halving = budget_lib.SuccessiveHalving(1, 3, 15)
    assert halving.budgets == [1, 3, 9, 15]
    results = dict(halving.run(tasks, fake_training(quality, log), order_by_score))
    # rung 0: all 9 at 1 epoch -> the best 3 (8, 1, 4) go on from there; then the best 1, alone: on to
    # the full budget at once
    assert sorted(log) == sorted([(i, 0, 1) for i in range(9)] + [(8, 1, 3), (1, 1, 3), (4, 1, 3), (8, 3, 15)])
    assert results[8].status == Status.OK and results[8].state.rung == 3
    assert not results[8].state.stopped_early and results[8].state.epochs_trained == 15
    assert results[1].status == Status.STOPPED and results[1].state.rung == 1
    assert results[1].state.stopped_early and results[1].state.epochs_trained == 3
    assert "not among the best 1 of 3 after 3 epochs" in results[1].reason
    assert results[4].status == Status.STOPPED and results[4].state.rung == 1
    assert results[2].status == Status.FAILED and not results[2].state.stopped_early
    for index in (0, 3, 5, 6, 7):
        assert results[index].status == Status.STOPPED and results[index].state.rung == 0
        assert results[index].state.epochs_trained == 1
    assert all(result.training_state is None for result in results.values())  # no weights kept past the rungs


def test_when_the_time_budget_runs_out_no_rung_starts_and_every_network_short_of_its_budget_is_stopped():
    quality = [0.5, 0.9, 0.7, 0.8, 0.6, 0.3]
    tasks = {i: Task({}, {"epochs": 15, "seed": i}, "int8", False, True, 2) for i in range(8)}
    halving = budget_lib.SuccessiveHalving(1, 2, 15)
    log, calls = [], []
    trained = fake_training(quality + [0.4, 0.2], log)

    def out_of_time(rung_tasks):  # the evaluators' gate: rung 0 starts 6 of 8, rung 1 one network, then no more
        calls.append(sorted(rung_tasks))
        started = sorted(rung_tasks)[:6] if len(calls) == 1 else sorted(rung_tasks)[:1]
        yield from trained({index: rung_tasks[index] for index in started})

    results = dict(halving.run(tasks, out_of_time, order_by_score))
    assert sorted(results) == list(range(6))  # networks 6 and 7 never started: no result, the search leaves them out
    assert len(calls) == 1  # out of time in rung 0: no rung starts again
    assert all(results[i].status == Status.STOPPED and results[i].state.stopped_early for i in range(6))
    assert all(results[i].state.rung == 0 for i in range(6))
    assert all("time budget ran out before its full budget (rung 0)" in results[i].reason for i in range(6))
    # out of time in rung 1: its one network trained there keeps rung 1, the others promoted keep rung 0
    calls.clear()
    log.clear()
    tasks = {i: Task({}, {"epochs": 15, "seed": i}, "int8", False, True, 2) for i in range(6)}
    results = dict(halving.run(tasks, lambda rung_tasks: (calls.append(sorted(rung_tasks)) or trained(
        {index: rung_tasks[index] for index in (sorted(rung_tasks) if len(calls) == 1 else sorted(rung_tasks)[:1])})),
        order_by_score))
    assert calls == [[0, 1, 2, 3, 4, 5], [1, 2, 3]] and sorted(results) == list(range(6))
    assert results[1].state.rung == 1 and results[1].status == Status.STOPPED
    assert results[3].state.rung == 0 and "time budget ran out" in results[3].reason  # promoted, never continued
    assert "not among the best 3 of 6" in results[0].reason  # stopped by halving at rung 0, as without a budget


def test_halving_parameters_are_checked():
    with pytest.raises(ValueError, match="halving_eta must be a number > 1"):
        check_search_parameters({"halving_eta": 1})
    with pytest.raises(ValueError, match=r"min_epochs \(20\) must not exceed epochs \(15\)"):
        check_search_parameters({"halving_eta": 3, "min_epochs": 20, "epochs": 15})
    with pytest.raises(ValueError, match="min_epochs must be an integer >= 1"):
        check_search_parameters({"min_epochs": 0})


def test_a_network_stopped_early_is_ranked_after_every_fully_trained_one(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data, search_strategy="mutation")
    parent, weak, stopped, strong = scored_population(nas, 4)  # scores 0.5, 0.6, 0.7, 0.8
    stopped.val_score, stopped.stopped_early, stopped.rung = 0.99, True, 0
    assert nas.ranking.ranked([parent, weak, stopped, strong]) == [strong, weak, parent, stopped]
    ranks, _ = nas.ranking.ranks_and_crowding([stopped, parent, strong])
    assert ranks[0] > max(ranks[1:])
    assert nas.ranking.best_by_first_objective([parent, stopped, weak]) is weak
    assert nas.strategy.select([strong], [stopped, weak], 1) == [strong]  # the stopped child's 0.99 is not compared
    assert nas.strategy.select([parent], [stopped, weak], 1) == [weak]
    stopped_parent = nas.strategy.select([parent], [stopped], 1)
    assert stopped_parent == [parent]


def test_a_search_with_halving_records_rungs_and_never_picks_a_stopped_network(tmp_path, small_data):
    data, folds = small_data
    strategy = "ga"  # generation 0 (a population) is halved too; the mutation loop's selection: above
    # Two folds on two workers: each generation's lone survivor trains its folds apart (hwnas.evaluation.fold_tasks).
    settings = dict(TIGHT, search_strategy=strategy, n_child=3, n_generations=1, epochs=3, min_epochs=1,
                    halving_eta=3, num_selected_folds=2, seed=3, n_workers=2, smart_start=False,
                    population_size=3, n_elites=1, max_depth_father=2, max_depth=2, filters_choices=[4, 8])
    nas = NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, **settings)
    last, best = nas.run_NAS(folds)
    with open(nas.records_path, newline="") as records_file:
        rows = list(csv.DictReader(records_file))
    assert len(rows) == 6
    for generation in ("0", "1"):
        generation_rows = [row for row in rows if row["generation"] == generation]
        statuses = sorted(row["status"] for row in generation_rows)
        assert statuses in (["ok", "stopped", "stopped"], ["failed", "ok", "stopped"])
        full = next(row for row in generation_rows if row["status"] == "ok")
        assert (full["rung"], full["epochs_trained"]) == ("1", "6")  # rungs [1, 3]: 1 epoch, then 2 more; 2 folds
        assert int(full["flash_measured"]) > 0  # the deployed model is measured at the last rung
        for row in generation_rows:
            if row["status"] == "stopped":
                assert (row["rung"], row["epochs_trained"]) == ("0", "2")
                assert float(row["val_accuracy"]) >= 0  # its rung's score is kept for the reader
                assert row["flash_measured"] == "" and int(row["flash_size"]) > 0  # estimated only
    stopped_ids = {row["child_id"] for row in rows if row["status"] == "stopped"}
    assert best.child_id not in stopped_ids and not best.stopped_early
    with open(nas.pareto_path, newline="") as pareto_file:
        assert not stopped_ids & {row["child_id"] for row in csv.DictReader(pareto_file)}
    log_text = open(nas.log_path).read()
    assert "Successive halving: rungs of 1, 3 epochs" in log_text and "rung 0 (1 epochs)" in log_text
    assert "its 2 folds train on separate workers" in log_text
    # deterministic: the same seed on one worker gives the same records
    again = NAS(run_dir=str(tmp_path / "again"), preloaded_data=data, **dict(settings, n_workers=1))
    again.run_NAS(folds)
    with open(again.records_path, newline="") as records_file:
        rows_again = list(csv.DictReader(records_file))
    fields = ("child_id", "status", "rung", "epochs_trained", "val_accuracy", "architecture")
    assert [[row[f] for f in fields] for row in rows_again] == [[row[f] for f in fields] for row in rows]
    assert os.path.exists(os.path.join(nas.models_dir, "best_model.keras"))


def test_a_promoted_network_continues_where_its_rung_ended(small_data):
    """A network promoted to the next rung trains only the epochs it has not trained yet, from
    its weights, optimizer and early-stopping state; a fold that early stopping ended is not
    trained again; the continuation is deterministic."""
    import copy
    import math

    import numpy as np

    from hwnas.data import idx as data_lib
    from hwnas.network import training_state
    from hwnas.network.block import Block
    from hwnas.network import training
    from hwnas.evaluation.evaluate import evaluate
    from hwnas.network.net import Net
    data, folds = small_data
    net = Net([Block(filters=8, kernel_size=5, stride=2, pooling="max", pool_size=2, dropout_rate=0.1)], None, data,
              train_settings=dict(seed=5, patience=20))  # patience 20: no early stop within 5 epochs

    def task(epochs, **more):
        return Task(net.architecture(), dict(net.train_settings, epochs=epochs), "int8", False, True, 2,
                    measure=False, **more)

    rung_0 = evaluate(task(2, keep_training_state=True), data, folds)
    rung_1 = evaluate(task(5, continue_from=rung_0.training_state, keep_training_state=True), data, folds)
    assert rung_0.status == rung_1.status == Status.OK
    assert rung_1.state.epochs_trained == 2 * 5  # 2 folds x 5 epochs, not 2 x (2 + 5)
    for before, after in zip(rung_0.state.epoch_val_accuracy, rung_1.state.epoch_val_accuracy):
        assert len(after) == 5 and after[:2] == before
    assert rung_1.state.train_seconds > rung_0.state.train_seconds  # the rungs' seconds add up
    # the optimizer went on from the rung's state: Adam's step count is that of 5 epochs
    fold_0 = rung_1.training_state["folds"][0]
    steps_per_epoch = math.ceil(len(data_lib.get_fold_split(data.X_train, data.Y_train, folds, 0)[0]) / 64)
    assert int(fold_0["optimizer_variables"][0]) == 5 * steps_per_epoch
    # and the model from the rung's weights (restored as saved, not as a fresh model of the seed)
    model = training.compiled_model(net)
    training_state.restore(model, rung_0.training_state["folds"][0])
    for variable, saved in zip(training_state.layer_variables(model),
                               rung_0.training_state["folds"][0]["model_variables"]):
        np.testing.assert_array_equal(variable.numpy(), saved)
    again = evaluate(task(5, continue_from=rung_0.training_state), data, folds)
    assert again.state.epoch_val_accuracy == rung_1.state.epoch_val_accuracy
    assert again.state.val_score == rung_1.state.val_score and again.training_state is None
    ended = copy.deepcopy(rung_0.training_state)
    ended["folds"][0]["finished"] = True  # as if early stopping had ended fold 0 in rung 0
    after_end = evaluate(task(5, continue_from=ended), data, folds)
    assert [len(accuracies) for accuracies in after_end.state.epoch_val_accuracy] == [2, 5]
