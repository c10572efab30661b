"""The population GA, random search, objectives and constraints: crossover at block
boundaries, NSGA-II ranking, user-defined constraints and objectives, the latency
estimate, never training an architecture twice, the time budget, the Pareto front."""
import csv
import glob
import json
import os
import signal

import keras
import pytest

from hwnas.strategy import objectives as objectives_lib
from hwnas.devices import TargetDevice
from conftest import TINY_GA_RUN, run_main
from library_nas import NAS, ConstraintError, check_search_parameters
from test_nas import deployed_figures, keras_figures

TIGHT = dict(params_thr=20_000, flops_thr=2_000_000, flash_thr=32_000, ram_thr=16_000, max_tens_thr=16_000)
SHAPE_SETTINGS = ("filters", "stride", "padding", "activation")  # never adjusted by re-chaining


def make_nas(tmp_path, data, **overrides):
    settings = dict(TIGHT, search_strategy="ga", population_size=4, n_elites=2, n_child=4, max_depth=5,
                    n_generations=1, epochs=1, seed=0, smart_start=False)
    settings.update(overrides)
    return NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, **settings)


def scored_population(nas, size=4):
    """Random valid networks given made-up validation scores (ranking needs scores, not training)."""
    population = []
    for index in range(size):
        network = nas.space.random_network(nas.max_depth, {n.architecture_key() for n in population}, "a test network")
        network.val_score, network.child_id = 0.5 + 0.1 * index, f"g000_c{index + 1:04d}"
        population.append(network)
    return population


def rows_of(path):
    with open(path, newline="") as csv_file:
        return list(csv.DictReader(csv_file))


def test_crossover_joins_the_head_of_one_parent_to_the_tail_of_the_other(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data)
    first, second = scored_population(nas, 2)
    first_shapes = [tuple(getattr(b, s) for s in SHAPE_SETTINGS) for b in first.block_list]
    second_shapes = [tuple(getattr(b, s) for s in SHAPE_SETTINGS) for b in second.block_list]
    joins = {(i, j): first_shapes[:i] + second_shapes[j:]
             for i in range(len(first_shapes) + 1) for j in range(len(second_shapes) + 1)}
    for _ in range(100):
        child = nas.space.crossover(first, second)
        shapes = [tuple(getattr(b, s) for s in SHAPE_SETTINGS) for b in child.block_list]
        assert shapes in joins.values()
        assert 1 <= len(child.block_list) <= nas.max_depth and child.head in (first.head, second.head)
        assert child.parent_ids == (first.child_id, second.child_id)
        length, channels = child.input_stage.output_shape  # repaired: every block chained on its predecessor
        for index, block in enumerate(child.block_list):
            assert (block.block_index, block.input_size, block.input_channels) == (index, length, channels)
            length, channels = block.output_size, block.filters


def test_offspring_meet_thresholds_and_user_constraints_and_are_new(tmp_path, small_data):
    data, _ = small_data
    def small_memory(figures):
        return figures["flash_size"] + figures["ram_size"] <= 30_000
    nas = make_nas(tmp_path, data, n_child=12, custom_constraints={"small_memory": small_memory})
    population = scored_population(nas)
    nas.evaluated_keys = {network.architecture_key() for network in population}
    children = nas.strategy.propose(population, nas.evaluated_keys)
    assert len({child.architecture_key() for child in children} | nas.evaluated_keys) == 12 + 4
    for child in children:  # measured by Keras, keras-flops, the converter and TFLM, not by the filter
        n_params, flops, max_tens = keras_figures(child)
        assert n_params <= TIGHT["params_thr"] and flops <= TIGHT["flops_thr"] and max_tens <= TIGHT["max_tens_thr"]
        flash_bytes, arena_bytes = deployed_figures(child)
        assert flash_bytes + arena_bytes <= 1.05 * 30_000  # the estimates agree within 5 %
    assert any(child.mutation.startswith("crossover+") for child in children)


