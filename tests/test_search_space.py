"""Seeded fuzzing of blocks and networks against Keras (shapes, parameters) and keras-flops (FLOPs)."""
import math
import random

import keras
import pytest

from hwnas.network.block import ACTIVATIONS, Block
from deployment_networks import random_input_stage
from hwnas.network.net import Net, blocks_from_settings, keras_flops_count

SPACE = {"filters": [1, 3, 4, 8, 16, 32, 64], "kernel_size": [1, 2, 3, 5, 7, 9, 15],
         "stride": [1, 2, 3, 4], "padding": ["same", "valid"], "activation": list(ACTIVATIONS),
         "pooling": ["none", "max", "avg"], "pool_size": [1, 2, 3, 4, 5, 8]}


def random_settings(rng):
    settings = {name: rng.choice(choices) for name, choices in SPACE.items()}
    settings["dropout_rate"] = rng.choice([0.0, 0.1, 0.3])
    return settings


def keras_output_length(block, input_shape):
    shape = (None,) + tuple(input_shape)
    for layer in block.create_layer():
        shape = layer.compute_output_shape(shape)
    return shape[1], shape[2]


def test_thousands_of_random_blocks_have_keras_output_lengths_of_at_least_one():
    rng = random.Random(0)
    for _ in range(3000):
        length, channels = rng.choice([1, 2, 3, 5, 9, 17, 64, 784]), rng.choice([1, 3, 8])
        block = Block(**random_settings(rng), input_size=length, input_channels=channels,
                      block_index=rng.randrange(3))
        assert block.output_size >= 1
        assert keras_output_length(block, (length, channels)) == (block.output_size, block.filters)


def test_a_short_input_adjusts_what_is_built_never_the_settings():
    block = Block(8, kernel_size=9, padding="valid", pooling="max", pool_size=4, input_size=5)
    assert (block.kernel_size, block.pooling, block.pool_size) == (9, "max", 4)  # as asked
    assert (block.kernel_size_used, block.pooling_used) == (5, "none")  # as built
    assert block.conv_output_size == 1 and block.output_size == 1
    assert len(block.adjustments) == 2 and "kernel_size 9 built as 5" in block.adjustments[0]
    model_layers = [type(layer).__name__ for layer in block.create_layer()]
    assert "MaxPooling1D" not in model_layers
    # Placed on a long enough input, the same settings build as asked, with no adjustment.
    moved = block.copy(input_size=100)
    assert (moved.kernel_size_used, moved.pooling_used, moved.pool_size_used) == (9, "max", 4)
    assert moved.adjustments == [] and moved.output_size == (100 - 9 + 1) // 4


