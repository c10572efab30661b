"""More accuracy per trained network: a child inherits its parent's trained layers fold by fold
(only those whose shapes the mutation left unchanged), and a predictor fitted on the networks
trained picks which candidates to train; the same children.csv on one worker or two, resumed or not."""
import csv
import glob
import os

import numpy as np

from conftest import TINY_RUN, run_main
from hwnas.evaluation.evaluate import Status, Task, evaluate
from hwnas.strategy.inheritance import inherited_weights
from library_nas import NAS
from hwnas.strategy.predictor import Predictor, features, rank_correlation

TIGHT = dict(params_thr=20_000, flops_thr=2_000_000, flash_thr=32_000, ram_thr=16_000, max_tens_thr=16_000)


def evaluated_parent(nas, child_id="g000_c0001"):
    """The smart-start network as if evaluated: an id, and two folds' weights (distinct per fold)."""
    parent = nas.initial_parent()
    parent.child_id = child_id
    model = parent.ins_keras_model()
    parent.fold_weights = {fold: {layer.name: [w + fold for w in layer.get_weights()] for layer in model.layers
                                  if layer.weights} for fold in (0, 1)}
    return parent


def test_a_child_inherits_each_fold_the_layers_whose_shapes_its_mutation_left(tmp_path, small_data):
    data, _ = small_data
    nas = NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, seed=3, check_hw=False)
    parent = evaluated_parent(nas)
    seen_actions = set()
    for _ in range(60):
        child = nas.space.valid_mutant(parent)
        weights, givers, n_layers = inherited_weights(child, {parent.child_id: parent})
        shapes = child.weight_shapes()
        assert set(weights) == ({0, 1} if n_layers else set())
        for fold, layers in weights.items():
            assert len(layers) == n_layers and givers == (parent.child_id,)
            for name, layer in layers.items():  # the parent's weights of that fold, in the child's shapes
                assert [w.shape for w in layer] == [tuple(s) for s in shapes[name]]
                np.testing.assert_allclose(layer[0] - weights[0][name][0], fold)  # fold 1's are fold 0's + 1
        # a block the mutation kept where it was, with its input, keeps its trained layers
        for block in child.block_list:
            if block.source is not None:
                parent_block = parent.block_list[block.source[1]]
                same = (parent_block.built_settings()["kernel_size"], parent_block.input_channels, parent_block.filters) == \
                       (block.kernel_size_used, block.input_channels, block.filters)
                assert (f"b{block.block_index}_conv" in weights[0]) == same, child.mutation
        seen_actions.add(child.mutation)
    assert {"add", "remove", "change"} <= seen_actions


def test_a_network_trains_from_the_weights_it_inherits(tmp_path, small_data):
    data, folds = small_data
    nas = NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, seed=3, num_selected_folds=2, **TIGHT)
    parent = evaluated_parent(nas)
    child = next(child for child in (nas.space.valid_mutant(parent) for _ in range(50))
                 if child.mutation == "change" and inherited_weights(child, {parent.child_id: parent})[2] >= 3)
    weights, givers, n_layers = inherited_weights(child, {parent.child_id: parent})
    task = Task(child.architecture(), dict(child.train_settings, epochs=1), "int8", False, False, 2, measure=False,
                inherit={"from": givers, "weights": weights})
    result = evaluate(task, data, folds)  # a dry run: each fold's weights are those it starts from
    assert result.status == Status.DRY_RUN
    assert result.state.inherited_from == givers and result.state.layers_inherited == n_layers
    for fold in (0, 1):
        for name, layer in weights[fold].items():
            for started, given in zip(result.state.fold_weights[fold][name], layer):
                np.testing.assert_array_equal(started, given)
    fresh = evaluate(Task(child.architecture(), dict(child.train_settings, epochs=1), "int8", False, False, 2,
                          measure=False), data, folds)
    name = next(iter(weights[0]))
    assert not np.array_equal(fresh.state.fold_weights[0][name][0], weights[0][name][0])


def test_the_predictor_learns_a_ranking_and_says_how_well_it_ranked(tmp_path, small_data):
    data, _ = small_data
    nas = NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, seed=0, **TIGHT)
    networks = [nas.space.random_network(4, set(), "a test network") for _ in range(60)]
    figures = nas.constraints.figures
    score = [1.0 / (1.0 + figures(net).n_params / 1000) for net in networks]  # a score the figures tell
    predictor = Predictor(figures, 6, seed=0)
    predictor.fit(networks[:40], score[:40])
    predicted = predictor.predict(networks[40:])
    assert rank_correlation(list(predicted), score[40:]) > 0.8
    again = Predictor(figures, 6, seed=0)
    again.fit(networks[:40], score[:40])
    np.testing.assert_array_equal(again.predict(networks[40:]), predicted)  # the search's seed: the same choices
    assert len(features(networks[0], figures(networks[0]), 6)) == 11 + 6 * 8
    assert rank_correlation([0.1, 0.2], [0.3, 0.4]) is None and rank_correlation([1, 2, 3], [3, 2, 1]) == -1.0


def test_before_the_warm_up_a_pool_draws_the_networks_of_a_search_without_one(tmp_path, small_data):
    data, _ = small_data
    without = NAS(run_dir=str(tmp_path / "a"), preloaded_data=data, seed=5, **TIGHT)
    pooled = NAS(run_dir=str(tmp_path / "b"), preloaded_data=data, seed=5, proposal_pool=4, **TIGHT)
    keys = [[nas.space.random_network(4, set(), "a test network").architecture_key() for _ in range(5)]
            for nas in (without, pooled)]
    assert keys[0] == keys[1]
    offered = []
    pooled.space.chooser = lambda candidates: offered.append(len(candidates)) or candidates[-1]
    pooled.space.random_network(4, set(), "a test network")
    assert offered == [4]


LEVERS = ("inherit_weights=True", "inherit_epochs=1", "proposal_pool=3", "predictor_warmup=2",
          "search_strategy=ga", "population_size=3", "n_elites=2", "smart_start=False", "num_selected_folds=2",
          "halving_eta=2", "min_epochs=1")


def rows_without_timings(run_dir):
    with open(os.path.join(run_dir, "children.csv"), newline="") as records_file:
        return [{k: v for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader(records_file)]


def test_levers_give_the_same_search_on_one_worker_or_two_and_resumed(tmp_path, demo_subset_files):
    images_path, labels_path = demo_subset_files
    common = (f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}",
              *[o for o in TINY_RUN if not o.startswith("num_selected_folds")], *LEVERS)
    whole = run_main(*common, "n_workers=2", "run_name=whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    first = run_main(*common, "n_workers=1", "n_generations=1", "run_name=resumed")
    assert first.returncode == 0, first.stderr[-3000:]
    (resumed_dir,) = glob.glob(os.path.join(tmp_path, "*_resumed"))
    second = run_main(f"resume_from={resumed_dir}", "n_generations=2")
    assert second.returncode == 0, second.stderr[-3000:]
    (whole_dir,) = glob.glob(os.path.join(tmp_path, "*_whole"))
    rows = rows_without_timings(whole_dir)
    assert rows == rows_without_timings(resumed_dir)
    inheriting = [row for row in rows if row["inherited_from"]]
    assert inheriting and all(int(row["layers_inherited"]) > 0 for row in inheriting)
    assert all(row["epochs_trained"] == "2" for row in inheriting)  # inherit_epochs=1 on each of 2 folds
    log = open(os.path.join(whole_dir, "nas_log.txt")).read()
    assert "Predictor (fitted on" in log