def test_a_constraint_no_network_meets_is_named(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data, max_attempts=20, custom_constraints={"impossible": lambda figures: False})
    with pytest.raises(ConstraintError, match="constraint impossible: failed by every candidate"):
        nas.space.random_network(3, (), "a test network")


def test_a_broken_user_function_is_named_before_any_training(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data, custom_constraints={"broken": lambda figures: figures["energy"] < 1})
    with pytest.raises(objectives_lib.UserFunctionError, match="custom constraint 'broken' raised KeyError"):
        nas.initial_parent()
    nas = make_nas(tmp_path, data, objectives=["val_accuracy", "text"],
                   custom_objectives={"text": (lambda figures, scores: "small", "min")})
    with pytest.raises(objectives_lib.UserFunctionError, match="objective 'text' gave 'small', not a finite number"):
        nas.ranking.check_on(nas.initial_parent())


def test_the_generic_device_estimates_latency_from_flops_clock_and_flops_per_cycle(tmp_path, small_data):
    data, _ = small_data
    network = make_nas(tmp_path / "a", data).initial_parent()
    for clock_mhz, flops_per_cycle in ((80, 1.0), (160, 2.0)):
        device = TargetDevice.named("generic", clock_mhz=clock_mhz, flops_per_cycle=flops_per_cycle, power_mw=50)
        expected_ms = network.hw_measures()[2] / (flops_per_cycle * clock_mhz * 1e3)
        assert device.latency_ms(network) == pytest.approx(expected_ms)
        assert device.energy_mj(device.latency_ms(network)) == pytest.approx(50 * expected_ms / 1e3)
    nas = make_nas(tmp_path, data, latency_thr=5, clock_mhz=100, flops_per_cycle=0.5)
    for _ in range(20):  # 5 ms at 100 MHz and half a FLOP per cycle: at most 250,000 FLOPs
        network = nas.space.random_network(nas.max_depth, (), "a test network")
        assert keras_figures(network)[1] <= 250_000  # keras-flops' count


def test_nsga2_ranking_sorts_fronts_and_prefers_uncrowded_points():
    # (error, flash): three on the first front, one dominated by (0.2, 2), one dominated by all
    points = [[0.1, 3.0], [0.2, 2.0], [0.3, 1.0], [0.25, 2.5], [0.9, 9.0]]
    ranks, crowding = objectives_lib.rank_and_crowding(points)
    assert list(ranks) == [0, 0, 0, 1, 2]
    assert crowding[0] == crowding[2] == float("inf") and 0 < crowding[1] < float("inf")
    assert objectives_lib.nsga2_order(points) == [0, 2, 1, 3, 4]
    assert objectives_lib.first_front(points) == [0, 1, 2]
    # Single objective: the ranking is the order of the values.
    assert objectives_lib.nsga2_order([[0.4], [0.1], [0.3]]) == [1, 2, 0]
    # The first front's staircase under (1, 4), by hand: 0.1 x 1 + 0.1 x 2 + 0.7 x 3 = 2.4
    # (the dominated points add nothing, the point beyond the reference neither).
    assert objectives_lib.hypervolume(points, (1.0, 4.0)) == pytest.approx(2.4)
    assert objectives_lib.hypervolume([[2.0, 5.0]], (1.0, 4.0)) == 0.0


def test_tournament_winner_is_the_best_ranked_of_those_drawn(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data, tournament_size=60)
    ranks, crowding = [2, 0, 1, 0], [0.0, 1.0, 0.0, 5.0]
    assert {nas.strategy.tournament_selection(ranks, crowding) for _ in range(100)} == {3}
    nas.strategy.tournament_size = 1  # no pressure: every member wins sometimes
    assert {nas.strategy.tournament_selection(ranks, crowding) for _ in range(200)} == {0, 1, 2, 3}


