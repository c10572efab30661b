"""The search engine: mutants are valid and within thresholds, impossible thresholds stop
with a clear message, selection follows is_random_walk, the same seed repeats the search."""
import csv
import math

import keras
import pytest

from hwnas.network import deploy
from hwnas.network.block import Block
from library_nas import NAS, ConstraintError
from hwnas.network.net import keras_flops_count

TIGHT = dict(params_thr=20_000, flops_thr=2_000_000, flash_thr=32_000, ram_thr=16_000, max_tens_thr=16_000)


def make_nas(tmp_path, data, **overrides):
    settings = dict(TIGHT, max_depth=5, n_child=2, n_generations=1, epochs=1, seed=0)
    settings.update(overrides)
    return NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, **settings)


def keras_figures(network):
    """Parameters, FLOPs and largest tensor of the network's device model, counted by Keras and
    keras-flops: a reference independent of the search's cost model."""
    model = network.device_model()
    tensors = [math.prod(model.inputs[0].shape[1:])] + [math.prod(layer.output.shape[1:]) for layer in model.layers]
    return model.count_params(), keras_flops_count(model), max(tensors)


def deployed_figures(network):
    """Flash (bytes of the int8 flatbuffer) and TFLM's arena of the network, measured."""
    model_bytes = network.export_tflite()
    return len(model_bytes), deploy.tflm_arena(model_bytes)["total"]


def test_500_mutants_are_valid_and_keras_confirms_they_meet_every_threshold(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data, n_mutations=2)
    parent = nas.initial_parent()
    for i in range(500):
        child = nas.mutate_network_and_control(parent, data)
        assert 1 <= len(child.block_list) <= nas.max_depth
        length, channels = child.input_stage.output_shape  # the blocks read what the input stage gives
        for index, block in enumerate(child.block_list):
            assert (block.block_index, block.input_size, block.input_channels) == (index, length, channels)
            assert block.output_size >= 1
            length, channels = block.output_size, block.filters
        rates = [block.dropout_rate for block in child.block_list]
        assert rates == sorted(rates) and rates[0] == nas.space.dropout_min
        if i % 25 == 0:  # a sample measured by the references, not by the filter that chose it
            n_params, flops, max_tens = keras_figures(child)
            assert n_params <= TIGHT["params_thr"] and flops <= TIGHT["flops_thr"]
            assert max_tens <= TIGHT["max_tens_thr"]
        if i % 100 == 0:  # flash and RAM as the device sees them (the estimates agree within 5 %)
            flash_bytes, arena_bytes = deployed_figures(child)
            assert flash_bytes <= 1.05 * TIGHT["flash_thr"] and arena_bytes <= 1.05 * TIGHT["ram_thr"]
        parent = child
        if i % 100 == 99:
            keras.backend.clear_session()


def test_a_candidate_keras_finds_too_large_is_never_drawn(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data, max_attempts=5)
    wide = [Block(filters=64, kernel_size=9, stride=1, padding="same", pooling="none") for _ in range(3)]
    too_large = nas.space.new_net(wide, "flatten")
    assert keras_figures(too_large)[0] > TIGHT["params_thr"]  # Keras' count, not ours
    small = nas.space.new_net([Block(filters=4, kernel_size=3, stride=2, pooling="max", pool_size=4)], "gap")
    assert keras_figures(small)[0] <= TIGHT["params_thr"]
    candidates = iter([too_large, too_large, small])
    assert nas.space.draw_valid(lambda: next(candidates), (), "a test network") is small
    with pytest.raises(ConstraintError, match="params_thr = 20000"):
        nas.space.draw_valid(lambda: too_large, (), "a test network")


def test_the_search_space_does_not_drift_over_1500_mutants(tmp_path, small_data):
    """Blocks on short inputs are built adjusted, but their settings stay within the choices,
    so children never inherit a kernel or pool size the search space does not hold."""
    data, _ = small_data
    nas = make_nas(tmp_path, data, check_hw=False, max_depth=6, n_mutations=2, smart_start=False)
    space = nas.space.choices
    parent = nas.initial_parent()
    n_blocks = n_adjusted = 0
    for _ in range(1500):
        child = nas.mutate_network(parent, data)
        for block in child.block_list:
            n_blocks += 1
            settings = block.settings()
            for name in ("filters", "kernel_size", "stride", "padding", "activation", "pooling"):
                assert settings[name] in space[name], (name, settings)
            assert settings["pool_size"] in space["pool_size"], settings
            built = block.built_settings()
            assert (built != settings) == bool(block.adjustments)  # every adjustment is recorded
            n_adjusted += built != settings
        parent = child
    assert n_blocks > 3000 and 0 < n_adjusted < n_blocks  # short inputs did occur, and were adjusted


