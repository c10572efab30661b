"""The deployed-model estimates against the real thing: the TFLite flatbuffer's size
and the arena TensorFlow Lite Micro allocates, on seeded random networks."""
import os
import random
import re

import keras
import numpy as np
import pytest

from hwnas.network.deployed_cost import plan_chain_arena

from hwnas.network import deploy
from deployment_networks import deployment_test_network, randomize_weights
from hwnas.network.deploy import device_model


def measured_and_estimated(precision, n_networks, seed, encoding=None):
    rng = random.Random(seed)  # not the calibration's seeds: these networks were not fitted
    rows = []
    for index in range(n_networks):
        net = deployment_test_network(rng, precision, encoding=encoding)
        model = net.ins_keras_model()
        randomize_weights(model, seed=seed + index)
        model_bytes = deploy.convert_to_tflite(device_model(model), net.device_input(net.data.X_train), precision)
        rows.append((net, len(model_bytes), deploy.tflm_arena(model_bytes), operators_of(model_bytes)))
        keras.backend.clear_session()
    return rows


def operators_of(model_bytes):
    """The operator names of a TFLite flatbuffer, in execution order."""
    import tensorflow as tf
    return [op["op_name"] for op in tf.lite.Interpreter(model_content=model_bytes)._get_ops_details()]


@pytest.mark.parametrize("precision, encoding, n_networks", [("int8", "scaled", 30), ("int8", "embedding", 30),
                                                          ("float32", "scaled", 15), ("float32", "embedding", 15)])
def test_flash_within_2_5_percent_and_arena_within_1_percent(precision, encoding, n_networks):
    for net, flash_measured, arena, operators in measured_and_estimated(precision, n_networks, 2026, encoding):
        _, _, _, flash_size, ram_size = net.hw_measures()
        estimate = net.deployed_arena_bytes()
        where = f"{precision} {net.architecture_text()} on data of {net.input_shape}, {net.num_classes} classes"
        assert abs(flash_size - flash_measured) <= 0.025 * flash_measured, where
        assert abs(ram_size - arena["total"]) <= 0.01 * arena["total"], where
        # The activation plan reproduces TFLM's greedy planner, so it is exact.
        assert estimate["activations"] == arena["activations"], where
        # What a device profile prices (hwnas.devices) is what the converter made.
        assert [op for layer in net.cost_layers() for op, _ in layer["ops"]] == operators, where


def test_trained_int8_model_runs_in_tflm_close_to_float_accuracy(small_data, tmp_path):
    from hwnas.strategy.search_space import SMART_START_BLOCKS, SMART_START_HEAD
    from hwnas.network.net import net_from_architecture
    data, folds = small_data
    architecture = {"head": SMART_START_HEAD, "blocks": [dict(b, dropout_rate=0.1) for b in SMART_START_BLOCKS]}
    net = net_from_architecture(architecture, None, data, dict(epochs=8))
    net.proxy_train_routine(True, folds, 1)
    deployed = net.measure_deployed()
    assert deployed["flash_bytes"] == len(net.deployed_model_bytes)
    assert abs(deployed["test_accuracy"] - net.test_metrics["accuracy"]) <= 0.05
    tflite_path, header_path = net.save_deployed(str(tmp_path / "best_model_int8"))
    assert open(tflite_path, "rb").read() == net.deployed_model_bytes
    header = open(header_path).read()
    array_bytes = bytes(int(value, 16) for value in re.findall(r"0x([0-9a-f]{2})", header))
    assert array_bytes == net.deployed_model_bytes
    assert f"best_model_int8_len = {len(array_bytes)};" in header
    assert "alignas(16) const unsigned char best_model_int8[]" in header
    assert f"best_model_int8_arena_bytes = {deployed['arena_bytes']};" in header
    scale, zero_point = deploy.io_quantization(net.deployed_model_bytes)["input"]
    assert abs(scale - 1 / 255) < 1e-6 and zero_point == -128  # inputs are bytes scaled to [0, 1]
    assert f"best_model_int8_input_zero_point = {zero_point};" in header
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".partial")]


def test_arena_planner_matches_hand_worked_chains():
    # input 100 -> 50 -> 200 -> 10, sizes rounded to 112, 64, 208, 16. Largest first: 208 at 0;
    # 112 (the input, dead once op 0 ran) also at 0; 64 lives beside both, so at 208;
    # 16 lives only with 208, so at 208 too. Peak: 208 + 64.
    assert plan_chain_arena([100, 50, 200, 10]) == 272
    assert plan_chain_arena([16, 16]) == 32
    with pytest.raises(ValueError):
        deploy.convert_to_tflite(None, np.zeros((1, 4, 1)), precision="int4")