def test_a_user_objective_ranks_the_population(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data, objectives=["accuracy_per_kB"], custom_objectives={
        "accuracy_per_kB": (lambda figures, scores: scores["val_accuracy"] * 1000 / figures["flash_size"], "max")})
    population = scored_population(nas)
    by_hand = sorted(population, key=lambda n: -n.val_score * 1000 / n.hw_measures()[3])
    assert [n.child_id for n in nas.ranking.ranked(population)] == [n.child_id for n in by_hand]
    assert nas.ranking.fitness(population[0]) == pytest.approx(population[0].val_score * 1000 / population[0].hw_measures()[3])


def test_canonical_key_ignores_settings_that_do_not_shape_the_network(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data)
    network = nas.space.random_network(3, (), "a test network")
    blocks = [block.copy(pooling="none", pool_size=2) for block in network.block_list]
    same = nas.space.new_net(blocks, network.head)
    other_pool_size = nas.space.new_net([block.copy(pool_size=3) for block in blocks], network.head)
    pooled = nas.space.new_net([block.copy(pooling="max", pool_size=2) for block in blocks], network.head)
    assert same.architecture_key() == other_pool_size.architecture_key() != pooled.architecture_key()


def test_an_architecture_evaluated_before_is_reused_not_trained(tmp_path, small_data):
    data, folds = small_data
    nas = make_nas(tmp_path, data, is_train_proxy=False)  # dry run: quick, scores still real
    network = nas.space.random_network(3, (), "a test network")
    again = nas.space.new_net([block.copy(layer_weights=None) for block in network.block_list], network.head,
                              input_stage=network.input_stage)
    scores, _ = nas.train_generation([network, again], folds)
    rows = rows_of(nas.records_path)
    assert [row["status"] for row in rows] == ["dry_run", "reused"]
    assert rows[1]["reason"].startswith(f"same architecture as {rows[0]['child_id']}")
    assert scores[0] == scores[1] and rows[0]["val_accuracy"] == rows[1]["val_accuracy"]
    assert (nas.n_evaluated, nas.n_trained) == (2, 1)
    assert "reused" in open(nas.log_path).read()


@pytest.mark.parametrize("parameters, message", [
    ({"search_strategy": "bayes"}, "search_strategy must be one of"),
    ({"search_strategy": "ga", "population_size": 9, "n_elites": 2, "n_child": 4}, "population_size .9. <= n_elites"),
    ({"crossover_rate": 1.5}, "crossover_rate must be a probability"),
    ({"objectives": ["val_accuracy", "speed"]}, "objectives must be a non-empty list of distinct names"),
    ({"objectives": []}, "objectives must be a non-empty list"),
    ({"custom_constraints": {"small": 5}}, r"custom_constraints\['small'\] must be a function"),
    ({"custom_objectives": {"flops": (len, "min")}}, "hides the built-in objective"),
    ({"custom_objectives": {"x": (len, "up")}}, r"custom_objectives\['x'\] must be \(function"),
    ({"time_budget_s": 0}, "time_budget_s must be a positive number"),
    ({"clock_mhz": 0}, "clock_mhz must be a positive number"),
    ({"latency_thr": -1}, "latency_thr must be a positive number"),
])
def test_bad_strategy_parameters_are_named(parameters, message):
    with pytest.raises(ValueError, match=message):
        check_search_parameters(parameters)