def test_mutations_reach_every_action_and_both_heads(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data, check_hw=False)
    parent = nas.initial_parent()
    seen_actions, seen_heads = set(), set()
    for _ in range(200):
        child = nas.mutate_network(parent, data)
        seen_actions.add(child.mutation.split("+")[-1])
        seen_heads.add(child.head)
        parent = child
    assert seen_actions == {"add", "remove", "change", "switch_head", "change_input"}
    assert seen_heads == {"gap", "flatten"}


def test_random_initial_parent_respects_max_depth_father(tmp_path, small_data):
    data, _ = small_data
    for seed in range(20):
        nas = make_nas(tmp_path, data, smart_start=False, max_depth_father=2, seed=seed)
        parent = nas.initial_parent()
        n_params, flops, max_tens = keras_figures(parent)
        assert 1 <= len(parent.block_list) <= 2
        assert n_params <= TIGHT["params_thr"] and flops <= TIGHT["flops_thr"] and max_tens <= TIGHT["max_tens_thr"]


def test_impossible_thresholds_name_the_threshold_and_the_smallest_value_seen(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data, flops_thr=10, smart_start=False, max_attempts=30)
    with pytest.raises(ConstraintError, match=r"flops_thr = 10: smallest flops seen \d+") as error:
        nas.initial_parent()
    assert "params_thr" not in str(error.value)


def test_selection_takes_the_best_validation_score_never_test(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data)
    children = ["a", "b", "c"]
    best, score = nas.best_child_selection(children, [0.5, None, 0.7],
                                           [{"accuracy": 0.99}, None, {"accuracy": 0.1}])
    assert (best, score) == ("c", 0.7)
    assert nas.best_child_selection(children, [None, None, None], [None] * 3) == (None, None)


@pytest.mark.parametrize("is_random_walk", [True, False])
def test_parent_competes_with_children_unless_random_walk(tmp_path, small_data, is_random_walk):
    data, folds = small_data
    # Dry run (untrained children): quick, and scores still differ between networks.
    nas = make_nas(tmp_path, data, is_random_walk=is_random_walk, is_train_proxy=False, n_child=3)
    parent = nas.initial_parent()
    nas.train_generation([parent], folds)
    nas.absolute_best = parent
    nas.i_gen = 1
    next_parent = nas.one_nas_step(parent, folds)
    with open(nas.records_path) as records:
        children_scores = [float(row["val_accuracy"]) for row in csv.DictReader(records)
                           if row["generation"] == "1"]
    assert len(children_scores) == 3
    if is_random_walk:
        assert next_parent is not parent and next_parent.val_score == pytest.approx(max(children_scores))
    elif parent.val_score >= max(children_scores):
        assert next_parent is parent
    else:
        assert next_parent.val_score == pytest.approx(max(children_scores))


def test_same_seed_gives_the_same_architectures(tmp_path, small_data):
    data, _ = small_data
    def sequence(seed):
        nas = make_nas(tmp_path, data, seed=seed, smart_start=False)
        parent = nas.initial_parent()
        texts = [parent.architecture_text()]
        for _ in range(30):
            parent = nas.mutate_network_and_control(parent, data)
            texts.append(parent.architecture_text())
        return texts
    assert sequence(5) == sequence(5)
    assert sequence(5) != sequence(6)


def test_children_of_a_generation_differ_from_the_parent_and_each_other(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data, n_child=8)
    parent = nas.initial_parent()
    keys = [child.architecture_key() for child in nas.new_generation(parent, data)]
    assert len(set(keys)) == 8 and parent.architecture_key() not in keys


def test_each_fold_trains_as_on_a_new_model_though_one_model_serves_every_fold(small_data):
    """One compiled model is re-initialised for each fold (tracing is paid once per network):
    fold 1 must train exactly as it does alone, nothing carried over from fold 0 (weights,
    Adam's moments, a learning rate lowered by ReduceLROnPlateau, BatchNorm statistics)."""
    from hwnas.network.net import Net
    data, folds = small_data
    blocks = [dict(filters=8, kernel_size=5, stride=2, pooling="max", pool_size=2, dropout_rate=0.1),
              dict(filters=8, kernel_size=3, stride=1, pooling="none", dropout_rate=0.1)]
    settings = dict(epochs=4, patience=2, seed=11)  # patience 2: the learning rate is halved after one bad epoch
    both = Net([Block(**b) for b in blocks], None, data, head="gap", train_settings=settings)
    both.cross_validate(True, folds, [0, 1])
    alone = Net([Block(**b) for b in blocks], None, data, head="gap", train_settings=settings)
    alone.cross_validate(True, folds, [1])
    assert both.epoch_val_accuracy[1] == alone.epoch_val_accuracy[0]
    assert both.epochs_trained == len(both.epoch_val_accuracy[0]) + len(alone.epoch_val_accuracy[0])
