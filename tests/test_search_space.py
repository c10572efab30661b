"""Seeded fuzzing of blocks and networks against Keras (shapes, parameters) and keras-flops (FLOPs)."""
import random

import keras
import pytest

from library_block import ACTIVATIONS, Block
from library_net import Net, blocks_from_settings, keras_flops_count

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


def test_invalid_settings_are_adjusted_and_listed():
    block = Block(8, kernel_size=9, padding="valid", pooling="max", pool_size=4, input_size=5)
    assert block.kernel_size == 5 and block.conv_output_size == 1
    assert block.pooling == "none" and block.output_size == 1
    assert len(block.adjustments) == 2


def random_net(rng, data, max_depth=4):
    settings = [random_settings(rng) for _ in range(rng.randint(1, max_depth))]
    blocks = blocks_from_settings(settings, data.input_shape)
    return Net(blocks, None, data, head=rng.choice(["gap", "flatten"]))


def test_cost_model_equals_keras_params_and_keras_flops_on_300_random_networks(small_data):
    data, _ = small_data
    rng = random.Random(1)
    for i in range(300):
        net = random_net(rng, data)
        model = net.ins_keras_model()
        n_params, max_tens, flops, _, _ = net.hw_measures()
        assert n_params == model.count_params(), net.architecture_text()
        assert flops == keras_flops_count(model), net.architecture_text()
        assert model.output_shape == (None, data.num_classes)
        if i % 25 == 0:
            keras.backend.clear_session()


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
    import library_net
    from tensorflow.python.framework import ops
    library_net._import_keras_flops()
    registered = ops._stats_registry.list()
    assert "FusedBatchNormV3,flops" in registered  # added by keras-flops
    assert "AddV2,flops" in registered  # TensorFlow's own, kept


def test_bad_block_settings_are_named():
    with pytest.raises(ValueError, match="padding"):
        Block(8, 3, padding="causal", input_size=10)
    with pytest.raises(ValueError, match="activation"):
        Block(8, 3, activation="gelu", input_size=10)