def test_ga_run_writes_a_true_pareto_front_and_saves_its_models(tiny_ga_run):
    run_dir, stdout, _, _ = tiny_ga_run
    children = rows_of(os.path.join(run_dir, "children.csv"))
    assert len(children) == 3 + 2 + 2  # initial population, then n_child per generation
    crossed = [row for row in children if row["mutation"].startswith("crossover")]
    assert crossed and all(len(row["parents"].split()) == 2 for row in crossed)
    front = rows_of(os.path.join(run_dir, "pareto.csv"))
    trained = [row for row in children if row["status"] == "ok"]
    def cost(row):
        return (-float(row["val_accuracy"]), float(row["flash_size"]))
    def dominates(a, b):
        return all(x <= y for x, y in zip(cost(a), cost(b))) and cost(a) != cost(b)
    front_ids = {row["child_id"] for row in front}
    for row in trained:  # on the front exactly when no trained network dominates it
        assert (row["child_id"] in front_ids) == (not any(dominates(other, row) for other in trained))
    for row in front:
        model = keras.models.load_model(os.path.join(run_dir, "models", "pareto", f"{row['child_id']}.keras"))
        assert model.count_params() == int(row["n_params"])
        assert os.path.getsize(os.path.join(run_dir, "models", "pareto", f"{row['child_id']}_int8.tflite")) \
            == int(row["flash_measured"])
    log = open(os.path.join(run_dir, "nas_log.txt")).read()
    assert "Search strategy: ga; objectives: val_accuracy (max), flash_size (min)" in log
    assert "Population after generation 2" in log and "Pareto front:" in stdout
    # on the named device, with an energy threshold: latency and energy recorded, logged, plotted, saved
    assert "latency and energy on STM32F746 (Cortex-M7, 216 MHz, cmsis-nn kernels, 250.1 mW" in log
    for row in children:
        assert 0 < float(row["energy_mj"]) <= 5.0
        assert float(row["energy_mj"]) == pytest.approx(250.1 * float(row["latency_ms"]) / 1e3, rel=1e-3)
        assert f"[{float(row['latency_ms']):.2f} ms, {float(row['energy_mj']):.3f} mJ]" in log
    assert all(row["energy_mj"] for row in front)
    best = json.load(open(os.path.join(run_dir, "models", "best_model.json")))
    assert best["target_device"] == "STM32F746" and sum(best["layer_latency_ms"].values()) < best["latency_ms"]
    assert json.load(open(os.path.join(run_dir, "summary.json")))["best"]["energy_mj"] == best["energy_mj"]
    assert "on STM32F746" in open(os.path.join(run_dir, "best_architecture.txt")).read()


def test_ga_resume_after_sigkill_ends_like_an_uninterrupted_run(tmp_path, tiny_ga_run):
    from test_robustness import records, start_main, wait_for_rows
    uninterrupted_dir, _, images_path, labels_path = tiny_ga_run
    process = start_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}",
                         *TINY_GA_RUN, "run_name=killed")
    run_dir = wait_for_rows(tmp_path, 6, process)  # 3 + 2 rows finished: killed inside generation 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = run_main(f"resume_from={run_dir}")
    assert result.returncode == 0, result.stderr
    def key_columns(rows):
        return [(row["child_id"], row["architecture"], row["parents"], row["val_accuracy"]) for row in rows]
    assert key_columns(records(run_dir)) == key_columns(records(uninterrupted_dir))
    assert rows_of(os.path.join(run_dir, "pareto.csv")) == rows_of(os.path.join(uninterrupted_dir, "pareto.csv"))


def test_a_spent_time_budget_closes_the_generation_and_saves_as_a_normal_end_does(tmp_path, demo_subset_files):
    images_path, labels_path = demo_subset_files
    result = run_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}",
                      "test_size=0.2", "num_folds=3", "num_selected_folds=1", "epochs=1",
                      "search_strategy=random", "population_size=2", "n_child=2", "n_generations=50",
                      "reference_forest=False", "time_budget_s=1", "run_name=budget")  # the forest's seconds count
    assert result.returncode == 0, result.stderr
    (run_dir,) = glob.glob(os.path.join(tmp_path, "*_budget"))
    rows = rows_of(os.path.join(run_dir, "children.csv"))
    assert [row["generation"] for row in rows] == ["0", "0"]  # generation 0 alone outlasts 1 s
    log = open(os.path.join(run_dir, "nas_log.txt")).read()
    assert "Time budget of 1 s spent after generation 0" in log and "== Result ==" in log
    for name in ("summary.json", "pareto.csv", "models/best_model.keras", "checkpoint.pkl"):
        assert os.path.exists(os.path.join(run_dir, name)), name