def test_the_originals_hand_made_blocks_by_keyword_build_the_same_network(small_data):
    data, _ = small_data
    length = data.input_shape[0]
    # The original toolkit's two hand-made blocks, written with its keyword names.
    b1 = Block(n_filters=27, kernel_size=3, activation="relu", padding="same", is_pool=True, pool_size=2,
               input_size=length, is_dropout=True, dropout_rate=0.1, stride=4, nas_saver_name=None,
               is_max_pool=True, is_avg_pool=False)
    b1_output_size = b1.calculate_output_size()
    b2 = Block(n_filters=114, kernel_size=4, activation="relu", padding="same", is_pool=True, pool_size=3,
               input_size=b1_output_size, is_dropout=True, dropout_rate=0.2, stride=4, nas_saver_name=None,
               is_max_pool=False, is_avg_pool=True)
    same_b1 = Block(filters=27, kernel_size=3, stride=4, padding="same", activation="relu", pooling="max",
                    pool_size=2, dropout_rate=0.1)
    same_b2 = Block(filters=114, kernel_size=4, stride=4, padding="same", activation="relu", pooling="avg",
                    pool_size=3, dropout_rate=0.2)
    original = Net([b1, b2], None, (data.X_train, data.Y_train, data.X_test, data.Y_test))  # a plain tuple
    ours = Net([same_b1, same_b2], None, data)
    assert original.architecture_key() == ours.architecture_key()
    model = original.ins_keras_model()
    # Shapes by hand: 'same' conv stride 4 -> ceil(L / 4); max pool 2 -> floor(/ 2); conv stride 4; avg pool 3.
    conv1 = -(-length // 4)
    pool1 = conv1 // 2
    conv2 = -(-pool1 // 4)
    pool2 = conv2 // 3
    layers = [(type(layer).__name__, tuple(layer.output.shape[1:])) for layer in model.layers]
    assert layers == [("Conv1D", (conv1, 27)), ("Activation", (conv1, 27)), ("MaxPooling1D", (pool1, 27)),
                      ("Dropout", (pool1, 27)), ("Conv1D", (conv2, 114)), ("BatchNormalization", (conv2, 114)),
                      ("Activation", (conv2, 114)), ("AveragePooling1D", (pool2, 114)), ("Dropout", (pool2, 114)),
                      ("GlobalAveragePooling1D", (114,)), ("Dense", (data.num_classes,))]
    assert model.get_layer("b1_conv").kernel_size == (4,) and model.get_layer("b0_drop").rate == 0.1
    assert original.hw_measures() == ours.hw_measures()
    assert Block(n_filters=8, kernel_size=3, is_pool=False, pool_size=None, is_dropout=False,
                 input_shape=(length, 1)).settings() == dict(filters=8, kernel_size=3, stride=1, padding="same",
                                                             activation="relu", pooling="none", pool_size=2,
                                                             dropout_rate=0.0)
    with pytest.raises(ValueError, match="filters=8 and n_filters=9 disagree"):
        Block(filters=8, n_filters=9, kernel_size=3)


def random_net(rng, data, max_depth=4):
    settings = [random_settings(rng) for _ in range(rng.randint(1, max_depth))]
    blocks = blocks_from_settings(settings, data.input_shape)
    return Net(blocks, None, data, head=rng.choice(["gap", "flatten"]),
               input_stage=random_input_stage(rng, data.input_shape[0]))


def test_cost_model_equals_keras_params_and_keras_flops_on_150_random_networks(small_data):
    """Every input encoding and length among them (the byte table's parameters, its gather's 0 FLOPs)."""
    data, _ = small_data
    rng = random.Random(1)
    inputs_seen = set()
    for i in range(150):
        net = random_net(rng, data)
        inputs_seen.add((net.input_stage.encoding, net.input_stage.length < data.input_shape[0]))
        model = net.device_model()  # what the device runs: no input-stage layers before the table
        n_params, max_tens, flops, _, _ = net.hw_measures()
        assert n_params == model.count_params(), net.architecture_text()
        assert flops == keras_flops_count(model), net.architecture_text()
        keras_tensors = [math.prod(model.inputs[0].shape[1:])] + [math.prod(layer.output.shape[1:])
                                                                  for layer in model.layers]
        assert max_tens == max(keras_tensors), net.architecture_text()
        assert model.output_shape == (None, data.num_classes)
        if i % 25 == 0:
            keras.backend.clear_session()
    assert inputs_seen == {(encoding, shorter) for encoding in ("scaled", "embedding") for shorter in (False, True)}


def test_dump_and_short_description_are_readable(small_data, tmp_path):
    data, _ = small_data
    log_path = tmp_path / "log.txt"
    blocks = blocks_from_settings([random_settings(random.Random(2))], data.input_shape)
    net = Net(blocks, str(log_path), data, head="gap")
    line = net.short_description()
    net.dump()
    text = log_path.read_text()
    assert line in text and '"filters"' in text and "Dense(6, softmax)" in text


def test_keras_flops_import_keeps_tensorflows_own_statistics():
    from hwnas.network import keras_flops
    from tensorflow.python.framework import ops
    keras_flops.import_keras_flops()
    registered = ops._stats_registry.list()
    assert "FusedBatchNormV3,flops" in registered  # added by keras-flops
    assert "AddV2,flops" in registered  # TensorFlow's own, kept


def test_bad_block_settings_are_named():
    with pytest.raises(ValueError, match="padding"):
        Block(8, 3, padding="causal", input_size=10)
    with pytest.raises(ValueError, match="activation"):
        Block(8, 3, activation="gelu", input_size=10)


def test_keras_flops_count_of_a_small_network_counted_by_hand(small_data):
    data, _ = small_data
    length = data.input_shape[0]
    classes = data.num_classes
    block = Block(filters=4, kernel_size=3, stride=2, padding="valid", pooling="none", dropout_rate=0.0)
    net = Net([block], None, data, head="gap")
    conv_length = (length - 3) // 2 + 1
    by_hand = (2 * 3 * 1 * 4 * conv_length  # multiply-adds of the convolution
               + 4 * conv_length  # its bias
               + 4 * conv_length  # global average pooling: one add per input element
               + 2 * 4 * classes + classes  # Dense: multiply-adds and bias
               + 5 * classes)  # softmax
    assert keras_flops_count(net.ins_keras_model()) == by_hand
    assert net.hw_measures()[2] == by_hand


NARROW_SPACE = {"filters": [4], "kernel_size": [9], "activation": ["tanh"], "stride": [1], "pool_size": [4]}


def test_with_the_smart_start_every_network_of_a_run_stays_in_a_narrowed_space(tmp_path, demo_subset_files):
    import csv
    import glob
    import json
    import os
    from conftest import TINY_RUN, run_main
    images_path, labels_path = demo_subset_files
    overrides = [f"{name}_choices={values!r}" for name, values in NARROW_SPACE.items()]
    result = run_main(f"images_path={images_path}", f"labels_path={labels_path}", f"logs_dir={tmp_path}", *TINY_RUN,
                      "smart_start=True", "search_strategy=mutation", "head_choices=['gap']", "max_depth=1",
                      "max_depth_father=1", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = glob.glob(str(tmp_path / "*"))
    rows = list(csv.DictReader(open(os.path.join(run_dir, "children.csv"))))
    assert len(rows) == 5
    for row in rows:
        architecture = json.loads(row["architecture"])
        assert architecture["head"] == "gap" and len(architecture["blocks"]) == 1, row["architecture_text"]
        for block in architecture["blocks"]:
            for name, values in NARROW_SPACE.items():
                assert block[name] in values, (name, row["architecture_text"])
    log = open(os.path.join(run_dir, "nas_log.txt")).read()
    assert ("The smart-start network, fitted into the search space's choices: block 0 filters 16 -> 4; block 0 "
            "kernel_size 5 -> 9; block 0 stride 2 -> 1; block 0 activation relu -> tanh; block 0 pool_size 2 -> 4; "
            "3 blocks -> 1 (max_depth); head flatten -> gap.") in log