def test_the_best_network_is_best_by_the_first_objective_in_generation_0(tmp_path, small_data, monkeypatch):
    """With several objectives NSGA-II's first network is the least crowded of the first front;
    the best network is still the one best by the first objective."""
    data, folds = small_data
    nas = make_nas(tmp_path, data, population_size=6, objectives=["val_accuracy", "flash_size"], seed=3)

    def scores_rising_with_flash(children, folds):  # every network on the first front
        by_flash = sorted(children, key=lambda network: network.hw_measures()[3])
        for rank, network in enumerate(by_flash):
            network.val_score, network.child_id = 0.5 + 0.05 * rank, f"g000_c{children.index(network) + 1:04d}"
        return children  # every one evaluated

    monkeypatch.setattr(nas.search, "evaluate", scores_rising_with_flash)
    monkeypatch.setattr(nas.search, "end_generation", lambda *args, **kwargs: None)
    population = nas.search.start(folds)
    most_accurate = max(population, key=lambda network: network.val_score)
    assert population[0] is not most_accurate  # NSGA-II's first is another end of the front
    assert nas.absolute_best is most_accurate


def test_an_empty_population_ranks_and_a_generation_of_failures_keeps_the_population(
        tmp_path, small_data, monkeypatch):
    ranks, crowding = objectives_lib.rank_and_crowding([])
    assert len(ranks) == len(crowding) == 0 and objectives_lib.nsga2_order([]) == []
    data, folds = small_data
    nas = make_nas(tmp_path, data, n_elites=0, population_size=2, n_child=2)
    population = scored_population(nas, 2)
    nas.search.absolute_best = population[0]

    def every_child_fails(children, folds):
        for network in children:
            network.val_score = None
        return children  # every one evaluated (and failed)

    monkeypatch.setattr(nas.search, "evaluate", every_child_fails)
    monkeypatch.setattr(nas.search, "end_generation", lambda *args, **kwargs: None)
    nas.search.i_gen = 1
    assert nas.search.generation(population, folds) == population
    assert "Every child failed and no elite is kept; the population stays." in open(nas.log_path).read()


def test_a_time_budget_holds_within_one_network_and_the_final_models_export(tmp_path, demo_subset_files):
    """No network starts once the budget (less the share kept for the final training) is spent; the
    final training stops at the budget with its best weights; what remains is measuring and saving."""
    images_path, labels_path = demo_subset_files
    budget = 40
    result = run_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}",
                      "test_size=0.2", "num_folds=3", "num_selected_folds=1", "epochs=2", "n_generations=1000",
                      "population_size=3", "n_child=3", "final_epochs=500", "patience=500", f"time_budget_s={budget}",
                      "run_name=holds")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = glob.glob(os.path.join(tmp_path, "*_holds"))
    rows = rows_of(os.path.join(run_dir, "children.csv"))
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    final = summary["final_training"]
    log = open(os.path.join(run_dir, "nas_log.txt")).read()
    assert f"Time budget of {budget} s spent" in log or "The time budget ran out" in log
    assert final["epochs_trained"] < 500  # stopped by the budget, not by its epochs
    # the run's own figures: the longest network in flight when it ran out, the final model's measuring
    longest_network = max(float(row["train_seconds"]) for row in rows)
    measuring = sum(final["phase_seconds"].get(phase, 0.0) for phase in ("keras_flops", "conversion", "tflm"))
    starting_and_saving = 10.0  # the final training's worker starting TensorFlow, the files written (not timed)
    assert summary["elapsed_seconds"] <= budget + longest_network + measuring + starting_and_saving
